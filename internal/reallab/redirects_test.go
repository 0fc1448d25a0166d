package reallab

import (
	"testing"
)

// TestRedirects5Real runs Redirects5 for real: five `cascade node` processes in three regions of a
// lab with one-way delays between the regions, the bots as publisher and fifteen viewers. Each
// viewer must land where Cascade's placement function puts it, the relay tree must be the one
// its tree function builds, crossing two region boundaries, and each node's measured server
// path must be the region delays of its branch plus the hops, within 20 % (2 ms inside a
// region). Root only: it skips without a lab, and fails under CI=true.
func TestRedirects5Real(t *testing.T) {
	s := Redirects5()
	want := Expect(s)
	c := Start(t, s)
	got, rep := c.Run(t)
	t.Logf("expected (placement and tree functions):\n%s", want)
	t.Logf("measured (real nodes, bots' latency p50 %.1f ms, %d bots):\n%s", rep.LatencyMs.P50, len(rep.Bots), got)
	for _, d := range Diff(want, got, DefaultTolerance) {
		t.Error(d)
	}
}
