package bots

import (
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strconv"

	"github.com/cascade-sfu/cascade/internal/htmlplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// htmlMaxErrors caps the error list (the JSON report has them all).
const htmlMaxErrors = 200

// htmlData is what the template renders.
type htmlData struct {
	R          *Report
	OK         bool
	Duration   string
	Errors     []string
	MoreErrors int
	Plots      []htmlplot.Plot
}

// WriteHTML writes the report as one self-contained HTML file: a summary table, plots (PNG,
// embedded as data: URLs) and a per-subscriber table. It loads nothing from elsewhere.
func (r *Report) WriteHTML(path string) error {
	d := htmlData{
		R:        r,
		OK:       r.OK(),
		Duration: fmt.Sprintf("%.1f s", r.DurationSec),
		Errors:   r.Errors,
	}
	if len(d.Errors) > htmlMaxErrors {
		d.Errors, d.MoreErrors = d.Errors[:htmlMaxErrors], len(d.Errors)-htmlMaxErrors
	}
	var err error
	d.Plots, err = htmlplot.RenderAll([]htmlplot.Spec{
		{Title: "Latency over time", Build: r.htmlLatencyPlot},
		{Title: "Join time", Build: r.htmlJoinPlot},
		{Title: "Received bitrate per subscriber", Build: r.htmlBitratePlot},
		{Title: "Total received bitrate over time", Build: r.htmlTotalBitratePlot},
		{Title: "Subscribers stalled over time", Build: r.htmlStalledPlot},
		{Title: "Video layer per subscriber", Build: r.htmlLayerPlot}, // nil without simulcast
	})
	if err != nil {
		return err
	}
	return htmlplot.WriteFile(path, htmlReportTemplate, d)
}

// htmlNewPlot is htmlplot.New with round tick labels on both axes.
func htmlNewPlot(title, x, y string) *plot.Plot {
	p := htmlplot.New(title, x, y)
	p.X.Tick.Marker = plot.TickerFunc(htmlTicks)
	p.Y.Tick.Marker = plot.TickerFunc(htmlTicks)
	return p
}

// htmlTicks labels about six round values (1, 2, 2.5 or 5 times a power of ten) with as many
// decimals as they need, and puts minor ticks between them.
func htmlTicks(lo, hi float64) []plot.Tick { return htmlTicksStep(lo, hi, 0) }

// htmlCountTicks is htmlTicks for counts: no step below 1.
func htmlCountTicks(lo, hi float64) []plot.Tick { return htmlTicksStep(lo, hi, 1) }

func htmlTicksStep(lo, hi, minStep float64) []plot.Tick {
	if !htmlFinite(lo, hi) {
		return nil
	}
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	step = max(step, minStep)
	decimals := 0
	for decimals < 10 {
		x := step * math.Pow(10, float64(decimals))
		if math.Abs(x-math.Round(x)) < 1e-6 {
			break
		}
		decimals++
	}
	minor := step / 5
	if minStep > 0 && step < 5 {
		minor = step
	}
	var ticks []plot.Tick
	for i := math.Ceil(lo/minor - 1e-9); i*minor <= hi+minor*1e-9; i++ {
		v := i * minor
		if math.Abs(v) < minor*1e-6 {
			v = 0 // not -0
		}
		t := plot.Tick{Value: v}
		if q := v / step; math.Abs(q-math.Round(q)) < 1e-6 {
			t.Label = strconv.FormatFloat(math.Round(q)*step, 'f', decimals, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// htmlNoData turns p into an empty frame that says "no data".
func htmlNoData(p *plot.Plot) *plot.Plot {
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	return htmlNote(p, 0.5, 0.5, "no data")
}

// htmlNote writes text centred at (x, y) in data coordinates.
func htmlNote(p *plot.Plot, x, y float64, text string) *plot.Plot {
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: y}}, Labels: []string{text}})
	if err == nil {
		l.TextStyle[0].XAlign = draw.XCenter
		l.TextStyle[0].YAlign = draw.YCenter
		l.TextStyle[0].Font.Size = vg.Points(20)
		l.TextStyle[0].Color = color.Gray{Y: 110}
		p.Add(l)
	}
	return p
}

func htmlFinite(v ...float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// The shared palette, by name.
var (
	htmlBlue   = htmlplot.Colors[0]
	htmlOrange = htmlplot.Colors[1]
	htmlGreen  = htmlplot.Colors[2]
	htmlRed    = htmlplot.Colors[3]
)

// htmlAddLine is htmlplot.Line that also marks a lone point (a single point makes no visible
// line); it reports whether it drew anything.
func htmlAddLine(p *plot.Plot, name string, pts plotter.XYs, c color.Color) bool {
	if !htmlplot.Line(p, name, pts, c) {
		return false
	}
	if len(pts) == 1 {
		if s, err := plotter.NewScatter(pts); err == nil {
			s.Color = c
			p.Add(s)
		}
	}
	return true
}

// htmlLatencyPlot: latency p50/p95/p99 per second. Seconds without latency samples (all
// percentiles zero) are left out rather than drawn as 0 ms.
func (r *Report) htmlLatencyPlot() *plot.Plot {
	p := htmlNewPlot("Latency (publisher send to subscriber receive)", "time (s)", "latency (ms)")
	var p50, p95, p99 plotter.XYs
	for _, s := range r.Timeline {
		l := s.LatencyMs
		if l == (Percentiles{}) || !htmlFinite(s.T, l.P50, l.P95, l.P99) {
			continue
		}
		p50 = append(p50, plotter.XY{X: s.T, Y: l.P50})
		p95 = append(p95, plotter.XY{X: s.T, Y: l.P95})
		p99 = append(p99, plotter.XY{X: s.T, Y: l.P99})
	}
	if len(p50) == 0 {
		return htmlNoData(p)
	}
	htmlAddLine(p, "p50", p50, htmlBlue)
	htmlAddLine(p, "p95", p95, htmlOrange)
	htmlAddLine(p, "p99", p99, htmlRed)
	htmlplot.Headroom(p)
	return p
}

// htmlJoinPlot: histogram of the join times of the bots that joined. A joined bot without a
// join time (JoinMs 0: it never received media) is left out.
func (r *Report) htmlJoinPlot() *plot.Plot {
	p := htmlNewPlot("Join time distribution", "join time (ms)", "subscribers")
	var v plotter.Values
	for _, b := range r.Bots {
		if b.Joined && b.JoinMs > 0 && htmlFinite(b.JoinMs) {
			v = append(v, b.JoinMs)
		}
	}
	if len(v) == 0 {
		return htmlNoData(p)
	}
	p.Title.Text = fmt.Sprintf("Join time distribution (%d joined)", len(v))
	bins := int(math.Ceil(math.Sqrt(float64(len(v)))))
	bins = max(5, min(bins, 50))
	h, err := plotter.NewHist(v, bins)
	if err != nil {
		return htmlNoData(p)
	}
	h.FillColor = htmlBlue
	h.LineStyle.Color = color.White
	h.LineStyle.Width = vg.Points(0.5)
	p.Add(h)
	pad := max(1, (p.X.Max-p.X.Min)*0.05)
	p.X.Min, p.X.Max = p.X.Min-pad, p.X.Max+pad
	p.Y.Min = 0
	p.Y.Tick.Marker = plot.TickerFunc(htmlCountTicks)
	return p
}

// htmlBitratePlot: one bar per subscriber (its index in Bots) with its received kbit/s.
func (r *Report) htmlBitratePlot() *plot.Plot {
	p := htmlNewPlot("Received bitrate per subscriber", "subscriber (index)", "kbit/s")
	if len(r.Bots) == 0 {
		return htmlNoData(p)
	}
	v := make(plotter.Values, len(r.Bots))
	received := false
	for i, b := range r.Bots {
		if htmlFinite(b.RecvKbps) && b.RecvKbps > 0 {
			v[i] = b.RecvKbps
			received = true
		}
	}
	if !received {
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = -1, float64(len(v)), 0, 1
		return htmlNote(p, float64(len(v)-1)/2, 0.5, "no media received")
	}
	// Bars fill the data area (about 8 of the 9 inches) without overlapping.
	w := max(vg.Points(0.5), min(vg.Points(12), 8*vg.Inch/vg.Length(len(v))*0.8))
	bars, err := plotter.NewBarChart(v, w)
	if err != nil {
		return htmlNoData(p)
	}
	bars.Color = htmlGreen
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.X.Min, p.X.Max = -1, float64(len(v))
	htmlplot.Headroom(p)
	if r.RecvKbps > 0 && htmlFinite(r.RecvKbps) {
		// The mean, for reference.
		mean := plotter.XYs{{X: -1, Y: r.RecvKbps}, {X: float64(len(v)), Y: r.RecvKbps}}
		if l, err := plotter.NewLine(mean); err == nil {
			l.Color = htmlRed
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("mean %.0f kbit/s", r.RecvKbps), l)
		}
	}
	return p
}

// htmlTotalBitratePlot: received kbit/s summed over subscribers, per second.
func (r *Report) htmlTotalBitratePlot() *plot.Plot {
	p := htmlNewPlot("Total received bitrate (all subscribers)", "time (s)", "kbit/s")
	var pts plotter.XYs
	for _, s := range r.Timeline {
		if htmlFinite(s.T, s.RecvKbps) {
			pts = append(pts, plotter.XY{X: s.T, Y: s.RecvKbps})
		}
	}
	if !htmlAddLine(p, "received", pts, htmlGreen) {
		return htmlNoData(p)
	}
	htmlplot.Headroom(p)
	return p
}

// htmlStalledPlot: subscribers in a stall (no media from a live producer for over StallGap)
// per second, beside the total packets received: a cut shows as a step up here and a dip there.
func (r *Report) htmlStalledPlot() *plot.Plot {
	p := htmlNewPlot(fmt.Sprintf("Subscribers stalled (no media for over %s): %d stalls in %d subscribers", StallGap, r.Stalls, r.StalledSubscribers),
		"time (s)", "subscribers")
	var pts plotter.XYs
	most := 1
	for _, s := range r.Timeline {
		pts = append(pts, plotter.XY{X: s.T, Y: float64(s.Stalled)})
		most = max(most, s.Stalled)
	}
	if !htmlAddLine(p, "stalled", pts, htmlRed) {
		return htmlNoData(p)
	}
	p.Y.Min, p.Y.Max = 0, float64(most)*1.25
	p.Y.Tick.Marker = plot.TickerFunc(htmlCountTicks)
	return p
}

var htmlReportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"f0": func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"f1": func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f3": func(v float64) string { return fmt.Sprintf("%.3f", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cascade bot report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; border: 1px solid #eee; }
ul.errors { font-family: monospace; font-size: 0.9em; }
</style>
</head>
<body>
<h1>Cascade bot report</h1>
<p>Result: {{if .OK}}<span class="ok">OK</span>{{else}}<span class="fail">FAILED</span>{{end}}
({{.R.Publishers}} publishers, {{.R.Subscribers}} subscribers in {{.R.Rooms}} room(s), {{.Duration}})</p>

<h2>Summary</h2>
<table class="summary">
<tr><th>publishers</th><td class="n">{{.R.Publishers}}</td></tr>
<tr><th>subscribers</th><td class="n">{{.R.Subscribers}}</td></tr>
<tr><th>rooms</th><td class="n">{{.R.Rooms}}</td></tr>
<tr><th>duration</th><td class="n">{{.Duration}}</td></tr>
<tr><th>joined</th><td class="n">{{.R.Joined}}</td></tr>
<tr><th>failed</th><td class="n">{{.R.Failed}}</td></tr>
<tr><th>tracks received</th><td class="n">{{.R.TracksReceived}} of {{.R.TracksExpected}}</td></tr>
<tr><th>subscribers without media</th><td class="n">{{.R.NoMedia}}</td></tr>
<tr><th>packets received</th><td class="n">{{.R.PacketsReceived}}</td></tr>
<tr><th>packets lost</th><td class="n">{{.R.PacketsLost}}</td></tr>
<tr><th>loss</th><td class="n">{{f3 .R.LossPct}} %</td></tr>
<tr><th>recv kbit/s (mean per subscriber)</th><td class="n">{{f0 .R.RecvKbps}}</td></tr>
<tr><th>stalls (no media for over 1 s)</th><td class="n">{{.R.Stalls}} in {{.R.StalledSubscribers}} subscribers</td></tr>
<tr><th>longest stall</th><td class="n">{{f1 .R.LongestStallMs}} ms</td></tr>
<tr><th>subscriber-seconds without media</th><td class="n">{{f3 .R.StalledPct}} %</td></tr>
</table>
{{if .R.OverMaxStall}}<h2>Stalls over the limit ({{f0 .R.MaxStallMs}} ms)</h2>
<ul class="errors">
{{range .R.OverMaxStall}}<li>{{.}}</li>
{{end}}</ul>{{end}}

<table class="percentiles">
<tr><th></th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>
<tr><th>join ms</th><td class="n">{{f1 .R.JoinMs.P50}}</td><td class="n">{{f1 .R.JoinMs.P95}}</td><td class="n">{{f1 .R.JoinMs.P99}}</td><td class="n">{{f1 .R.JoinMs.Max}}</td></tr>
<tr><th>latency ms</th><td class="n">{{f1 .R.LatencyMs.P50}}</td><td class="n">{{f1 .R.LatencyMs.P95}}</td><td class="n">{{f1 .R.LatencyMs.P99}}</td><td class="n">{{f1 .R.LatencyMs.Max}}</td></tr>
</table>

<h2>Errors</h2>
{{if .Errors}}<ul class="errors">
{{range .Errors}}<li>{{.}}</li>
{{end}}{{if .MoreErrors}}<li>... {{.MoreErrors}} more (see the JSON report)</li>
{{end}}</ul>{{else}}<p>none</p>{{end}}

<h2>Plots</h2>
{{range .Plots}}<img alt="{{.Title}}" title="{{.Title}}" {{.Src}}>
{{end}}
<h2>Subscribers</h2>
{{if .R.Bots}}<details>
<summary>{{len .R.Bots}} subscribers</summary>
<table class="bots">
<tr><th>#</th><th>name</th><th>room</th><th>joined</th><th>join ms</th><th>tracks</th><th>packets</th><th>lost</th><th>kbit/s</th><th>latency p50 ms</th><th>latency p99 ms</th><th>stalls</th><th>longest gap ms</th><th>error</th></tr>
{{range $i, $b := .R.Bots}}<tr><td class="n">{{$i}}</td><td>{{$b.Name}}</td><td>{{$b.Room}}</td><td>{{if $b.Joined}}yes{{else}}no{{end}}</td><td class="n">{{f1 $b.JoinMs}}</td><td class="n">{{$b.Tracks}}</td><td class="n">{{$b.Packets}}</td><td class="n">{{$b.Lost}}</td><td class="n">{{f0 $b.RecvKbps}}</td><td class="n">{{f1 $b.LatencyMs.P50}}</td><td class="n">{{f1 $b.LatencyMs.P99}}</td><td class="n">{{len $b.Stalls}}</td><td class="n">{{f0 $b.LongestGapMs}}</td><td>{{$b.Error}}</td></tr>
{{end}}</table>
</details>{{else}}<p>none</p>{{end}}
</body>
</html>
`))
