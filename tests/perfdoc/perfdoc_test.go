package perfdoc

import (
	"cmp"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func run() Run {
	return Run{Date: "2026-12-06 12:00 UTC", Machine: "2 cores, busy", Method: "pinned", Points: []Point{
		{Server: "Switchboard", Shape: "1000 rooms × 10", Rate: 1500, Fixed: true, Round: 1, Seconds: 20, Deliveries: 300000, P50: ms(0.5), P99: ms(12.6),
			ServerCPU: 8.79, StoreCPU: map[string]float64{"Redis": 2.1, "Postgres": 1.32}},
		{Server: "Switchboard", Shape: "1000 rooms × 10", Rate: 3000, Seconds: 10, Deliveries: 300000, P50: ms(1), P99: ms(40), ServerCPU: 9},
		{Server: "Centrifugo v5.4.9", Shape: "1000 rooms × 10", Rate: 1500, Fixed: true, Round: 1, Seconds: 20, Deliveries: 300000, P50: ms(0.5), P99: ms(7.1),
			ServerCPU: 11.1, StoreCPU: map[string]float64{"Redis": 2.1}},
		{Server: "Centrifugo v5.4.9", Shape: "1000 rooms × 10", Rate: 3000, Seconds: 10, Deliveries: 290000, Lost: 12, P50: ms(3), P99: ms(400), ServerCPU: 12},
		{Server: "Switchboard", Shape: "1 room × 1,000", Rate: 100, Fixed: true, Round: 1, Seconds: 20, Deliveries: 2000000, P50: ms(4.6), P99: ms(13.1), ServerCPU: 15.2},
		{Server: "Centrifugo v5.4.9", Shape: "1 room × 1,000", Rate: 100, Fixed: true, Round: 1, Seconds: 20, Deliveries: 2000000, P50: ms(8.8), P99: ms(72.1), ServerCPU: 18.8},
	}}
}

// withFloor is run with the floor at each shape's fixed rate: under the
// goal on 1000 × 10, over it on 1 × 1,000.
func withFloor() Run {
	r := run()
	r.Floor = "Floor (in memory)"
	r.Points = append(r.Points,
		Point{Server: r.Floor, Shape: "1000 rooms × 10", Rate: 1500, Fixed: true, Round: 1, Seconds: 20, Deliveries: 300000, P50: time.Millisecond, P99: 5 * time.Millisecond, ServerCPU: 3.6},
		Point{Server: r.Floor, Shape: "1 room × 1,000", Rate: 100, Fixed: true, Round: 1, Seconds: 20, Deliveries: 2000000, P50: time.Millisecond, P99: 3 * time.Millisecond, ServerCPU: 16})
	r.Points[5].StoreCPU = map[string]float64{"Redis": 0.4} // Centrifugo's on 1 × 1,000
	return r
}

// withRounds is r with server's table point on shape replaced by rounds,
// each with the rate, length and (unless it sets them) deliveries of the
// point it replaces, numbered in order from 1 unless it sets its Round.
func withRounds(r Run, server, shape string, rounds ...Point) Run {
	var base Point
	r.Points = slices.DeleteFunc(slices.Clone(r.Points), func(p Point) bool {
		if p.Server == server && p.Shape == shape && p.Fixed {
			base = p
			return true
		}
		return false
	})
	for i, p := range rounds {
		p.Server, p.Shape, p.Rate, p.Fixed, p.Seconds = server, shape, base.Rate, true, base.Seconds
		p.Round = cmp.Or(p.Round, i+1)
		p.Deliveries = cmp.Or(p.Deliveries, base.Deliveries)
		r.Points = append(r.Points, p)
	}
	return r
}

func TestTableHasEachShapesFiguresAndRatios(t *testing.T) {
	got := Table(run())
	hasLines(t, got,
		"| | Switchboard | Centrifugo v5.4.9 | ratio |",
		"| 1000 rooms × 10 at 1,500 msg/s: server CPU per delivery | 29.3 µs | 37.0 µs | 1.26× |",
		"| the same, with the datastores' CPU | 40.7 µs (Postgres 4.4 + Redis 7.0) | 44.0 µs (Redis 7.0) | 1.08× |",
		"| p50 / p99 | 0.5 / 12.6 ms | 0.5 / 7.1 ms | tail 1.8× worse |",
		"| 1 room × 1,000 at 100 msg/s: server CPU per delivery | 7.6 µs | 9.4 µs | 1.24× |",
		"| p50 / p99 | 4.6 / 13.1 ms | 8.8 / 72.1 ms | tail 5.5× better |",
		"| p99 in each round | 13.1 ms | 72.1 ms | |",
		"| deliveries, lost | 300,000 in 20 s, 0 lost | 300,000 in 20 s, 0 lost | |",
	)
	if strings.Contains(got, "3,000") {
		t.Errorf("the table shows a sweep point:\n%s", got)
	}
}

// Each figure of a server with several rounds is the median over them (of
// an even count, the mean of the two middle values), not the first round
// nor the mean, and the ratios are the medians'; each round's p99 is
// listed in round order, and the deliveries and losses are summed.
func TestTableTakesTheMedianOverRounds(t *testing.T) {
	pg := func(redis float64) map[string]float64 { return map[string]float64{"Redis": redis, "Postgres": 1.32} }
	for _, tc := range []struct {
		name   string
		rounds []Point
		want   []string
	}{
		{"three rounds, one outlying, listed out of order", []Point{
			{Round: 2, ServerCPU: 30, StoreCPU: pg(2.1), P50: ms(9), P99: ms(180)},      // 100.0 µs, 111.4 with the datastores
			{Round: 3, ServerCPU: 9, StoreCPU: pg(2.4), P50: ms(0.7), P99: ms(20)},      // 30.0 µs, 42.4 (Redis 8.0)
			{Round: 1, ServerCPU: 8.79, StoreCPU: pg(2.1), P50: ms(0.5), P99: ms(12.6)}, // 29.3 µs, 40.7
		}, []string{
			"| 1000 rooms × 10 at 1,500 msg/s: server CPU per delivery | 30.0 µs | 37.0 µs | 1.23× |",
			"| the same, with the datastores' CPU | 42.4 µs (Postgres 4.4 + Redis 7.0) | 44.0 µs (Redis 7.0) | 1.04× |",
			"| p50 / p99 | 0.7 / 20.0 ms | 0.5 / 7.1 ms | tail 2.8× worse |",
			"| p99 in each round | 12.6, 180.0, 20.0 ms | 7.1 ms | |",
			"| deliveries, lost | 900,000 in 3 × 20 s, 0 lost | 300,000 in 20 s, 0 lost | |",
		}},
		{"four rounds: the mean of the middle two", []Point{
			{ServerCPU: 8.79, StoreCPU: pg(2.1), P50: ms(0.5), P99: ms(12.6)},        // 29.3 µs, 40.7
			{ServerCPU: 30, StoreCPU: pg(2.1), P50: ms(9), P99: ms(200), Lost: 2},    // 100.0 µs, 111.4
			{ServerCPU: 9.39, StoreCPU: pg(2.1), P50: ms(0.8), P99: ms(20)},          // 31.3 µs, 42.7
			{ServerCPU: 9.09, StoreCPU: pg(2.1), P50: ms(0.6), P99: ms(14), Lost: 1}, // 30.3 µs, 41.7
		}, []string{
			"| 1000 rooms × 10 at 1,500 msg/s: server CPU per delivery | 30.8 µs | 37.0 µs | 1.20× |",
			"| the same, with the datastores' CPU | 42.2 µs (Postgres 4.4 + Redis 7.0) | 44.0 µs (Redis 7.0) | 1.04× |",
			"| p50 / p99 | 0.7 / 17.0 ms | 0.5 / 7.1 ms | tail 2.4× worse |",
			"| p99 in each round | 12.6, 200.0, 20.0, 14.0 ms | 7.1 ms | |",
			"| deliveries, lost | 1,200,000 in 4 × 20 s, 3 lost | 300,000 in 20 s, 0 lost | |",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hasLines(t, Table(withRounds(run(), "Switchboard", "1000 rooms × 10", tc.rounds...)), tc.want...)
		})
	}
}

// The floor's column comes after the ratio, which stays the first two
// servers', whatever order the points came in.
func TestTableShowsTheFloorAfterTheRatio(t *testing.T) {
	r := withFloor()
	r.Points = append(r.Points[6:], r.Points[:6]...) // the floor's points first
	got := Table(r)
	hasLines(t, got,
		"| | Switchboard | Centrifugo v5.4.9 | ratio | Floor (in memory) |\n|---|---|---|---|---|",
		"| 1000 rooms × 10 at 1,500 msg/s: server CPU per delivery | 29.3 µs | 37.0 µs | 1.26× | 12.0 µs |",
		"| the same, with the datastores' CPU | 40.7 µs (Postgres 4.4 + Redis 7.0) | 44.0 µs (Redis 7.0) | 1.08× | 12.0 µs (no datastores) |",
		"| p50 / p99 | 0.5 / 12.6 ms | 0.5 / 7.1 ms | tail 1.8× worse | 1.0 / 5.0 ms |",
		"| p99 in each round | 12.6 ms | 7.1 ms | | 5.0 ms |",
		"| 1 room × 1,000 at 100 msg/s: server CPU per delivery | 7.6 µs | 9.4 µs | 1.24× | 8.0 µs |",
	)
}

// The floor's arithmetic: its CPU plus the second server's datastores',
// against the second's total ÷ 1.5, said either way it comes out; no
// floor, no arithmetic.
func TestFloorBoundWeighsTheFloorAgainstTheGoal(t *testing.T) {
	got := FloorBound(withFloor())
	for _, want := range []string{
		"- 1000 rooms × 10 at 1,500 msg/s: the floor's 12.0 µs plus Centrifugo v5.4.9's datastores' 7.0 µs is **19.0 µs a delivery**; the goal leaves 29.3 µs (44.0 µs ÷ 1.5). The floor takes **65 % of it**, leaving 10.3 µs a delivery for everything else a server does; Switchboard spends 40.7 µs.",
		"- 1 room × 1,000 at 100 msg/s: the floor's 8.0 µs plus Centrifugo v5.4.9's datastores' 0.2 µs is **8.2 µs a delivery**; the goal leaves 6.4 µs (9.6 µs ÷ 1.5). The floor is **1.28× what the goal leaves**: no server",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the arithmetic has no\n%s\nin\n%s", want, got)
		}
	}
	if !strings.Contains(Section(withFloor(), "p.svg"), got) || !strings.Contains(LogEntry(withFloor()), got) {
		t.Error("the generated section or the log entry lacks the floor's arithmetic")
	}
	if strings.Contains(got, "does not decide") {
		t.Errorf("points within their rate flagged as behind:\n%s", got)
	}
	if s := FloorBound(run()); s != "" {
		t.Errorf("a run without a floor got arithmetic:\n%s", s)
	}
}

