package load

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hooks let the caller watch and pace a run: Ready is called once every
// connection of this share is open and joined, and publishing starts when
// it returns (the parent holds workers there until all are ready).
// Drained is called once late deliveries have stopped, before the
// connections close: the end of the window a server's CPU is measured
// over, so that it does not count the closing of thousands of sockets.
type Hooks struct {
	Ready    func(ctx context.Context) error
	Drained  func()
	Progress func(Progress)
}

// Progress is a share's running totals, sent about once a second.
type Progress struct {
	Open       int64         `json:"open"`
	Sent       int64         `json:"sent"`
	Deliveries int64         `json:"deliveries"`
	P99        time.Duration `json:"p99_ns"` // delivery latency over the last second
}

// runner is one share's state.
type runner struct {
	o                            Options
	d                            dialect
	rep                          *Report
	mu                           sync.Mutex // guards rep's maps and histograms
	window                       *Histogram // latency since the last progress
	open, sent, acked, delivered atomic.Int64
	readers                      sync.WaitGroup // connections read by goroutines of their own
	roots                        *x509.CertPool // trusted for wss://; nil: the system's
}

type member struct {
	room       string
	joined     int64 // the room's seq at join
	last, gaps int64
	dups       int64
}

// Run runs this process's share of the connections and reports on them.
func Run(ctx context.Context, o Options, h Hooks) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	u, _ := o.url()
	d, _ := dialectOf(o.Protocol)
	r := &runner{o: o, d: d, rep: newReport(), window: NewHistogram()}
	stopProgress := r.progress(h.Progress)
	defer stopProgress()
	pollers, err := r.pollers()
	if err != nil {
		return nil, err
	}

	// Connect at the share's part of the connect rate.
	var every time.Duration
	if o.ConnectRate > 0 {
		every = time.Duration(float64(time.Second) * float64(o.Of) / o.ConnectRate)
	}
	var conns, all []*conn // all: the failed too, closed at the end
	var wg sync.WaitGroup
	var cmu sync.Mutex
	began, attempts := time.Now(), 0
	for k := 0; k < o.Conns; k++ {
		if !o.mine(k) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if every > 0 {
			time.Sleep(time.Until(began.Add(time.Duration(attempts) * every)))
		}
		attempts++
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p *poller
			if len(pollers) > 0 {
				p = pollers[k%len(pollers)]
			}
			c, err := r.dial(ctx, u, k, p)
			cmu.Lock()
			defer cmu.Unlock()
			if c != nil {
				all = append(all, c)
			}
			if err != nil {
				r.mu.Lock()
				r.rep.Connect.Failed++
				r.rep.Connect.Errors[err.Error()]++
				r.mu.Unlock()
				return
			}
			conns = append(conns, c)
		}()
		// Never more than 256 handshakes in flight per process.
		if attempts%256 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	// Readers stop before the members' counts are read, and whatever ends
	// the run early closes every connection too.
	closeAll := sync.OnceValue(func() error {
		for _, c := range all {
			c.closed.Store(true)
		}
		var errs []error
		for _, p := range pollers {
			errs = append(errs, p.close())
		}
		for _, c := range all {
			c.shut()
		}
		r.readers.Wait()
		return errors.Join(errs...)
	})
	defer closeAll()
	r.rep.Connect.Attempted = r.rep.Connect.Failed + len(conns)
	if len(conns) == 0 && r.rep.Connect.Attempted > 0 {
		return r.rep, fmt.Errorf("no connection opened: %s", topError(r.rep.Connect.Errors))
	}
	if h.Ready != nil {
		if err := h.Ready(ctx); err != nil {
			return r.rep, err
		}
	}

	// Publish.
	start := time.Now()
	var pubs sync.WaitGroup
	var budget atomic.Int64
	budget.Store(int64(o.Messages))
	pctx, cancel := context.WithCancel(ctx)
	if o.Duration > 0 {
		pctx, cancel = context.WithTimeout(ctx, o.Duration)
	}
	for _, c := range conns {
		if c.k >= o.Publishers {
			continue
		}
		pubs.Add(1)
		go func() { defer pubs.Done(); r.publish(pctx, c, &budget) }()
	}
	pubs.Wait()
	if o.Publishers == 0 {
		// Nobody publishes: hold the connections open for the duration.
		<-pctx.Done()
	}
	cancel()
	r.rep.Elapsed = time.Since(start)
	delivered := r.delivered.Load()
	r.rep.DeliveriesPerSec = float64(delivered) / r.rep.Elapsed.Seconds()
	// Late deliveries still count: wait until they stop (3 s without one:
	// an overloaded host pauses for a second now and then) or Drain has
	// passed; only then is a missing message lost.
	deadline := time.Now().Add(o.Drain)
	for last, quiet := delivered, 0; quiet < 3 && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(time.Second)
		now := r.delivered.Load()
		if now == last {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	if h.Drained != nil {
		h.Drained()
	}
	if err := closeAll(); err != nil {
		return r.rep, err
	}
	r.rep.Connect.Open = len(conns)
	r.rep.Sent, r.rep.Acked, r.rep.Deliveries = r.sent.Load(), r.acked.Load(), r.delivered.Load()
	for _, c := range conns {
		st := r.rep.Rooms[c.m.room]
		st.Members++
		st.SumLast += c.m.last
		st.Max = max(st.Max, c.m.last)
		r.rep.Rooms[c.m.room] = st
		r.rep.Gaps += c.m.gaps
		r.rep.Duplicated += c.m.dups
	}
	return r.rep, nil
}

