package sim

import "testing"

// BenchmarkTownHall runs the committed town hall (a million viewers, 500 nodes): what
// `cascade sim --scenario townhall-1m.yaml` costs. Profile it with
// `go test -run '^$' -bench TownHall -benchtime 1x -cpuprofile cpu.prof ./sim/`.
func BenchmarkTownHall(b *testing.B) {
	sc, err := LoadScenario("townhall-1m.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		s, err := New(sc)
		if err != nil {
			b.Fatal(err)
		}
		r := s.Run()
		b.ReportMetric(float64(r.Viewers.Served), "served")
		b.ReportMetric(float64(r.Viewers.Refused), "refused")
	}
}
