package load

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a run measured; reports of several processes merge.
type Report struct {
	Connect struct {
		Attempted int            `json:"attempted"`
		Open      int            `json:"open"`
		Failed    int            `json:"failed"`
		Errors    map[string]int `json:"errors,omitempty"`
		Time      *Histogram     `json:"time"`
	} `json:"connect"`
	Sent             int64                `json:"sent"`
	Acked            int64                `json:"acked"`
	SendErrors       map[string]int       `json:"send_errors,omitempty"` // error frames by code
	Deliveries       int64                `json:"deliveries"`
	DeliveriesPerSec float64              `json:"deliveries_per_sec"`
	Latency          *Histogram           `json:"latency"`
	Gaps             int64                `json:"gaps"` // seqs skipped inside a member's stream
	Duplicated       int64                `json:"duplicated"`
	Disconnects      map[string]int       `json:"disconnects,omitempty"` // by close code; "reset" without one
	Rooms            map[string]roomState `json:"rooms"`
	Elapsed          time.Duration        `json:"elapsed_ns"` // publishing time
	Servers          []ProcStat           `json:"servers,omitempty"`
}

// roomState is what the members of one room saw: Max is the highest seq
// any of them received; a member that stopped below it lost the rest.
type roomState struct {
	Members int   `json:"members"`
	SumLast int64 `json:"sum_last"`
	Max     int64 `json:"max"`
}

func newReport() *Report {
	r := &Report{SendErrors: map[string]int{}, Disconnects: map[string]int{}, Rooms: map[string]roomState{}, Latency: NewHistogram()}
	r.Connect.Errors = map[string]int{}
	r.Connect.Time = NewHistogram()
	return r
}

// Merge adds another process's report of the same run, as read back from
// its JSON (where empty maps are left out).
func (r *Report) Merge(o *Report) {
	r.fill()
	o.fill()
	r.Connect.Attempted += o.Connect.Attempted
	r.Connect.Open += o.Connect.Open
	r.Connect.Failed += o.Connect.Failed
	add(r.Connect.Errors, o.Connect.Errors)
	r.Connect.Time.Merge(o.Connect.Time)
	r.Sent += o.Sent
	r.Acked += o.Acked
	add(r.SendErrors, o.SendErrors)
	r.Deliveries += o.Deliveries
	r.DeliveriesPerSec += o.DeliveriesPerSec
	r.Latency.Merge(o.Latency)
	r.Gaps += o.Gaps
	r.Duplicated += o.Duplicated
	add(r.Disconnects, o.Disconnects)
	for room, s := range o.Rooms {
		m := r.Rooms[room]
		m.Members += s.Members
		m.SumLast += s.SumLast
		m.Max = max(m.Max, s.Max)
		r.Rooms[room] = m
	}
	r.Elapsed = max(r.Elapsed, o.Elapsed)
}

// fill makes the maps and histograms that JSON left out.
func (r *Report) fill() {
	for _, m := range []*map[string]int{&r.Connect.Errors, &r.SendErrors, &r.Disconnects} {
		if *m == nil {
			*m = map[string]int{}
		}
	}
	if r.Rooms == nil {
		r.Rooms = map[string]roomState{}
	}
	for _, h := range []**Histogram{&r.Connect.Time, &r.Latency} {
		if *h == nil {
			*h = NewHistogram()
		}
	}
}

func add(into, from map[string]int) {
	for k, v := range from {
		into[k] += v
	}
}

// Lost counts the messages members never received: the gaps inside their
// streams and what they missed after their last one.
func (r *Report) Lost() int64 {
	lost := r.Gaps
	for _, s := range r.Rooms {
		lost += int64(s.Members)*s.Max - s.SumLast
	}
	return lost
}

// Whole is nil when the run opened conns connections, had sends sends
// acked and made deliveries deliveries, each timed, none lost or
// duplicated; otherwise it says what fell short.
func (r *Report) Whole(conns int, sends, deliveries int64) error {
	if r.Connect.Open != conns || r.Sent != sends || r.Acked != sends {
		return fmt.Errorf("open %d, sent %d, acked %d; want %d, %d, %d (errors %v, refusals %v)",
			r.Connect.Open, r.Sent, r.Acked, conns, sends, sends, r.Connect.Errors, r.SendErrors)
	}
	if r.Deliveries != deliveries || r.Lost() != 0 || r.Duplicated != 0 || r.Latency.Total != uint64(deliveries) {
		return fmt.Errorf("%d deliveries (%d with a latency), %d lost, %d duplicated; want %d, %d, 0, 0",
			r.Deliveries, r.Latency.Total, r.Lost(), r.Duplicated, deliveries, deliveries)
	}
	return nil
}

// Summary is the report in one line.
func (r *Report) Summary() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	var b strings.Builder
	fmt.Fprintf(&b, "connect %d/%d (p99 %s)", r.Connect.Open, r.Connect.Attempted, ms(r.Connect.Time.Quantile(0.99)))
	if r.Sent > 0 {
		fmt.Fprintf(&b, " | sent %d acked %d | %.0f deliveries/s | latency p50 %s p90 %s p99 %s p99.9 %s max %s | lost %d dup %d",
			r.Sent, r.Acked, r.DeliveriesPerSec, ms(r.Latency.Quantile(0.5)), ms(r.Latency.Quantile(0.9)),
			ms(r.Latency.Quantile(0.99)), ms(r.Latency.Quantile(0.999)), ms(time.Duration(r.Latency.Max)), r.Lost(), r.Duplicated)
	}
	if len(r.Disconnects) > 0 {
		var d []string
		for _, code := range slices.Sorted(maps.Keys(r.Disconnects)) {
			d = append(d, fmt.Sprintf("%s×%d", code, r.Disconnects[code]))
		}
		fmt.Fprintf(&b, " | disconnects %s", strings.Join(d, " "))
	}
	if len(r.SendErrors) > 0 {
		fmt.Fprintf(&b, " | send errors %v", r.SendErrors)
	}
	for _, s := range r.Servers {
		fmt.Fprintf(&b, " | pid %d rss %.1f MiB cpu %.0f%% runq wait %.1f µs a run", s.PID, float64(s.RSS)/(1<<20), 100*s.CPU, float64(s.RunqWait)/1e3)
	}
	if r.Connect.Failed > 0 {
		fmt.Fprintf(&b, " | connect errors: %s", topError(r.Connect.Errors))
	}
	return b.String()
}
