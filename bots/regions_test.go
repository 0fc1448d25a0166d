package bots_test

import (
	"context"
	"slices"
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
	got := slices.Clone(pl.regions)
	slices.Sort(got[1:]) // the subscribers join concurrently
	if want := []string{"eu", "ap", "eu", "eu", "us"}; !slices.Equal(got, want) {
		t.Errorf("regions asked %v, want %v (publisher first, then the subscribers' in any order)", pl.regions, want)
	}
}
