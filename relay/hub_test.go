package relay

import (
	"fmt"
	"testing"
	"time"
)

// TestHubDeterministic: every node of a region picks the same hub whatever order it knows the
// candidates in, and the hubs of many producers spread over the nodes.
func TestHubDeterministic(t *testing.T) {
	nodes := []string{"ap-1", "ap-2", "ap-3", "ap-4", "ap-5"}
	rev := []string{"ap-5", "ap-4", "ap-3", "ap-2", "ap-1"}
	wins := map[string]int{}
	for i := 0; i < 1000; i++ {
		p := fmt.Sprintf("producer-%d", i)
		h := Hub(p, nodes)
		if h2 := Hub(p, rev); h2 != h {
			t.Fatalf("%s: hub %s, reversed %s", p, h, h2)
		}
		wins[h]++
	}
	for _, n := range nodes {
		if wins[n] < 120 || wins[n] > 280 { // 200 each if fair
			t.Errorf("hub spread: %v", wins)
		}
	}
	if Hub("p", nil) != "" {
		t.Error("hub of no candidates")
	}
}

// TestHubStable: a candidate leaving moves only the producers it was hub of.
func TestHubStable(t *testing.T) {
	all := []string{"a", "b", "c", "d"}
	for i := 0; i < 200; i++ {
		p := fmt.Sprintf("p%d", i)
		h := Hub(p, all)
		if h == "d" {
			continue
		}
		if h2 := Hub(p, all[:3]); h2 != h {
			t.Errorf("%s: hub %s became %s when d left", p, h, h2)
		}
	}
}

// TestHubDelay pins the rule: an in-region carrier or being the hub pipes now, a quiet room
// pipes now, a non-hub waits what is left of HubWait, and crosses after it.
func TestHubDelay(t *testing.T) {
	live := map[string]string{"us-1": "us", "ap-1": "ap", "ap-2": "ap", "ap-3": "ap", "eu-1": "eu"}
	room := []string{"us-1", "ap-1", "ap-2", "ap-3", "eu-1"}
	aps := []string{"ap-1", "ap-2", "ap-3"}
	// The same producer seen from each ap node: exactly one crosses at once.
	for _, p := range []string{"p1", "p2", "p3", "p4"} {
		hub := Hub(p, aps)
		now := 0
		for _, self := range aps {
			live := copyWithout(live, self)
			d := HubDelay(nil, p, self, "ap", []string{"us-1", "eu-1"}, live, room, 0)
			if (d == 0) != (self == hub) {
				t.Errorf("%s at %s (hub %s): delay %v", p, self, hub, d)
			}
			if d == 0 {
				now++
			}
			if self != hub {
				// The second by weight falls back after HubWait, the third after twice that.
				rank := time.Duration(1)
				if Hub(p, without(aps, hub)) != self {
					rank = 2
				}
				if d := HubDelay(nil, p, self, "ap", []string{"us-1"}, live, room, 400*time.Millisecond); d != rank*HubWait-400*time.Millisecond {
					t.Errorf("%s at %s (rank %d) after 400 ms: %v", p, self, rank, d)
				}
				if d := HubDelay(nil, p, self, "ap", []string{"us-1"}, live, room, rank*HubWait); d != 0 {
					t.Errorf("%s at %s after %d x HubWait: %v", p, self, rank, d)
				}
				// The hub's piped announcement: an in-region carrier, pipe from it now.
				if d := HubDelay(nil, p, self, "ap", []string{hub, "us-1"}, live, room, 0); d != 0 {
					t.Errorf("%s at %s with the hub carrying: %v", p, self, d)
				}
			}
		}
		if now != 1 {
			t.Errorf("%s: %d ap nodes cross at once, want 1", p, now)
		}
	}
	// A room node with a parent in the tree (below a node that left) is no hub: it asks for
	// no pipe.
	for _, p := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		if Hub(p, []string{"ap-1", "ap-2"}) != "ap-2" {
			continue
		}
		if d := HubDelay(Tree{"ap-2": "ap-3"}, p, "ap-1", "ap", []string{"us-1"}, copyWithout(live, "ap-1"), []string{"ap-2", "us-1"}, 0); d != 0 {
			t.Errorf("%s: waits %v for a hub that has a parent", p, d)
		}
	}
	// A quiet room (self alone in its region, as far as it knows): it crosses at once if it
	// outweighs every live node of its region, else after HubJoinWait, in which a region-mate
	// of more weight that joined in the same storm would have been heard of.
	for _, p := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		want := HubJoinWait
		if Hub(p, aps) == "ap-1" {
			want = 0
		}
		if d := HubDelay(nil, p, "ap-1", "ap", []string{"us-1"}, copyWithout(live, "ap-1"), []string{"us-1"}, 0); d != want {
			t.Errorf("%s: quiet room: %v, want %v", p, d, want)
		}
		if d := HubDelay(nil, p, "ap-1", "ap", []string{"us-1"}, copyWithout(live, "ap-1"), []string{"us-1"}, HubJoinWait); d != 0 {
			t.Errorf("%s: quiet room after HubJoinWait: %v", p, d)
		}
	}
	// A storm: ap-1 has not yet heard that the hub joined the room; it waits HubJoinWait for
	// it, and once it has heard, it waits as the hub's follower (no crossing of its own).
	for _, p := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		hub := Hub(p, aps)
		if hub == "ap-1" {
			continue
		}
		if d := HubDelay(nil, p, "ap-1", "ap", []string{"us-1"}, copyWithout(live, "ap-1"), []string{"us-1"}, 0); d == 0 {
			t.Errorf("%s: ap-1 crosses before it could hear the hub %s join", p, hub)
		}
		if d := HubDelay(nil, p, "ap-1", "ap", []string{"us-1"}, copyWithout(live, "ap-1"), []string{"us-1", hub}, HubJoinWait); d < HubWait-HubJoinWait {
			t.Errorf("%s: ap-1 heard the hub %s join, waits %v", p, hub, d)
		}
	}
	// A room node that is not live (it left) is no hub.
	for _, p := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		if Hub(p, []string{"ap-1", "ap-2"}) != "ap-2" {
			continue
		}
		gone := copyWithout(copyWithout(live, "ap-1"), "ap-2")
		if d := HubDelay(nil, p, "ap-1", "ap", []string{"us-1"}, gone, []string{"ap-2", "us-1"}, 0); d != 0 {
			t.Errorf("%s: waits %v for a hub that left", p, d)
		}
	}
}

func copyWithout(m map[string]string, k string) map[string]string {
	out := make(map[string]string, len(m))
	for a, b := range m {
		if a != k {
			out[a] = b
		}
	}
	return out
}

func without(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// TestHubDelayBounded: however many nodes rank before self, it waits HubWaitSteps x HubWait at
// most.
func TestHubDelayBounded(t *testing.T) {
	live := map[string]string{"us-1": "us"}
	var room []string
	for i := 0; i < 50; i++ {
		n := fmt.Sprintf("ap-%d", i)
		live[n], room = "ap", append(room, n)
	}
	for _, self := range room {
		d := HubDelay(nil, "p", self, "ap", []string{"us-1"}, live, room, 0)
		if d > HubWaitSteps*HubWait {
			t.Fatalf("%s waits %v", self, d)
		}
		if d := HubDelay(nil, "p", self, "ap", []string{"us-1"}, live, room, HubWaitSteps*HubWait); d != 0 {
			t.Fatalf("%s after the longest wait: %v", self, d)
		}
	}
}
