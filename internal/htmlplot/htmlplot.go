// Package htmlplot renders gonum plots for the self-contained HTML reports (the simulator's;
// the bots' report adds its own tick labels on top): a plot becomes a PNG
// in a data: URL, so the report loads nothing from elsewhere.
package htmlplot

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size and resolution of a plot.
const (
	Width  = 9 * vg.Inch
	Height = 3.5 * vg.Inch
	DPI    = 110
)

// Colors of the lines, in order.
var Colors = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
}

// Plot is one rendered plot: its title and the src attribute of its <img>.
type Plot struct {
	Title string
	Src   template.HTMLAttr
}

// New returns an empty plot with a grid and a legend at the top.
func New(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

// Line adds a line with a legend entry (nothing with no points) and reports whether it did.
func Line(p *plot.Plot, name string, pts plotter.XYs, c color.Color) bool {
	if len(pts) == 0 {
		return false
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return false
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return true
}

// Headroom starts the Y axis at 0 and leaves room above the data for the legend.
func Headroom(p *plot.Plot) {
	p.Y.Min = 0
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	p.Y.Max *= 1.2
}

// Spec is a plot a report may show: its title and what builds it.
type Spec struct {
	Title string
	// Build returns the plot, or nil where the report has no such plot (e.g. no simulcast).
	Build func() *plot.Plot
}

// RenderAll builds and renders specs in order, leaving out those that build nil.
func RenderAll(specs []Spec) ([]Plot, error) {
	var out []Plot
	for _, s := range specs {
		p := s.Build()
		if p == nil {
			continue
		}
		pl, err := Render(s.Title, p)
		if err != nil {
			return nil, fmt.Errorf("plot %q: %w", s.Title, err)
		}
		out = append(out, pl)
	}
	return out, nil
}

// WriteFile executes t with data and writes the page to path; a template error writes nothing.
func WriteFile(path string, t *template.Template, data any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Render draws p as a PNG and returns it as an <img> src attribute.
func Render(title string, p *plot.Plot) (Plot, error) {
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(Width, Height), vgimg.UseDPI(DPI))}
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return Plot{}, err
	}
	// Our own base64 (no quotes, no '&'): safe as an attribute.
	return Plot{Title: title, Src: template.HTMLAttr(`src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(buf.Bytes()) + `"`)}, nil
}
