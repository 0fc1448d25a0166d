package htmlplot

import (
	"bytes"
	"encoding/base64"
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"
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

// TestRenderAllAndWriteFile: RenderAll keeps the order and leaves out a plot built as nil;
// WriteFile writes the executed template, and nothing when the template fails.
func TestRenderAllAndWriteFile(t *testing.T) {
	build := func() *plot.Plot {
		p := New("", "x", "y")
		Line(p, "line", plotter.XYs{{X: 0, Y: 1}, {X: 1, Y: 2}}, Colors[0])
		return p
	}
	pls, err := RenderAll([]Spec{{Title: "a", Build: build}, {Title: "none", Build: func() *plot.Plot { return nil }}, {Title: "b", Build: build}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pls) != 2 || pls[0].Title != "a" || pls[1].Title != "b" {
		t.Fatalf("plots %+v", pls)
	}
	path := filepath.Join(t.TempDir(), "r.html")
	page := template.Must(template.New("p").Parse(`{{range .}}<img {{.Src}} alt="{{.Title}}">{{end}}`))
	if err := WriteFile(path, page, pls); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || bytes.Count(b, []byte(`src="data:image/png;base64,`)) != 2 {
		t.Fatalf("page %.80q (%v)", b, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.html")
	if err := WriteFile(bad, template.Must(template.New("p").Parse(`{{.Missing}}`)), pls); err == nil {
		t.Fatal("a failing template wrote no error")
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a failing template left a file (%v)", err)
	}
}
