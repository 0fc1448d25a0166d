package bots

import (
	"fmt"
	"image/color"

	"github.com/cascade-sfu/cascade/internal/htmlplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// The layers in the text and HTML reports (layers.go records them).

// layerRowsMax caps the subscribers the summary shows layers for (the JSON has them all).
const layerRowsMax = 10

// layerRows are the summary's rows of layers over time, one per subscriber and video producer:
// the runs of seconds on each layer, and the kbit/s received in all.
func (r *Report) layerRows() [][2]string {
	var rows [][2]string
	n := 0
	for _, b := range r.Bots {
		for _, v := range b.Video {
			if n == layerRowsMax {
				return append(rows, [2]string{"", fmt.Sprintf("... and more subscribers (see the JSON report: bots[].video)")})
			}
			n++
			rows = append(rows, [2]string{"layers " + b.Name, layerStrip(v.Seconds) + fmt.Sprintf("  (%d changes)", len(v.Changes))})
		}
	}
	return rows
}

// htmlLayerPlotMax caps the subscribers drawn in the layer plot.
const htmlLayerPlotMax = 12

// htmlLayerPlot: the width of the video each subscriber received, second by second (the
// layer: 160, 320 or 640 for the bots' clips); nil without simulcast.
func (r *Report) htmlLayerPlot() *plot.Plot {
	if !r.Simulcast {
		return nil
	}
	p := htmlNewPlot("Video layer received per subscriber (width of its last keyframe)", "time (s)", "width (px)")
	palette := append(append([]color.Color{}, htmlplot.Colors...), color.RGBA{R: 140, G: 86, B: 75, A: 255})
	drawn := 0
	for _, b := range r.Bots {
		for _, v := range b.Video {
			if drawn == htmlLayerPlotMax {
				break
			}
			var pts plotter.XYs
			for _, s := range v.Seconds {
				if s.Width > 0 {
					// A step: the width holds for the whole second.
					pts = append(pts, plotter.XY{X: float64(s.T), Y: float64(s.Width)}, plotter.XY{X: float64(s.T + 1), Y: float64(s.Width)})
				}
			}
			if htmlAddLine(p, b.Name, pts, palette[drawn%len(palette)]) {
				drawn++
			}
		}
	}
	if drawn == 0 {
		return htmlNoData(p)
	}
	htmlplot.Headroom(p)
	return p
}
