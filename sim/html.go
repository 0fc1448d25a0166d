package sim

import (
	"bytes"
	"html/template"
	"sort"

	"github.com/cascade-sfu/cascade/internal/htmlplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// WriteHTML writes the report as one self-contained HTML file: the checks, the summary tables
// and plots over virtual time.
func (r *Report) WriteHTML(path string) error {
	d := struct {
		R     *Report
		OK    bool
		Plots []htmlplot.Plot
		Text  string
	}{R: r, OK: r.OK()}
	var text bytes.Buffer
	r.WriteText(&text)
	d.Text = text.String()
	var err error
	d.Plots, err = htmlplot.RenderAll([]htmlplot.Spec{
		{Title: "Viewers over time", Build: r.viewersPlot},
		{Title: "Joins per second: all nodes, and the busiest node (herding on stale loads)", Build: r.joinsPlot},
		{Title: "Control messages per node per second", Build: r.controlPlot},
		{Title: "Nodes without a producer's media (failures, repair)", Build: r.mediaPlot},
		{Title: "Viewers per node, sorted (load distribution at the steady state)", Build: r.loadPlot},
	})
	if err != nil {
		return err
	}
	return htmlplot.WriteFile(path, htmlTemplate, d)
}

func (r *Report) series(f func(Second) float64) plotter.XYs {
	pts := make(plotter.XYs, len(r.Series))
	for i, s := range r.Series {
		pts[i].X, pts[i].Y = s.T, f(s)
	}
	return pts
}

func (r *Report) viewersPlot() *plot.Plot {
	p := htmlplot.New("", "virtual time (s)", "viewers")
	htmlplot.Line(p, "served", r.series(func(s Second) float64 { return float64(s.Viewers) }), htmlplot.Colors[0])
	htmlplot.Line(p, "reconnecting", r.series(func(s Second) float64 { return float64(s.Reconnecting) }), htmlplot.Colors[1])
	htmlplot.Line(p, "refused (gave up, total)", r.series(func(s Second) float64 { return float64(s.Refused) }), htmlplot.Colors[3])
	htmlplot.Headroom(p)
	return p
}

func (r *Report) joinsPlot() *plot.Plot {
	p := htmlplot.New("", "virtual time (s)", "joins / s")
	htmlplot.Line(p, "all nodes / 100", r.series(func(s Second) float64 { return float64(s.Joins) / 100 }), htmlplot.Colors[0])
	htmlplot.Line(p, "busiest node", r.series(func(s Second) float64 { return float64(s.MaxJoinsPerNode) }), htmlplot.Colors[3])
	htmlplot.Headroom(p)
	return p
}

func (r *Report) controlPlot() *plot.Plot {
	p := htmlplot.New("", "virtual time (s)", "messages / s")
	n := float64(max(1, r.Nodes))
	htmlplot.Line(p, "received, busiest node", r.series(func(s Second) float64 { return float64(s.MaxReceivedPerNode) }), htmlplot.Colors[3])
	htmlplot.Line(p, "received, mean", r.series(func(s Second) float64 { return float64(s.Received) / n }), htmlplot.Colors[0])
	htmlplot.Line(p, "sent, busiest node", r.series(func(s Second) float64 { return float64(s.MaxSentPerNode) }), htmlplot.Colors[1])
	htmlplot.Line(p, "sent, mean", r.series(func(s Second) float64 { return float64(s.Sent) / n }), htmlplot.Colors[2])
	htmlplot.Headroom(p)
	return p
}

func (r *Report) mediaPlot() *plot.Plot {
	p := htmlplot.New("", "virtual time (s)", "(node, producer) pairs")
	htmlplot.Line(p, "without media", r.series(func(s Second) float64 { return float64(s.NodesWithoutMedia) }), htmlplot.Colors[3])
	htmlplot.Headroom(p)
	return p
}

func (r *Report) loadPlot() *plot.Plot {
	p := htmlplot.New("", "nodes, least loaded first", "viewers")
	vs := make([]float64, 0, len(r.Load.PerNode))
	for _, n := range r.Load.PerNode {
		vs = append(vs, float64(n.Viewers))
	}
	sort.Float64s(vs)
	pts := make(plotter.XYs, len(vs))
	for i, v := range vs {
		pts[i].X, pts[i].Y = float64(i), v
	}
	htmlplot.Line(p, "viewers", pts, htmlplot.Colors[0])
	htmlplot.Headroom(p)
	return p
}

var htmlTemplate = template.Must(template.New("sim").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>cascade sim: {{.R.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.ok{color:#2a2}.fail{color:#c22;font-weight:bold}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
img{max-width:100%}
</style></head><body>
<h1>cascade sim: {{.R.Scenario}} {{if .OK}}<span class="ok">(all checks pass)</span>{{else}}<span class="fail">(checks fail)</span>{{end}}</h1>
<p>{{.R.Nodes}} nodes, K = {{.R.Fanout}}, heartbeat {{.R.Heartbeat}}, timeout {{.R.Timeout}};
{{printf "%.0f" .R.VirtualSec}} s of virtual time in {{printf "%.1f" .R.WallSec}} s.
Costs: {{printf "%.2f" .R.Costs.CPUPerPacketUs}} µs CPU per forwarded packet, {{printf "%.2f" .R.Costs.HopLatencyMs}} ms per relay hop ({{.R.Costs.Source}}).</p>
<h2>Checks</h2>
<table><tr><th></th><th>check</th><th>measured</th></tr>
{{range .R.Checks}}<tr><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="fail">FAIL</span>{{end}}</td><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</table>
<h2>Failures</h2>
<table><tr><th>at (s)</th><th>kind</th><th>target</th><th>orphans</th><th>nodes below</th><th>noticed after (s)</th><th>repaired after (s)</th></tr>
{{range .R.Failures}}<tr><td>{{printf "%.0f" .AtSec}}</td><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{.Orphans}}</td><td>{{.Subtree}}</td><td>{{printf "%.2f" .DetectedSec}}</td><td>{{if .Repaired}}{{printf "%.2f" .RepairSec}}{{else}}not repaired{{end}}</td></tr>
{{end}}</table>
<h2>Server-path latency per region</h2>
<table><tr><th>region</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>hops p50</th><th>hops max</th></tr>
{{range .R.Latency}}<tr><td>{{.Region}}</td><td>{{printf "%.1f" .Ms.P50}}</td><td>{{printf "%.1f" .Ms.P99}}</td><td>{{printf "%.1f" .Ms.Max}}</td><td>{{printf "%.0f" .Hops.P50}}</td><td>{{printf "%.0f" .Hops.Max}}</td></tr>
{{end}}</table>
<h2>Control messages by type</h2>
<p>Steady state, per node per second: the {{.R.Control.Aggregators}} aggregators of the regions' heartbeats sent
{{printf "%.1f" .R.Control.AggregatorSent.Mean}} and received {{printf "%.1f" .R.Control.AggregatorReceived.Mean}}
(max {{printf "%.1f" .R.Control.AggregatorReceived.Max}}); the other nodes sent {{printf "%.1f" .R.Control.OtherSent.Mean}}
and received {{printf "%.1f" .R.Control.OtherReceived.Mean}} (max {{printf "%.1f" .R.Control.OtherReceived.Max}}).</p>
<table><tr><th>type</th><th>bytes (sealed)</th><th>sent</th><th>received</th><th>gateway crossings</th></tr>
{{range .R.Control.ByType}}<tr><td>{{.Type}}</td><td>{{.Bytes}}</td><td>{{.Sent}}</td><td>{{.Received}}</td><td>{{.Gateway}}</td></tr>
{{end}}</table>
{{range .Plots}}<h2>{{.Title}}</h2><img {{.Src}} alt="{{.Title}}">
{{end}}
<h2>Summary</h2><pre>{{.Text}}</pre>
</body></html>
`))
