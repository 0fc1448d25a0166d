package htmlplot

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"
)

// TestRender: a plot becomes an <img> src attribute holding a PNG.
func TestRender(t *testing.T) {
	p := New("t", "x", "y")
	Line(p, "line", plotter.XYs{{X: 0, Y: 1}, {X: 1, Y: 2}}, Colors[0])
	Line(p, "empty", nil, Colors[1]) // nothing, no panic
	Headroom(p)
	if p.Y.Min != 0 || p.Y.Max < 2.2 {
		t.Errorf("headroom: y %v..%v", p.Y.Min, p.Y.Max)
	}
	pl, err := Render("t", p)
	if err != nil {
		t.Fatal(err)
	}
	src := string(pl.Src)
	const prefix = `src="data:image/png;base64,`
	if !strings.HasPrefix(src, prefix) || !strings.HasSuffix(src, `"`) {
		t.Fatalf("src %.60q", src)
	}
	png, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(src, prefix), `"`))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("not a PNG: %v", err)
	}
}
