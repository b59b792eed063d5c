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
	"strings"
	"time"
)

// Point is one load run against one server at one fixed rate.
type Point struct {
	Server     string        `json:"server"` // "Switchboard", "Centrifugo v5.4.9"
	Shape      string        `json:"shape"`  // "1000 rooms × 10"
	Rate       int           `json:"rate"`   // messages a second
	Fixed      bool          `json:"fixed"`  // the shape's point of the table
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
	per := func(s float64) time.Duration {
		return time.Duration(s / float64(p.Deliveries) * float64(time.Second))
	}
	return per(p.ServerCPU), per(all)
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

func (r Run) fixed(server, shape string) (Point, bool) {
	for _, p := range r.Points {
		if p.Server == server && p.Shape == shape && p.Fixed {
			return p, true
		}
	}
	return Point{}, false
}

// Table is the comparison at each shape's fixed rate, in Markdown: CPU per
// delivery of the server alone and with its datastores, p50 and p99, and
// how many times the second server's figure is the first's; the columns of
// any further server (the floor) come after the ratio.
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
		pts := make([]Point, len(servers))
		ok := true
		for i, s := range servers {
			var found bool
			pts[i], found = r.fixed(s, shape)
			ok = ok && found
		}
		if !ok {
			continue
		}
		row := func(label string, cell func(Point) string, ratio string) {
			b.WriteString("| " + label + " |")
			for i, p := range pts {
				b.WriteString(" " + cell(p) + " |")
				if i == 1 {
					b.WriteString(strings.TrimRight(" "+ratio, " ") + " |")
				}
			}
			b.WriteString("\n")
		}
		server := func(p Point) time.Duration { s, _ := p.PerDelivery(); return s }
		total := func(p Point) time.Duration { _, t := p.PerDelivery(); return t }
		row(fmt.Sprintf("%s at %s msg/s: server CPU per delivery", shape, thousands(pts[0].Rate)),
			func(p Point) string { return micros(server(p)) }, cheaper(server(pts[0]), server(pts[1])))
		row("the same, with the datastores' CPU", func(p Point) string {
			var parts []string
			for _, name := range slices.Sorted(maps.Keys(p.StoreCPU)) {
				parts = append(parts, name+" "+micros64(p.StoreCPU[name]/float64(max(p.Deliveries, 1))*1e6))
			}
			if len(parts) == 0 {
				return micros(total(p)) + " (no datastores)"
			}
			return fmt.Sprintf("%s (%s)", micros(total(p)), strings.Join(parts, " + "))
		}, cheaper(total(pts[0]), total(pts[1])))
		row("p50 / p99", func(p Point) string {
			return fmt.Sprintf("%s / %s ms", millis(p.P50), millis(p.P99))
		}, tail(pts[0].P99, pts[1].P99))
		row("deliveries, lost", func(p Point) string {
			return fmt.Sprintf("%s in %.0f s, %d lost", thousands(int(p.Deliveries)), p.Seconds, p.Lost)
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
// total divided by Goal. Empty without a floor.
func FloorBound(r Run) string {
	servers := r.servers()
	if r.Floor == "" || len(servers) < 3 {
		return ""
	}
	first, second := servers[0], servers[1]
	var b strings.Builder
	fmt.Fprintf(&b, "The floor against issue 30's goal (%s's total CPU per delivery at most %s's ÷ %.1f), at each shape's fixed rate:\n\n", first, second, Goal)
	for _, shape := range r.shapes() {
		f, okF := r.fixed(r.Floor, shape)
		a, okA := r.fixed(first, shape)
		c, okC := r.fixed(second, shape)
		if !okF || !okA || !okC || c.Deliveries == 0 {
			continue
		}
		floor, _ := f.PerDelivery()
		server, total := c.PerDelivery()
		stores := total - server
		bound, goal := floor+stores, time.Duration(float64(total)/Goal)
		_, firstTotal := a.PerDelivery()
		var behind []string
		for _, p := range []Point{a, c, f} {
			if p.Behind() {
				behind = append(behind, fmt.Sprintf("%s (p99 %s ms, %d lost)", p.Server, millis(p.P99), p.Lost))
			}
		}
		fmt.Fprintf(&b, "- %s at %s msg/s: the floor's %s plus %s's datastores' %s is **%s a delivery**; the goal leaves %s (%s ÷ %.1f). ",
			shape, thousands(f.Rate), micros(floor), second, micros(stores), micros(bound), micros(goal), micros(total), Goal)
		if bound > goal {
			fmt.Fprintf(&b, "The floor is **%.2f× what the goal leaves**: no server that makes a write of its own for each delivery and keeps that datastore work meets the goal at this rate. %s spends %s.\n",
				float64(bound)/float64(goal), first, micros(firstTotal))
		} else {
			fmt.Fprintf(&b, "The floor takes **%.0f %% of it**, leaving %s a delivery for everything else a server does; %s spends %s.\n",
				100*float64(bound)/float64(goal), micros(goal-bound), first, micros(firstTotal))
		}
		if len(behind) > 0 {
			fmt.Fprintf(&b, "  **This run does not decide this shape**: %s ran behind the rate (p99 past %s ms or losses), and a server behind shares writes among the frames that waited, so its CPU per delivery is below what the rate costs at pace.\n",
				strings.Join(behind, ", "), millis(Saturated))
		}
	}
	return b.String()
}

// Sweep lists every point, by shape, server and rate, in Markdown.
func Sweep(r Run) string {
	pts := slices.Clone(r.Points)
	shapes, servers := r.shapes(), r.servers()
	slices.SortStableFunc(pts, func(a, b Point) int {
		return cmp.Or(cmp.Compare(slices.Index(shapes, a.Shape), slices.Index(shapes, b.Shape)),
			cmp.Compare(slices.Index(servers, a.Server), slices.Index(servers, b.Server)), cmp.Compare(a.Rate, b.Rate))
	})
	var b strings.Builder
	b.WriteString("| shape | server | msg/s | deliveries/s | p50 | p99 | server CPU per delivery | with datastores | lost |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pts {
		s, t := p.PerDelivery()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s ms | %s ms | %s | %s | %d |\n", p.Shape, p.Server, thousands(p.Rate),
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
	return fmt.Sprintf("## %s: the pinned comparison (`make bench`)\n\nRun of %s, %s. %s\n\nAt each shape's fixed rate:\n\n%s\n%sEvery point of the sweep:\n\n%s\n",
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
