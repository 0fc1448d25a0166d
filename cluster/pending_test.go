package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// storm places joins clients of a carried room from node "me" (already loaded) while its view
// of the ten peers stays as their last heartbeat said (all empty, all carrying the room), and
// counts where they went.
func storm(pend *Pending, joins int) map[string]int {
	now := time.Unix(1000, 0)
	self := stats("me", "eu", 1000)
	var peers []node.Stats
	carrying := map[string]bool{"me": true}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		peers = append(peers, stats(id, "eu", 0))
		carrying[id] = true
	}
	got := map[string]int{}
	for k := range joins {
		in := PlacementInput{Self: self, Peers: peers, Carrying: carrying, Region: "eu"}
		d := PlaceCounted(in, pend, now.Add(time.Duration(k)*time.Millisecond), 10, 1)
		got[d.Node] += 10
	}
	return got
}

// TestPendingSpreadsStorm: without the accounting, every join of a storm goes to the one node
// that looked least loaded at the last heartbeat (herding); with it, the storm spreads evenly
// over the region's nodes before their next heartbeat.
func TestPendingSpreadsStorm(t *testing.T) {
	herd := storm(nil, 100)
	if len(herd) != 1 || herd["a"] != 1000 {
		t.Fatalf("without accounting: %v, want all on a", herd)
	}
	// During the storm this node compares itself with two random peers, and each redirect
	// counts for the region's eleven placers: a peer looks as loaded as this node after about
	// ten, and the storm is shared between them all, this node included ("").
	spread := storm(NewPending(time.Second), 100)
	if len(spread) != 11 {
		t.Fatalf("with accounting: %v, want all ten peers and this node", spread)
	}
	for id, n := range spread {
		if n > 200 {
			t.Errorf("node %q got %d of 1000, want about 100: %v", id, n, spread)
		}
	}
}

// TestPendingEndsOnLoadTaken: a placement counts against its target until a load heard at
// least the bound (3/4 interval) after it arrives, however late that load's digest came: a
// load heard sooner (taken before the client got there) keeps it, and so does the arrival of a
// digest long after the placement that carries such an old load; the TTL ends it when the
// target is silent. The caller's peers are never written.
func TestPendingEndsOnLoadTaken(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	p := NewPending(time.Second) // bound 750 ms, ttl 3.75 s
	peers := []node.Stats{stats("a", "eu", 5), stats("b", "eu", 7)}
	heard := []time.Time{at(-100), at(-100)}
	p.Add("a", 2, 6, now)
	p.Add("a", 1, 3, at(500))
	p.Add("b", 1, 1, at(500))
	got := p.Apply(peers, heard, at(600))
	if got[0].Consumers != 14 || got[0].Participants != peers[0].Participants+3 || got[1].Consumers != 8 {
		t.Fatalf("applied: %+v", got)
	}
	if peers[0].Consumers != 5 {
		t.Fatal("Apply wrote the caller's peers")
	}
	// A digest arrives 2 s after the first placement, with a's load heard (at its aggregator)
	// 700 ms after it: taken before its client could be counted, it ends nothing, new as it is.
	peers[0].Consumers, heard[0] = 8, at(700)
	if got = p.Apply(peers, heard, at(2000)); got[0].Consumers != 17 || p.Len() != 3 {
		t.Fatalf("after a load heard 700 ms after: %+v (%d pending)", got, p.Len())
	}
	// a's next load, heard 1.2 s after the first placement (700 ms after the second): it
	// includes the first, not yet the second.
	peers[0].Consumers, heard[0] = 11, at(1200)
	if got = p.Apply(peers, heard, at(2100)); got[0].Consumers != 14 || p.Len() != 2 {
		t.Fatalf("after a's load heard at 1.2 s: %+v (%d pending)", got, p.Len())
	}
	peers[0].Consumers, heard[0] = 14, at(1300) // and the next one the second too
	if got = p.Apply(peers, heard, at(2200)); got[0].Consumers != 14 || got[1].Consumers != 8 || p.Len() != 1 {
		t.Fatalf("after a's load heard at 1.3 s: %+v (%d pending)", got, p.Len())
	}
	if got = p.Apply(peers, heard, at(4300)); &got[0] != &peers[0] || p.Len() != 0 {
		t.Fatalf("b silent past the TTL: %+v (%d pending), want the heard loads", got, p.Len())
	}
	p.Add("b", 1, 1, at(4300)) // unknown heard times: the entry lasts until the TTL
	if got = p.Apply(peers, nil, at(7000)); got[1].Consumers != 8 {
		t.Fatalf("no heard times: %+v", got)
	}
	p.Apply(peers[:1], heard[:1], at(8100)) // b leaves the peers: its entry ends with the TTL
	if p.Len() != 0 {
		t.Fatalf("%d pending for a node gone", p.Len())
	}
}