// pollers start one poller per CPU Go may use, so that the load tool's
// reading spreads as the server's writing does; none without epoll.
func (r *runner) pollers() ([]*poller, error) {
	var ps []*poller
	for range runtime.GOMAXPROCS(0) {
		p, err := newPoller()
		if err != nil {
			for _, p := range ps {
				p.close()
			}
			return nil, err
		}
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// received counts what a text frame from c's room holds.
func (r *runner) received(c *conn, data []byte, now time.Time) {
	c.events = r.d.events(data, c.events[:0])
	for _, e := range c.events {
		switch e.kind {
		case delivery:
			r.delivered.Add(1)
			switch {
			case e.seq <= c.m.last:
				c.m.dups++
			default:
				c.m.gaps += e.seq - c.m.last - 1
				c.m.last = e.seq
			}
			if !e.sent.IsZero() {
				r.mu.Lock()
				r.rep.Latency.Record(now.Sub(e.sent))
				r.window.Record(now.Sub(e.sent))
				r.mu.Unlock()
			}
		case ack:
			r.acked.Add(1)
		case refusal:
			r.mu.Lock()
			r.rep.SendErrors[e.code]++
			r.mu.Unlock()
		case ping:
			_ = c.send(opText, cfPing) // a dead socket shows on the next read
		}
	}
}

// publish sends to c's room at the publisher's rate until ctx ends or the
// message budget is spent.
func (r *runner) publish(ctx context.Context, c *conn, budget *atomic.Int64) {
	every := r.o.perPublisher()
	// Stagger the publishers over one interval.
	next := time.Now().Add(time.Duration(c.k) * every / time.Duration(max(1, r.o.Publishers)))
	pad := strings.Repeat("x", r.o.Size)
	for n := 0; ; n++ {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		next = next.Add(every)
		if r.o.Messages > 0 && budget.Add(-1) < 0 {
			return
		}
		stamp := strconv.FormatInt(time.Now().UnixNano(), 10) + " "
		if err := c.send(opText, r.d.send(c.m.room, c.k, n, stamp+pad[len(stamp):])); err != nil {
			return
		}
		r.sent.Add(1)
	}
}

func (r *runner) progress(report func(Progress)) (stop func()) {
	if report == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			r.mu.Lock()
			p99 := r.window.Quantile(0.99)
			r.window = NewHistogram()
			r.mu.Unlock()
			report(Progress{Open: r.open.Load(), Sent: r.sent.Load(), Deliveries: r.delivered.Load(), P99: p99})
		}
	}()
	return func() { close(done) }
}

// hint says what a refused handshake most likely means; path is where the
// protocol's WebSocket was looked for.
func hint(status int, path string) string {
	switch status {
	case http.StatusUnauthorized:
		return " (check -token or -secret: the server refused the token)"
	case http.StatusForbidden:
		return " (origin refused)"
	case http.StatusServiceUnavailable:
		return " (instance draining or Redis down)"
	case http.StatusNotFound, http.StatusBadRequest:
		return " (is -endpoint the server of -protocol? its WebSocket was looked for at " + path + ")"
	}
	return ""
}

func unwrapNet(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	return err
}

func topError(errs map[string]int) string {
	best, n := "", 0
	for e, c := range errs {
		if c > n {
			best, n = e, c
		}
	}
	return fmt.Sprintf("%s (×%d)", best, n)
}
