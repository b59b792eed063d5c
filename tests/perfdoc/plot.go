package perfdoc

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
)

// Plot draws p99 against rate, one panel per shape, one line per server,
// as a self-contained SVG: p99 on a log scale (a tail spans decades), rates
// on a linear one; at the table's rate, the median over the rounds. A point
// with losses is drawn hollow.
func Plot(r Run) []byte {
	const (
		panelW, panelH = 440, 300
		left, right    = 56, 16
		top, bottom    = 40, 46
		legendStep     = 190 // three servers' names and the loss marker fit two panels
	)
	shapes, servers := r.shapes(), r.servers()
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	width, height := panelW*max(len(shapes), 1), top+panelH-bottom+84
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	curves := map[[2]string][]marker{}
	for _, shape := range shapes {
		for _, server := range servers {
			curves[[2]string{shape, server}] = r.curve(server, shape)
		}
	}
	// One p99 scale for both panels, whole decades of milliseconds.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range curves {
		for _, m := range c {
			ms := float64(m.p99) / 1e6
			lo, hi = min(lo, ms), max(hi, ms)
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi == dlo {
		dhi++
	}
	for i, shape := range shapes {
		x0, x1 := float64(i*panelW+left), float64((i+1)*panelW-right)
		y0, y1 := float64(top+panelH-bottom), float64(top)
		maxRate := 0
		for _, p := range r.Points {
			if p.Shape == shape {
				maxRate = max(maxRate, p.Rate)
			}
		}
		rateStep := niceStep(float64(maxRate) / 5)
		xMax := math.Ceil(float64(maxRate)/rateStep) * rateStep
		x := func(rate int) float64 { return x0 + (x1-x0)*float64(rate)/max(xMax, 1) }
		y := func(ms float64) float64 {
			return y0 - (y0-y1)*(math.Log10(max(ms, math.Pow(10, dlo)))-dlo)/(dhi-dlo)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", (x0+x1)/2, top-16, html.EscapeString(shape))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", x0, y1, x1-x0, y0-y1)
		for d := dlo; d <= dhi; d++ {
			ms := math.Pow(10, d)
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end" dy="4">%s</text>`+"\n",
				x0, x1, y(ms), y(ms), x0-4, y(ms), strings.TrimSuffix(fmt.Sprintf("%g", ms), ".0"))
		}
		for v := 0.0; v <= xMax; v += rateStep {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
				x(int(v)), x(int(v)), y0, y0+4, x(int(v)), y0+16, thousands(int(v)))
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">messages a second</text>`+"\n", (x0+x1)/2, y0+34)
		fmt.Fprintf(&b, `<text transform="translate(%.0f %.0f) rotate(-90)" text-anchor="middle">p99, ms</text>`+"\n", x0-40, (y0+y1)/2)
		for si, server := range servers {
			pts := curves[[2]string{shape, server}]
			color := colors[si%len(colors)]
			var line []string
			for _, p := range pts {
				line = append(line, fmt.Sprintf("%.1f,%.1f", x(p.rate), y(float64(p.p99)/1e6)))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(line, " "), color)
			for _, p := range pts {
				fill := color
				if p.lost {
					fill = "white"
				}
				median := ""
				if p.rounds > 1 {
					median = fmt.Sprintf(", the median of %d rounds", p.rounds)
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s"><title>%s, %s msg/s: p99 %s ms%s</title></circle>`+"\n",
					x(p.rate), y(float64(p.p99)/1e6), fill, color, html.EscapeString(server), thousands(p.rate), millis(p.p99), median)
			}
		}
	}
	// The legend, then the run's date and the machine's state, each on a
	// line of its own below the axes' labels.
	for si, server := range servers {
		lx := left + si*legendStep
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>`+"\n",
			lx, lx+24, height-34, height-34, colors[si%len(colors)], lx+30, height-30, html.EscapeString(server))
	}
	fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="3.5" fill="white" stroke="#555"/><text x="%d" y="%d" fill="#555">a message lost</text>`+"\n",
		left+len(servers)*legendStep+4, height-34, left+len(servers)*legendStep+12, height-30)
	state, _, _ := strings.Cut(r.Machine, ";")
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%s</text>`+"\n", left, height-10, html.EscapeString(r.Date+", "+state))
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// marker is a point of the plot: a sweep point, or the median of the
// table point's rounds.
type marker struct {
	rate   int
	p99    time.Duration
	lost   bool // a message lost (in any round)
	rounds int  // the table point's rounds; 0 for a sweep point
}

// curve is server's markers on shape by rate, those with a p99.
func (r Run) curve(server, shape string) []marker {
	var out []marker
	for _, p := range r.Points {
		if p.Server == server && p.Shape == shape && !p.Fixed {
			out = append(out, marker{rate: p.Rate, p99: p.P99, lost: p.Lost > 0})
		}
	}
	if f, ok := r.figures(server, shape); ok {
		out = append(out, marker{rate: f.Rate, p99: f.P99, lost: f.Lost > 0, rounds: len(f.Rounds)})
	}
	out = slices.DeleteFunc(out, func(m marker) bool { return m.p99 <= 0 })
	slices.SortFunc(out, func(a, b marker) int { return a.rate - b.rate })
	return out
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}