// TestPendingLoneJoinCountsOnce: a join with none in the time before that its loads need to
// show a placement (bound and two intervals: 2.75 s at 1 s) counts once against its target
// (the load stays exact: a lone redirect is not the region's storm), the next one within that
// time counts for each of the region's nodes.
func TestPendingLoneJoinCountsOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	p := NewPending(time.Second)
	in := PlacementInput{Self: stats("me", "eu", 100), Peers: []node.Stats{stats("a", "eu", 0), stats("b", "eu", 5)},
		Carrying: map[string]bool{}, Region: "eu"}
	in.Heard = []time.Time{now, now}
	if d := PlaceCounted(in, p, now, 1, 2); d.Node != "a" {
		t.Fatalf("first join: %+v", d)
	}
	if got := p.Apply(in.Peers, in.Heard, now); got[0].Consumers != 2 {
		t.Fatalf("lone join: a at %d consumers, want 2", got[0].Consumers)
	}
	if d := PlaceCounted(in, p, at(3000), 1, 2); d.Node != "a" { // 2 < 5: a again
		t.Fatalf("second join: %+v", d)
	}
	if d := PlaceCounted(in, p, at(3100), 1, 2); d.Node != "a" { // 4 < 5, counted 3 times
		t.Fatalf("third join (a storm): %+v", d)
	}
	if d := PlaceCounted(in, p, at(3150), 1, 2); d.Node != "b" { // a at 4+6
		t.Fatalf("fourth join: %+v", d)
	}
	if got := p.Apply(in.Peers, in.Heard, at(3150)); got[0].Consumers != 10 || got[1].Consumers != 11 {
		t.Fatalf("after the storm's redirects: a %d, b %d consumers, want 10 and 11", got[0].Consumers, got[1].Consumers)
	}
}

// placeByRank is Place as it was written before its one-pass search: Rank's first, with the
// hysteresis (and, since, a full node never keeps a client another node could take). TestPlaceMatchesRank compares the two.
func placeByRank(in PlacementInput) Decision {
	cands := Rank(in)
	if len(cands) == 0 {
		return Decision{}
	}
	if cands[0].ID == in.Self.ID {
		if !in.full(in.Self) || len(cands) == 1 {
			return Decision{}
		}
		return Decision{Redirect: true, Node: cands[1].ID, HTTPURL: cands[1].HTTPURL} // full here: the best other
	}
	best := cands[0]
	carrying := in.preferred(cands)
	for _, s := range cands {
		if s.ID != in.Self.ID || in.full(s) {
			continue
		}
		slack := max(int64(20), best.Consumers/5)
		together := carrying[s.ID] == carrying[best.ID]
		if in.Spread > 0 {
			slack, together = max(slack, in.Spread), true
		}
		if in.full(s) == in.full(best) && together && s.Consumers <= best.Consumers+slack {
			return Decision{}
		}
	}
	return Decision{Redirect: true, Node: best.ID, HTTPURL: best.HTTPURL}
}

// TestPlaceMatchesRank: Place decides as Rank orders, over random clusters (regions, loads,
// draining and avoided nodes, full nodes, carrying nodes, Spread on and off).
func TestPlaceMatchesRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	regions := []string{"", "us", "eu", "ap"}
	for i := range 20000 {
		n := rng.IntN(12)
		mk := func(id string) node.Stats {
			s := stats(id, regions[1+rng.IntN(3)], int64(rng.IntN(200)))
			s.Participants = rng.IntN(100)
			s.Draining = rng.IntN(10) == 0
			if rng.IntN(15) == 0 {
				s.HTTPURL = ""
			}
			return s
		}
		in := PlacementInput{Self: mk("n00"), Region: regions[rng.IntN(4)], Carrying: map[string]bool{}, Avoid: map[string]bool{}}
		ids := rng.Perm(15) // peers are unique by id, as Membership keeps them
		for j := range n {
			id := fmt.Sprintf("n%02d", 1+ids[j])
			if j == 0 && rng.IntN(5) == 0 {
				id = "n00" // a peer under this node's id is never a candidate
			}
			in.Peers = append(in.Peers, mk(id))
			if rng.IntN(3) == 0 {
				in.Carrying[id] = true
			}
			if rng.IntN(12) == 0 {
				in.Avoid[id] = true
			}
		}
		if rng.IntN(2) == 0 {
			in.Carrying["n00"] = true
		}
		if rng.IntN(2) == 0 {
			in.Full = func(s node.Stats) bool { return s.Participants > 70 }
		}
		if rng.IntN(3) == 0 {
			in.Spread = int64(rng.IntN(100))
		}
		if got, want := Place(in), placeByRank(in); got != want {
			t.Fatalf("case %d: Place %+v, Rank says %+v: %+v", i, got, want, in)
		}
	}
}
