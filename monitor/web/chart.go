package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// Point is one value of a chart; Min and Max, when they differ from
// Value, draw a band (a rollup's range).
type Point struct {
	T        time.Time
	Value    float64
	Min, Max float64
	HasRange bool
}

// ChartSpec describes one chart.
type ChartSpec struct {
	// Title names the series; Unit is appended to the y axis ("%",
	// "bytes", "ms", or "" for plain numbers).
	Title, Unit string
	From, To    time.Time
	Points      []Point
}

// Chart dimensions, in SVG user units (the chart scales to its box).
const (
	chartW, chartH         = 600, 200
	padL, padR, padT, padB = 64, 14, 28, 26
	plotW                  = chartW - padL - padR
	plotH                  = chartH - padT - padB
	yTicks                 = 4
)

// Chart draws a line chart as inline SVG with a time axis, a value axis
// with units, and grid lines. It needs no script.
func Chart(c ChartSpec) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(c.Title+" over time"))
	title := c.Title
	if c.Unit != "" {
		title += " (" + c.Unit + ")"
	}
	fmt.Fprintf(&b, `<text class="title" x="%d" y="18">%s</text>`, 8, template.HTMLEscapeString(title))
	if !c.To.After(c.From) {
		c.To = c.From.Add(time.Hour)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range c.Points {
		l, h := p.Value, p.Value
		if p.HasRange {
			l, h = math.Min(l, p.Min), math.Max(h, p.Max)
		}
		lo, hi = math.Min(lo, l), math.Max(hi, h)
	}
	if len(c.Points) == 0 {
		lo, hi = 0, 1
	}
	if lo > 0 && (c.Unit == "%" || c.Unit == "bytes" || lo < hi/2) {
		lo = 0
	}
	if c.Unit == "%" && hi <= 100 && hi > 50 {
		hi = 100
	}
	step := niceStep((hi - lo) / yTicks)
	lo = math.Floor(lo/step) * step
	hi = math.Max(math.Ceil(hi/step)*step, lo+step)
	x := func(t time.Time) float64 {
		return padL + float64(plotW)*float64(t.Sub(c.From))/float64(c.To.Sub(c.From))
	}
	y := func(v float64) float64 { return padT + float64(plotH)*(1-(v-lo)/(hi-lo)) }
	// value axis and grid
	for v := lo; v <= hi+step/2; v += step {
		yy := y(v)
		fmt.Fprintf(&b, `<line class="gridline" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, yy, yy)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, yy+4, template.HTMLEscapeString(formatValue(v, c.Unit, step)))
	}
	fmt.Fprintf(&b, `<line class="baseline" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padL, chartW-padR, padT+plotH, padT+plotH)
	// time axis
	span := c.To.Sub(c.From)
	tstep, layout := timeStep(span)
	for t := c.From.Truncate(tstep).Add(tstep); t.Before(c.To); t = t.Add(tstep) {
		xx := x(t)
		if xx < padL+20 || xx > chartW-padR-20 {
			continue
		}
		fmt.Fprintf(&b, `<line class="gridline" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, xx, xx, padT, padT+plotH)
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, xx, chartH-8, t.Local().Format(layout))
	}
	if len(c.Points) == 0 {
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="middle">no data in this range</text>`, padL+plotW/2, padT+plotH/2)
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	// band of min..max
	var band []string
	var upper, lower []string
	for _, p := range c.Points {
		if p.HasRange {
			upper = append(upper, fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.Max)))
			lower = append([]string{fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.Min))}, lower...)
		}
	}
	if len(upper) > 1 {
		band = append(upper, lower...)
		fmt.Fprintf(&b, `<polygon class="band" points="%s"/>`, strings.Join(band, " "))
	}
	var pts []string
	for _, p := range c.Points {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.Value)))
	}
	if len(pts) == 1 {
		fmt.Fprintf(&b, `<circle class="line" cx="%s" r="3"/>`, strings.Replace(pts[0], ",", `" cy="`, 1))
	} else {
		fmt.Fprintf(&b, `<polyline class="line" points="%s"/>`, strings.Join(pts, " "))
	}
	last := c.Points[len(c.Points)-1]
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="18" text-anchor="end">last %s</text>`, chartW-padR, template.HTMLEscapeString(formatValue(last.Value, c.Unit, 0)))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// timeStep picks a tick interval and label layout for a span.
func timeStep(span time.Duration) (time.Duration, string) {
	switch {
	case span <= 3*time.Minute:
		return 30 * time.Second, "15:04:05"
	case span <= 12*time.Minute:
		return time.Minute, "15:04"
	case span <= 30*time.Minute:
		return 5 * time.Minute, "15:04"
	case span <= 2*time.Hour:
		return 10 * time.Minute, "15:04"
	case span <= 36*time.Hour:
		return 4 * time.Hour, "15:04"
	default:
		return 24 * time.Hour, "Mon 02"
	}
}

// formatValue renders an axis or value label with its unit.
func formatValue(v float64, unit string, step float64) string {
	switch unit {
	case "bytes":
		if step != 0 {
			return axisBytes(v)
		}
		return FormatBytes(v)
	case "%":
		return trimNum(v, step) + "%"
	case "":
		return trimNum(v, step)
	}
	return trimNum(v, step) + " " + unit
}

func trimNum(v, step float64) string {
	av := math.Abs(v)
	switch {
	case av >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case av >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case av >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case step != 0 && step >= 1, v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case av >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// FormatBytes renders a byte count in binary units.
func FormatBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// UnitOf guesses a field's unit from its name.
func UnitOf(field string) string {
	f := strings.ToLower(field)
	switch {
	case strings.HasSuffix(f, "percent") || strings.HasSuffix(f, "_pct") || strings.HasSuffix(f, "usage"):
		return "%"
	case strings.HasSuffix(f, "bytes"):
		return "bytes"
	case strings.HasSuffix(f, "_ms") || f == "rtt" || strings.HasSuffix(f, ".rtt"):
		return "ms"
	case strings.HasSuffix(f, "_seconds") || strings.HasSuffix(f, "_secs"):
		return "s"
	}
	return ""
}

// axisBytes is FormatBytes with fewer digits, for axis labels.
func axisBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if math.Abs(v) >= 10 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
