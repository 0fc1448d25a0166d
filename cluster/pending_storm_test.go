package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// TestStormDoesNotHerd: the region's ten placers see the same loads (a digest reached them
// all) in which one node, a, looks far emptier than the rest. Comparing all nodes, each sends
// its storm's joins to a until its own count says a is full: all of them at once. With two
// random choices a gets its share and the rest spread over the region; and a placer's choices
// repeat from run to run (seeded by its id).
func TestStormDoesNotHerd(t *testing.T) {
	run := func() map[string]int {
		now := time.Unix(1000, 0)
		var peers []node.Stats
		for i := range 10 {
			c := int64(500)
			if i == 0 {
				c = 0
			}
			peers = append(peers, stats(fmt.Sprintf("%c", 'a'+i), "eu", c))
		}
		heard := make([]time.Time, len(peers))
		for i := range heard {
			heard[i] = now.Add(-time.Second)
		}
		got := map[string]int{}
		pends := make([]*Pending, len(peers))
		for i := range pends {
			pends[i] = NewPending(time.Second)
		}
		for round := range 5 { // each placer places one client a round, all from the same loads
			for i, p := range pends {
				self := peers[i]
				self.Consumers = 2000 // this node is busy: it sends its clients away
				in := PlacementInput{Self: self, Peers: peers, Heard: heard, Carrying: map[string]bool{}, Region: "eu"}
				d := PlaceCounted(in, p, now.Add(time.Duration(round*10+i)*time.Millisecond), 1, 1)
				if round > 0 {
					got[d.Node]++
				}
			}
		}
		return got
	}
	got := run()
	// Each placer's first join is a lone one (Place on all loads, counted once: all ten go to
	// a). The next 40 are the storm: without the random choice a got 10 more (each placer's
	// second, a counted once by each); now about two tenths of them at most, the rest spread.
	if got["a"] > 8 || len(got) < 6 {
		t.Errorf("joins per node: %v, want a few on a and the rest spread", got)
	}
	again := run()
	if fmt.Sprint(got) != fmt.Sprint(again) {
		t.Errorf("two runs differ: %v and %v", got, again)
	}
}
