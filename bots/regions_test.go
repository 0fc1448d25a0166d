package bots_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// regionsSeen is a placement that keeps every join where it is and records the region hints.
type regionsSeen struct {
	mu      sync.Mutex
	regions []string
}

func (p *regionsSeen) Place(_, region string, _ ...string) (string, string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.regions = append(p.regions, region)
	return "", "", false
}
func (*regionsSeen) Alternatives(string, string, int, ...string) []proto.NodeURL { return nil }
func (*regionsSeen) Available(string) bool                                       { return true }

// TestBotsRegions: with Regions, the publisher joins with the first region hint and subscriber
// n with the n-th, round-robin.
func TestBotsRegions(t *testing.T) {
	pl := &regionsSeen{}
	_, u := startPlacedNode(t, pl)
	rep, err := bots.Run(context.Background(), bots.Options{URLs: []string{u}, Room: "r", Publishers: 1, Subscribers: 4,
		Duration: 500 * time.Millisecond, Rate: 50, Video: true, Keys: keys, LoopbackOnly: true, Regions: []string{"eu", "us", "ap"}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("run not ok: %q, errors %v", rep.Problems(), rep.Errors)
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	// The publisher asks first with eu; the subscribers (concurrently) with eu, us, ap, eu. A
	// session that reconnects or resumes on a loaded machine asks again with its own region:
	// an extra ask is logged, a missing or foreign one fails.
	want := map[string]int{"eu": 3, "us": 1, "ap": 1}
	got := map[string]int{}
	for _, r := range pl.regions {
		got[r]++
	}
	if len(pl.regions) == 0 || pl.regions[0] != "eu" || len(got) != len(want) {
		t.Fatalf("regions asked %v, want the publisher's eu first, then eu, us, ap, eu in any order", pl.regions)
	}
	for r, n := range want {
		if got[r] < n {
			t.Errorf("regions asked %v: %d asks with %s, want %d", pl.regions, got[r], r, n)
		}
	}
	if len(pl.regions) > 5 {
		t.Logf("regions asked %v: %d asks more than the 5 bots (a session asked again)", pl.regions, len(pl.regions)-5)
	}
}
