// Package perfdoc turns a pinned comparison run of `make bench` into
// documentation: the current table of docs/performance.md (a generated
// section that each run rewrites), an SVG plot of p99 against rate, and the
// dated entry of docs/log.md.
package perfdoc

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Point is one load run against one server at one fixed rate.
type Point struct {
	Server string `json:"server"` // "Switchboard", "Centrifugo v5.4.9"
	Shape  string `json:"shape"`  // "1000 rooms × 10"
	Rate   int    `json:"rate"`   // messages a second
	Fixed  bool   `json:"fixed"`  // the shape's point of the table
	// Round is which of the table point's rounds this is, from 1; 0 for a
	// sweep point.
	Round      int           `json:"round,omitempty"`
	Seconds    float64       `json:"seconds"`
	Deliveries int64         `json:"deliveries"`
	Lost       int64         `json:"lost"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	// CPU seconds over the measured window: the server's process tree, and
	// each datastore's ("Redis", "Postgres").
	ServerCPU float64            `json:"server_cpu_seconds"`
	StoreCPU  map[string]float64 `json:"store_cpu_seconds"`
}

// PerDelivery is the server's CPU for one delivery and, with the
// datastores', the total.
func (p Point) PerDelivery() (server, total time.Duration) {
	if p.Deliveries == 0 {
		return 0, 0
	}
	all := p.ServerCPU
	for _, s := range p.StoreCPU {
		all += s
	}
	return perDelivery(p.ServerCPU, p.Deliveries), perDelivery(all, p.Deliveries)
}

// perDelivery is cpu seconds spread over deliveries (none: 0).
func perDelivery(cpu float64, deliveries int64) time.Duration {
	if deliveries == 0 {
		return 0
	}
	return time.Duration(cpu / float64(deliveries) * float64(time.Second))
}

// Saturated is the p99 past which a point ran behind its rate: the
// server's queues grew, and frames that waited shared writes, which lowers
// its CPU per delivery below what the rate costs at pace.
const Saturated = 250 * time.Millisecond

// Behind reports whether p ran behind its rate: p99 past Saturated, or a
// message lost.
func (p Point) Behind() bool { return p.P99 > Saturated || p.Lost > 0 }

// Run is one `make bench` comparison.
type Run struct {
	Date    string  `json:"date"`    // 2006-01-02 15:04 UTC
	Machine string  `json:"machine"` // its state: "2 cores, busy: ..."
	Method  string  `json:"method"`  // one line: how it was pinned and run
	Points  []Point `json:"points"`
	// Floor names the server among Points that does only each delivery's
	// unavoidable work (tests/floor), if one ran: a reference, not a
	// contender.
	Floor string `json:"floor,omitempty"`
}

// Goal is issue 30's: the first server's total CPU per delivery (with its
// datastores) at most the second's divided by this.
const Goal = 1.5

// servers are the run's servers in the order they first appear, the floor
// last: the ratios are the first's against the second's.
func (r Run) servers() []string {
	var out []string
	for _, p := range r.Points {
		if !slices.Contains(out, p.Server) && p.Server != r.Floor {
			out = append(out, p.Server)
		}
	}
	if slices.ContainsFunc(r.Points, func(p Point) bool { return p.Server == r.Floor }) {
		out = append(out, r.Floor)
	}
	return out
}

func (r Run) shapes() []string {
	var out []string
	for _, p := range r.Points {
		if !slices.Contains(out, p.Shape) {
			out = append(out, p.Shape)
		}
	}
	return out
}

// figures is a server's table point on a shape over its rounds: the median
// of each figure (on a shared machine p99 swings several-fold from run to
// run, and one outlying round must not decide the table), the sums of
// deliveries and losses, and the rounds in order.
type figures struct {
	Rate int
	// CPU per delivery: the server's, with its datastores', the
	// datastores' together and each one's.
	Server, Total, Stores time.Duration
	Store                 map[string]time.Duration
	P50, P99              time.Duration
	Seconds               float64 // a round's
	Deliveries, Lost      int64
	Rounds                []Point
}

// figures aggregates server's fixed points on shape; false if it has none.
func (r Run) figures(server, shape string) (figures, bool) {
	var rounds []Point
	for _, p := range r.Points {
		if p.Server == server && p.Shape == shape && p.Fixed {
			rounds = append(rounds, p)
		}
	}
	if len(rounds) == 0 {
		return figures{}, false
	}
	slices.SortStableFunc(rounds, func(a, b Point) int { return cmp.Compare(a.Round, b.Round) })
	med := func(figure func(Point) time.Duration) time.Duration {
		v := make([]time.Duration, len(rounds))
		for i, p := range rounds {
			v[i] = figure(p)
		}
		return median(v)
	}
	f := figures{Rate: rounds[0].Rate, Rounds: rounds, Store: map[string]time.Duration{},
		Server: med(func(p Point) time.Duration { s, _ := p.PerDelivery(); return s }),
		Total:  med(func(p Point) time.Duration { _, t := p.PerDelivery(); return t }),
		Stores: med(func(p Point) time.Duration { s, t := p.PerDelivery(); return t - s }),
		P50:    med(func(p Point) time.Duration { return p.P50 }),
		P99:    med(func(p Point) time.Duration { return p.P99 }),
	}
	seconds := make([]float64, len(rounds))
	for i, p := range rounds {
		seconds[i] = p.Seconds
		f.Deliveries += p.Deliveries
		f.Lost += p.Lost
		for name := range p.StoreCPU {
			if _, ok := f.Store[name]; !ok {
				f.Store[name] = med(func(p Point) time.Duration { return perDelivery(p.StoreCPU[name], p.Deliveries) })
			}
		}
	}
	f.Seconds = median(seconds)
	return f, true
}

// median of v (which it sorts); of an even count, the mean of the two
// middle values.
func median[T ~int64 | ~float64](v []T) T {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// behind names the rounds of f that ran behind their rate, as
// "Centrifugo v5.4.9 in round 2 (p99 400.0 ms, 0 lost)".
func (f figures) behind() []string {
	var out []string
	for _, p := range f.Rounds {
		if !p.Behind() {
			continue
		}
		round := ""
		if len(f.Rounds) > 1 {
			round = fmt.Sprintf(" in round %d", p.Round)
		}
		out = append(out, fmt.Sprintf("%s%s (p99 %s ms, %d lost)", p.Server, round, millis(p.P99), p.Lost))
	}
	return out
}

// Table is the comparison at each shape's fixed rate, in Markdown: per
// server, the median over its rounds of CPU per delivery of the server
// alone and with its datastores, p50 and p99, then each round's p99 and
// the deliveries of all rounds; and how many times the second server's
// median is the first's. The columns of any further server (the floor)
// come after the ratio.
func Table(r Run) string {
	servers := r.servers()
	if len(servers) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| |")
	for i, s := range servers {
		b.WriteString(" " + s + " |")
		if i == 1 {
			b.WriteString(" ratio |")
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(servers)+1) + "\n")
	for _, shape := range r.shapes() {
		figs := make([]figures, len(servers))
		ok := true
		for i, s := range servers {
			var found bool
			figs[i], found = r.figures(s, shape)
			ok = ok && found
		}
		if !ok {
			continue
		}
		row := func(label string, cell func(figures) string, ratio string) {
			b.WriteString("| " + label + " |")
			for i, f := range figs {
				b.WriteString(" " + cell(f) + " |")
				if i == 1 {
					b.WriteString(strings.TrimRight(" "+ratio, " ") + " |")
				}
			}
			b.WriteString("\n")
		}
		a, c := figs[0], figs[1]
		row(fmt.Sprintf("%s at %s msg/s: server CPU per delivery", shape, thousands(a.Rate)),
			func(f figures) string { return micros(f.Server) }, cheaper(a.Server, c.Server))
		row("the same, with the datastores' CPU", func(f figures) string {
			var parts []string
			for _, name := range slices.Sorted(maps.Keys(f.Store)) {
				parts = append(parts, name+" "+micros64(float64(f.Store[name])/float64(time.Microsecond)))
			}
			if len(parts) == 0 {
				return micros(f.Total) + " (no datastores)"
			}
			return fmt.Sprintf("%s (%s)", micros(f.Total), strings.Join(parts, " + "))
		}, cheaper(a.Total, c.Total))
		row("p50 / p99", func(f figures) string {
			return fmt.Sprintf("%s / %s ms", millis(f.P50), millis(f.P99))
		}, tail(a.P99, c.P99))
		row("p99 in each round", func(f figures) string {
			var p99s []string
			for _, p := range f.Rounds {
				p99s = append(p99s, millis(p.P99))
			}
			return strings.Join(p99s, ", ") + " ms"
		}, "")
		row("deliveries, lost", func(f figures) string {
			in := fmt.Sprintf("%.0f s", f.Seconds)
			if len(f.Rounds) > 1 {
				in = fmt.Sprintf("%d × %s", len(f.Rounds), in)
			}
			return fmt.Sprintf("%s in %s, %d lost", thousands(int(f.Deliveries)), in, f.Lost)
		}, "")
	}
	return b.String()
}

// cheaper is how many times b's cost is a's: above 1, a is cheaper.
func cheaper(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", float64(b)/float64(a))
}

// tail compares a's p99 with b's.
func tail(a, b time.Duration) string {
	switch {
	case a <= 0 || b <= 0:
		return "n/a"
	case a <= b:
		return fmt.Sprintf("tail %.1f× better", float64(b)/float64(a))
	default:
		return fmt.Sprintf("tail %.1f× worse", float64(a)/float64(b))
	}
}

func micros(d time.Duration) string { return micros64(float64(d)/float64(time.Microsecond)) + " µs" }
func micros64(us float64) string    { return fmt.Sprintf("%.1f", us) }
func millis(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// thousands writes n with commas: 1,500.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// FloorBound is, for each shape where the floor ran, the arithmetic of
// issue 30's goal in Markdown: the floor's CPU per delivery plus the
// second server's datastores' (for Centrifugo its Redis: the publish and
// the history of each message, which a server with Redis fan-out and
// history needs too), against what the goal leaves, the second server's
// total divided by Goal; all from the medians over the rounds. Empty
// without a floor.
func FloorBound(r Run) string {
	servers := r.servers()
	if r.Floor == "" || len(servers) < 3 {
		return ""
	}
	first, second := servers[0], servers[1]
	var b strings.Builder
	fmt.Fprintf(&b, "The floor against issue 30's goal (%s's total CPU per delivery at most %s's ÷ %.1f), at each shape's fixed rate, from the medians over the rounds:\n\n", first, second, Goal)
	for _, shape := range r.shapes() {
		f, okF := r.figures(r.Floor, shape)
		a, okA := r.figures(first, shape)
		c, okC := r.figures(second, shape)
		if !okF || !okA || !okC || c.Deliveries == 0 {
			continue
		}
		bound, goal := f.Server+c.Stores, time.Duration(float64(c.Total)/Goal)
		fmt.Fprintf(&b, "- %s at %s msg/s: the floor's %s plus %s's datastores' %s is **%s a delivery**; the goal leaves %s (%s ÷ %.1f). ",
			shape, thousands(f.Rate), micros(f.Server), second, micros(c.Stores), micros(bound), micros(goal), micros(c.Total), Goal)
		if bound > goal {
			fmt.Fprintf(&b, "The floor is **%.2f× what the goal leaves**: no server that makes a write of its own for each delivery and keeps that datastore work meets the goal at this rate. %s spends %s.\n",
				float64(bound)/float64(goal), first, micros(a.Total))
		} else {
			fmt.Fprintf(&b, "The floor takes **%.0f %% of it**, leaving %s a delivery for everything else a server does; %s spends %s.\n",
				100*float64(bound)/float64(goal), micros(goal-bound), first, micros(a.Total))
		}
		// One round behind is enough: its CPU per delivery may be the median.
		behind := slices.Concat(a.behind(), c.behind(), f.behind())
		if len(behind) > 0 {
			fmt.Fprintf(&b, "  **This run does not decide this shape**: %s ran behind the rate (p99 past %s ms or losses), and a server behind shares writes among the frames that waited, so its CPU per delivery is below what the rate costs at pace.\n",
				strings.Join(behind, ", "), millis(Saturated))
		}
	}
	return b.String()
}

// Sweep lists every point, by shape, server, rate and round, in Markdown.
func Sweep(r Run) string {
	pts := slices.Clone(r.Points)
	shapes, servers := r.shapes(), r.servers()
	slices.SortStableFunc(pts, func(a, b Point) int {
		return cmp.Or(cmp.Compare(slices.Index(shapes, a.Shape), slices.Index(shapes, b.Shape)),
			cmp.Compare(slices.Index(servers, a.Server), slices.Index(servers, b.Server)), cmp.Compare(a.Rate, b.Rate), cmp.Compare(a.Round, b.Round))
	})
	var b strings.Builder
	b.WriteString("| shape | server | msg/s | round | deliveries/s | p50 | p99 | server CPU per delivery | with datastores | lost |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pts {
		s, t := p.PerDelivery()
		round := ""
		if p.Round > 0 {
			round = strconv.Itoa(p.Round)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s ms | %s ms | %s | %s | %d |\n", p.Shape, p.Server, thousands(p.Rate), round,
			thousands(int(float64(p.Deliveries)/max(p.Seconds, 1e-9))), millis(p.P50), millis(p.P99), micros(s), micros(t), p.Lost)
	}
	return b.String()
}

// Begin and End mark the generated section of docs/performance.md.
const (
	Begin = "<!-- begin: written by make bench (tests/pinned_test.go); edits here are overwritten -->"
	End   = "<!-- end: written by make bench -->"
)

// Section is the generated section's content for r.
func Section(r Run, plot string) string {
	return fmt.Sprintf("Run of %s, %s. %s\n\n%s\n%s![p99 against rate, every server, both shapes](%s)\n",
		r.Date, r.Machine, r.Method, Table(r), paragraph(FloorBound(r)), plot)
}

// paragraph ends a non-empty block with a blank line.
func paragraph(s string) string {
	if s == "" {
		return ""
	}
	return s + "\n"
}

// Replace puts content between doc's Begin and End markers, which must
// each be there once, in that order.
func Replace(doc, content string) (string, error) {
	if strings.Count(doc, Begin) != 1 || strings.Count(doc, End) != 1 {
		return "", fmt.Errorf("the document must hold each marker once: %q and %q", Begin, End)
	}
	head, rest, _ := strings.Cut(doc, Begin)
	_, tail, ok := strings.Cut(rest, End)
	if !ok {
		return "", fmt.Errorf("%q comes before %q", End, Begin)
	}
	return head + Begin + "\n" + strings.TrimSpace(content) + "\n" + End + tail, nil
}

// LogEntry is the run's dated section of docs/log.md.
func LogEntry(r Run) string {
	return fmt.Sprintf("## %s: the pinned comparison (`make bench`)\n\nRun of %s, %s. %s\n\nAt each shape's fixed rate, the median over its rounds:\n\n%s\n%sEvery point of the sweep:\n\n%s\n",
		r.Date[:min(len(r.Date), 10)], r.Date, r.Machine, r.Method, Table(r), paragraph(FloorBound(r)), Sweep(r))
}

// Prepend inserts entry into log before its first dated section (the log
// is newest first).
func Prepend(log, entry string) (string, error) {
	i := strings.Index(log, "\n## ")
	if i < 0 {
		return "", fmt.Errorf("the log has no dated section (## ...) to go before")
	}
	return log[:i+1] + strings.TrimSpace(entry) + "\n\n" + log[i+1:], nil
}