// A shape is flagged as undecided when any round of a server ran behind,
// naming the round, even if its median is within the rate; the arithmetic
// takes the medians.
func TestFloorBoundFlagsAShapeWithARoundBehind(t *testing.T) {
	oneBehind := withFloor()
	oneBehind.Points[5].P99 = 400 * time.Millisecond // Centrifugo on 1 × 1,000
	for _, tc := range []struct {
		name string
		run  Run
		want []string
	}{
		{"its one round", oneBehind, []string{"Centrifugo v5.4.9 (p99 400.0 ms, 0 lost) ran behind"}},
		{"one of three rounds", withRounds(withFloor(), "Centrifugo v5.4.9", "1 room × 1,000",
			Point{ServerCPU: 18.8, StoreCPU: map[string]float64{"Redis": 0.4}, P99: ms(72.1)}, // 9.4 µs + 0.2
			Point{ServerCPU: 30, StoreCPU: map[string]float64{"Redis": 2}, P99: ms(400)},      // 15.0 µs + 1.0
			Point{ServerCPU: 19.8, StoreCPU: map[string]float64{"Redis": 0.6}, P99: ms(80)},   // 9.9 µs + 0.3
		), []string{
			"- 1 room × 1,000 at 100 msg/s: the floor's 8.0 µs plus Centrifugo v5.4.9's datastores' 0.3 µs is **8.3 µs a delivery**; the goal leaves 6.8 µs (10.2 µs ÷ 1.5). The floor is **1.22× what the goal leaves**",
			"Centrifugo v5.4.9 in round 2 (p99 400.0 ms, 0 lost) ran behind",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FloorBound(tc.run)
			if want := "- 1 room × 1,000 at 100 msg/s:"; strings.Count(got, "does not decide") != 1 || strings.Index(got, "does not decide") < strings.Index(got, want) {
				t.Errorf("want only 1 × 1,000 flagged:\n%s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("no\n%s\nin\n%s", w, got)
				}
			}
		})
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1500: "1,500", 2000000: "2,000,000", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestReplaceRewritesOnlyTheSection(t *testing.T) {
	doc := "# Performance\n\nbefore\n" + Begin + "\nold table\n" + End + "\nafter\n"
	got, err := Replace(doc, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Performance\n\nbefore\n" + Begin + "\nnew table\n" + End + "\nafter\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, _ := Replace(got, "new table\n")
	if again != got {
		t.Errorf("a second rewrite with the same content changed the document:\n%s", again)
	}
	for name, bad := range map[string]string{
		"no markers":   "# Performance\n",
		"no end":       Begin + "\nx\n",
		"twice":        Begin + End + Begin + End,
		"end first":    End + "\nx\n" + Begin,
		"no beginning": "x\n" + End,
	} {
		if _, err := Replace(bad, "t"); err == nil {
			t.Errorf("%s: Replace accepted %q", name, bad)
		}
	}
}

func TestPrependGoesBeforeTheNewestEntry(t *testing.T) {
	log := "# Measurement log\n\nNewest first.\n\n## 2026-12-05: older\n\ntext\n"
	got, err := Prepend(log, LogEntry(run()))
	if err != nil {
		t.Fatal(err)
	}
	i, j := strings.Index(got, "## 2026-12-06: the pinned comparison"), strings.Index(got, "## 2026-12-05: older")
	if i < 0 || j < i || !strings.HasPrefix(got, "# Measurement log\n\nNewest first.\n\n## 2026-12-06") {
		t.Errorf("the entry is not first among the dated ones:\n%s", got)
	}
	if !strings.Contains(got, "| 1 room × 1,000 | Centrifugo v5.4.9 | 100 | 1 | 100,000 | 8.8 ms | 72.1 ms | 9.4 µs | 9.4 µs | 0 |") {
		t.Errorf("the sweep lacks a point:\n%s", got)
	}
	if _, err := Prepend("# Measurement log\n", "x"); err == nil {
		t.Error("Prepend accepted a log without dated sections")
	}
}

type circle struct {
	CY    float64 `xml:"cy,attr"`
	Fill  string  `xml:"fill,attr"`
	Title string  `xml:"title"`
}

// The plot is well-formed SVG with a line per server and shape, each with
// its points, higher p99 drawn higher, and losses drawn hollow.
func TestPlotDrawsEveryPoint(t *testing.T) {
	var svg struct {
		Lines []struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
		Circles []circle `xml:"circle"`
	}
	// Centrifugo's 1000 × 10 table point in three rounds: drawn once, at
	// the median.
	r := withRounds(withFloor(), "Centrifugo v5.4.9", "1000 rooms × 10", Point{P99: ms(90)}, Point{P99: ms(7.1)}, Point{P99: ms(5)})
	if err := xml.Unmarshal(Plot(r), &svg); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	points := slices.DeleteFunc(svg.Circles, func(c circle) bool { return c.Title == "" }) // the legend's marker has none
	if len(svg.Lines) != 6 || len(points) != 8 {
		t.Fatalf("%d lines and %d points, want 6 (3 servers × 2 shapes, the floor's of one point) and 8", len(svg.Lines), len(points))
	}
	cy := map[string]float64{}
	for _, c := range points {
		cy[c.Title] = c.CY
		if strings.Contains(c.Title, "p99 400.0") != (c.Fill == "white") {
			t.Errorf("point %q filled %s: only the one with losses is hollow", c.Title, c.Fill)
		}
	}
	if _, ok := cy["Floor (in memory), 1,500 msg/s: p99 5.0 ms"]; !ok {
		t.Errorf("the floor's point is not drawn: %v", cy)
	}
	low, high := cy["Centrifugo v5.4.9, 1,500 msg/s: p99 7.1 ms, the median of 3 rounds"], cy["Centrifugo v5.4.9, 3,000 msg/s: p99 400.0 ms"]
	if low == 0 || high == 0 || high >= low {
		t.Errorf("p99 7.1 ms at y=%v, 400 ms at y=%v: want the higher p99 drawn higher (smaller y); points %v", low, high, cy)
	}
	for _, l := range svg.Lines {
		for _, xy := range strings.Fields(l.Points) {
			x, y, _ := strings.Cut(xy, ",")
			if _, err := strconv.ParseFloat(x, 64); err != nil {
				t.Errorf("point %q: %v", xy, err)
			}
			if _, err := strconv.ParseFloat(y, 64); err != nil {
				t.Errorf("point %q: %v", xy, err)
			}
		}
	}
}

// hasLines fails t for each of want that is not a whole line of got.
func hasLines(t *testing.T, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("the table has no line\n%s\nin\n%s", w, got)
		}
	}
}
