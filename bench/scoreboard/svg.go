package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chart is a line chart with linear axes, written as a standalone SVG document.
type chart struct {
	title, xLabel, yLabel string
	xMin, xMax            float64
	yMin, yMax            float64
	xTicks                []float64 // nil: chosen from the range
	xTickFormat           func(float64) string
	yTickFormat           func(float64) string
	series                []series
	rules                 []rule
}

// series is one data set: a line through its points (sorted by the caller), or points alone.
type series struct {
	name   string
	color  string
	xs, ys []float64
	line   bool
	dots   bool
	dashed bool
	step   bool // a staircase (an empirical distribution), not straight segments
}

// rule is a labelled vertical (at x) or horizontal (at y) line across the plot, such as a target.
type rule struct {
	vertical bool
	at       float64
	label    string
	color    string
}

const (
	svgWidth, svgHeight               = 760.0, 460.0
	padLeft, padRight, padTop, padBot = 78.0, 24.0, 44.0, 96.0
)

func (c chart) px(x float64) float64 {
	return padLeft + (x-c.xMin)/(c.xMax-c.xMin)*(svgWidth-padLeft-padRight)
}

func (c chart) py(y float64) float64 {
	return svgHeight - padBot - (y-c.yMin)/(c.yMax-c.yMin)*(svgHeight-padTop-padBot)
}

// SVG renders the chart.
func (c chart) SVG() string {
	if c.xMax <= c.xMin {
		c.xMax = c.xMin + 1
	}
	if c.yMax <= c.yMin {
		c.yMax = c.yMin + 1
	}
	if c.xTickFormat == nil {
		c.xTickFormat = tickLabel
	}
	if c.yTickFormat == nil {
		c.yTickFormat = tickLabel
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.1f" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", padLeft, esc(c.title))
	left, right, top, bottom := padLeft, svgWidth-padRight, padTop, svgHeight-padBot
	// Grid and ticks.
	xt := c.xTicks
	if xt == nil {
		xt = niceTicks(c.xMin, c.xMax)
	}
	for _, x := range xt {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", c.px(x), top, c.px(x), bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", c.px(x), bottom+16, esc(c.xTickFormat(x)))
	}
	for _, y := range niceTicks(c.yMin, c.yMax) {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", left, c.py(y), right, c.py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, c.py(y)+4, esc(c.yTickFormat(y)))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", left, top, right-left, bottom-top)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+right)/2, bottom+36, esc(c.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (top+bottom)/2, esc(c.yLabel))
	verticals := 0
	for _, r := range c.rules {
		if r.vertical {
			// Labels of vertical rules go down a line each, so that close rules stay legible.
			x := c.px(r.at)
			verticals++
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`+"\n", x, top, x, bottom, r.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x+4, top+14*float64(verticals)+16, r.color, esc(r.label))
		} else {
			y := c.py(r.at)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`+"\n", left, y, right, y, r.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", left+4, y-4, r.color, esc(r.label))
		}
	}
	// Data, clipped to the plot area.
	fmt.Fprintf(&b, `<clipPath id="plot"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath>`+"\n", left, top, right-left, bottom-top)
	b.WriteString(`<g clip-path="url(#plot)">` + "\n")
	for _, s := range c.series {
		if s.line && len(s.xs) > 0 {
			var pts []string
			for i := range s.xs {
				if s.step && i > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.xs[i]), c.py(s.ys[i-1])))
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.px(s.xs[i]), c.py(s.ys[i])))
			}
			dash := ""
			if s.dashed {
				dash = ` stroke-dasharray="3 3"`
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.color, dash, strings.Join(pts, " "))
		}
		if s.dots {
			for i := range s.xs {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", c.px(s.xs[i]), c.py(s.ys[i]), s.color)
			}
		}
	}
	b.WriteString("</g>\n")
	// Legend, under the x axis label.
	x := left
	for _, s := range c.series {
		if s.name == "" {
			continue
		}
		y := bottom + 62
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="3 3"`
		}
		if s.line {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", x, y-4, x+22, y-4, s.color, dash)
		} else {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x+11, y-4, s.color)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+28, y, esc(s.name))
		x += 40 + 6.5*float64(len([]rune(s.name)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceTicks returns 4 to 10 round values (1, 2 or 5 times a power of ten apart) in [lo, hi].
func niceTicks(lo, hi float64) []float64 {
	span := hi - lo
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return []float64{lo}
	}
	step := math.Pow(10, math.Floor(math.Log10(span))-1)
	for _, m := range []float64{1, 2, 5, 10, 20, 50, 100} {
		if span/(step*m) <= 8 {
			step *= m
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

func tickLabel(v float64) string {
	if v == 0 {
		return "0" // not "-0"
	}
	if v == math.Trunc(v) && math.Abs(v) >= 1000 {
		return thousands(v)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func esc(s string) string { return html.EscapeString(s) }
