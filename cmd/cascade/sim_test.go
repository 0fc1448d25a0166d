package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunSim: `cascade sim` runs a scenario file, prints the summary, writes the JSON and HTML
// reports, and exits 0 when its checks pass; a bad scenario or a missing flag is a usage error.
func TestRunSim(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(sc, []byte(`
name: cmd
duration: 12s
regions:
  - {name: us, nodes: 3, capacity: 50}
  - {name: eu, nodes: 1, capacity: 50}
delays: {us/eu: 30ms}
rooms:
  - name: r
    publishers: 1
    publish_at: 1s
    arrivals:
      - {region: eu, start: 2s, end: 4s, per_sec: 20}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	jsonOut, htmlOut := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	if code := run([]string{"sim", "--scenario", sc, "--json", jsonOut, "--html", htmlOut}, env(nil), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr %q, stdout %s", code, stderr.String(), stdout.String())
	}
	if !strings.Contains(stdout.String(), "ok   origin egress <= K") {
		t.Errorf("summary lacks the checks:\n%s", stdout.String())
	}
	var rep struct {
		Scenario string `json:"scenario"`
		Nodes    int    `json:"nodes"`
	}
	b, err := os.ReadFile(jsonOut)
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.Scenario != "cmd" || rep.Nodes != 4 {
		t.Errorf("JSON report %+v, %v", rep, err)
	}
	if h, err := os.ReadFile(htmlOut); err != nil || !bytes.Contains(h, []byte("data:image/png;base64,")) {
		t.Errorf("HTML report without plots (%v)", err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sim"}, "--scenario is required"},
		{[]string{"sim", "--scenario", filepath.Join(dir, "none.yaml")}, "no such file"},
	} {
		stderr.Reset()
		if code := run(tt.args, env(nil), &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), exitUsage, tt.want)
		}
	}
}
