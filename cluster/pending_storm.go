package cluster

import (
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// stormChoices is how many of its region's nodes a placer compares during a storm: two
// random ones (the power of two choices), not all of them. With loads as heard, every node
// of a region sees the same least loaded node (a region's digest reaches them all at once),
// so comparing all of them sends one client from each placer to that node at once: in
// cascade sim's town hall, 1,470 joins in a second reached a node whose load was heard at
// 1,030 of 2,500. Two random nodes each spread the placers over the region, and the less
// loaded of the two still fills the emptiest nodes first.
const stormChoices = 2

// joinStorm is what a placer knows of a join storm: whether one is on (it placed another client
// while its loads could not show the first yet: the region's other nodes likely place at the
// same time, from the same loads) and its random source, seeded by its node's id so that a
// run repeats.
type joinStorm struct {
	last time.Time
	rng  *rand.Rand
}

// on tells whether a decision at now is part of a storm, and records it.
func (s *joinStorm) on(now time.Time, interval time.Duration) bool {
	on := !s.last.IsZero() && now.Sub(s.last) < interval
	s.last = now
	return on
}

// sample returns in with its peers cut down to stormChoices random candidates of the client's
// region (peers as pend counts them): among those not full, the carrying ones if any (Place
// ranks them first), or in unchanged when there are no more than that; and how many nodes of
// the region place (this one included).
func (s *joinStorm) sample(in PlacementInput, self string) (out PlacementInput, placers int) {
	if s.rng == nil {
		h := fnv.New64a()
		h.Write([]byte(self))
		s.rng = rand.New(rand.NewPCG(h.Sum64(), 17))
	}
	region := in.region()
	tier, carrying := 0, 0
	in.each(region, func(p *node.Stats) {
		placers++
		if p.ID != self && !in.full(*p) {
			tier++
			if in.Carrying[p.ID] {
				carrying++
			}
		}
	})
	onlyCarrying := carrying > 0
	if onlyCarrying {
		tier = carrying
	}
	if tier <= stormChoices {
		return in, placers
	}
	// Reservoir sampling over the tier, in one pass: no list of candidates per join.
	var picked [stormChoices]int
	k := 0
	for i := range in.Peers {
		p := &in.Peers[i]
		if p.ID == self || !in.eligible(p, region) || in.full(*p) || (onlyCarrying && !in.Carrying[p.ID]) {
			continue
		}
		if k < stormChoices {
			picked[k] = i
		} else if j := s.rng.IntN(k + 1); j < stormChoices {
			picked[j] = i
		}
		k++
	}
	peers := make([]node.Stats, stormChoices)
	for j, i := range picked {
		peers[j] = in.Peers[i]
	}
	in.Peers = peers
	return in, placers
}
