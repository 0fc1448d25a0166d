package cluster

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// PlacementInput is everything a placement decision depends on.
type PlacementInput struct {
	// Self is this node's load; Peers the other live nodes'.
	Self  node.Stats
	Peers []node.Stats
	// Carrying are the nodes with participants of the room (this one included when the room is
	// open here).
	Carrying map[string]bool
	// Region is the client's region hint ("" if unknown).
	Region string
	// Avoid are nodes the client must not go to (a resume: the node it left).
	Avoid map[string]bool
	// Full, if set, tells which nodes are at their capacity (from their load as last heard):
	// they rank after every other node of the client's region, carrying the room or not, so
	// a large room spreads over the region instead of piling onto the nodes that opened it.
	// nil: no node is full (no capacity is configured).
	Full func(node.Stats) bool
	// Spread trades keeping a room together for spreading its joins (0: off, carrying nodes
	// always first, the default). With Spread, a carrying node more than Spread consumers
	// above the least loaded candidate loses its preference, and this node (not full) keeps a
	// client unless the best node is more than Spread below it, whichever carries the room: a
	// room then opens on every node its clients reach, at one relay stream per node. Every node decides on loads a
	// heartbeat old, so without it a town hall's join storm goes, from every node, to the
	// same carrying node until its heartbeat shows it full: the region fills one node at a
	// time (cascade sim measures it).
	Spread int64
	// Heard is when each of Peers' loads was heard (Membership.PeersHeard), for PlaceCounted:
	// a redirect counts against its target until a load heard long enough after it arrives.
	// nil: unknown (redirects count until their Pending's ttl). Place does not read it.
	Heard []time.Time
}

// Decision is where a client goes.
type Decision struct {
	// Redirect: the client goes to Node, at HTTPURL; otherwise it stays here.
	Redirect bool
	Node     string
	HTTPURL  string
}

// Place is the region-aware placement policy, a pure function: a client goes to a node of its
// region when there is one (any region otherwise), never to a draining node; among those, nodes
// that already carry the room come first, then the least loaded. This node keeps the client
// unless another node is clearly better (hysteresis: so clients do not bounce between nodes of
// nearly equal load).
//
// It decides as Rank orders (its first is Rank's first) but finds the best in one pass over
// the peers, copying and sorting nothing: it runs for every join, over every live node.
func Place(in PlacementInput) Decision {
	self := &in.Self
	region := in.region()
	least := int64(-1) // the least loaded candidate not full (for Spread)
	if in.Spread > 0 {
		in.each(region, func(s *node.Stats) {
			if !in.full(*s) && (least < 0 || s.Consumers < least) {
				least = s.Consumers
			}
		})
	}
	var best, me rank // best: the best of the other nodes
	in.each(region, func(s *node.Stats) {
		r := rank{s: s, full: in.full(*s), carrying: in.Carrying[s.ID] && (in.Spread <= 0 || least < 0 || s.Consumers <= least+in.Spread)}
		if s == self {
			me = r
			return
		}
		if best.s == nil || r.before(best) {
			best = r
		}
	})
	if best.s == nil {
		return Decision{}
	}
	if me.s != nil {
		// This node's own load is exact, the others' a heartbeat old: full, it sends the
		// client to the best other node even when that one looks full too.
		if me.full {
			return Decision{Redirect: true, Node: best.s.ID, HTTPURL: best.s.HTTPURL}
		}
		if me.before(best) {
			return Decision{}
		}
		// Keep the client here unless the best is clearly better.
		// With Spread, within Spread of the best: whether either carries the room does not count.
		slack := max(int64(20), best.s.Consumers/5)
		together := me.carrying == best.carrying
		if in.Spread > 0 {
			slack, together = max(slack, in.Spread), true
		}
		if !best.full && together && self.Consumers <= best.s.Consumers+slack {
			return Decision{}
		}
	}
	return Decision{Redirect: true, Node: best.s.ID, HTTPURL: best.s.HTTPURL}
}

// rank is a candidate with what Place orders it by.
type rank struct {
	s              *node.Stats
	full, carrying bool
}

// before tells whether r ranks before o: not full first, then carrying the room, then the
// least loaded, then by id.
func (r rank) before(o rank) bool {
	switch {
	case r.full != o.full:
		return !r.full
	case r.carrying != o.carrying:
		return r.carrying
	case r.s.Consumers != o.s.Consumers:
		return r.s.Consumers < o.s.Consumers
	}
	return r.s.ID < o.s.ID
}

// eligible tells whether s may take a client of region ("": any): not draining nor avoided,
// and a peer must have an HTTP URL to be sent to.
func (in *PlacementInput) eligible(s *node.Stats, region string) bool {
	ok := !s.Draining && !in.Avoid[s.ID] && (region == "" || s.Region == region)
	if s.ID == in.Self.ID {
		return ok
	}
	return ok && s.HTTPURL != ""
}

// region is the region the candidates come from: the client's when it has an eligible node,
// any ("") otherwise.
func (in *PlacementInput) region() string {
	if in.Region == "" {
		return ""
	}
	if in.eligible(&in.Self, in.Region) {
		return in.Region
	}
	for i := range in.Peers {
		if in.Peers[i].ID != in.Self.ID && in.eligible(&in.Peers[i], in.Region) {
			return in.Region
		}
	}
	return ""
}

// each calls fn with every candidate of region: this node first, then the peers in order.
func (in *PlacementInput) each(region string, fn func(*node.Stats)) {
	if in.eligible(&in.Self, region) {
		fn(&in.Self)
	}
	for i := range in.Peers {
		if p := &in.Peers[i]; p.ID != in.Self.ID && in.eligible(p, region) {
			fn(p)
		}
	}
}

// preferred is the carrying nodes among cands that keep their preference (see Spread).
func (in PlacementInput) preferred(cands []node.Stats) map[string]bool {
	if in.Spread <= 0 {
		return in.Carrying
	}
	least := int64(-1)
	for _, s := range cands {
		if !in.full(s) && (least < 0 || s.Consumers < least) {
			least = s.Consumers
		}
	}
	out := make(map[string]bool, len(in.Carrying))
	for _, s := range cands {
		if in.Carrying[s.ID] && (least < 0 || s.Consumers <= least+in.Spread) {
			out[s.ID] = true
		}
	}
	return out
}

// full tells whether s is at its capacity (never, without in.Full).
func (in PlacementInput) full(s node.Stats) bool { return in.Full != nil && in.Full(s) }

// Rank lists the nodes a client may go to, best first, by Place's policy (without its
// hysteresis): this node and the live peers with an HTTP URL, none draining or avoided; those of
// the client's region when there are any; the nodes not full first (see PlacementInput.Full),
// then the nodes carrying the room, then the least loaded.
func Rank(in PlacementInput) []node.Stats {
	self := in.Self
	eligible := func(s node.Stats, region string) bool {
		ok := !s.Draining && !in.Avoid[s.ID] && (region == "" || s.Region == region)
		if s.ID == self.ID {
			return ok
		}
		return ok && s.HTTPURL != ""
	}
	// Those of the client's region when there are any (looked for first, so that only they
	// are copied: a cluster of hundreds of nodes ranks a third of them).
	region := ""
	if in.Region != "" {
		region = in.Region
		found := eligible(self, region)
		for i := 0; !found && i < len(in.Peers); i++ {
			found = in.Peers[i].ID != self.ID && eligible(in.Peers[i], region)
		}
		if !found {
			region = ""
		}
	}
	var cands []node.Stats
	if eligible(self, region) {
		cands = append(cands, self)
	}
	for _, p := range in.Peers {
		if p.ID != self.ID && eligible(p, region) {
			cands = append(cands, p)
		}
	}
	// Sort keys computed once (the comparisons would look each up a dozen times).
	type key struct {
		full, carrying bool
		consumers      int64
		id             string
		i              int
	}
	carrying := in.preferred(cands)
	keys := make([]key, len(cands))
	for i, s := range cands {
		keys[i] = key{full: in.full(s), carrying: carrying[s.ID], consumers: s.Consumers, id: s.ID, i: i}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		switch {
		case a.full != b.full:
			return !a.full
		case a.carrying != b.carrying:
			return a.carrying
		case a.consumers != b.consumers:
			return a.consumers < b.consumers
		}
		return a.id < b.id
	})
	out := make([]node.Stats, len(cands))
	for i, k := range keys {
		out[i] = cands[k.i]
	}
	cands = out
	return cands
}

// Placer decides joins on this node (signal's Placement) with Place, from the node's load, the
// membership and the room's nodes, and counts its decisions.
type Placer struct {
	n       *node.Node
	c       *Cluster
	members *Membership
	clock   Clock

	mu      sync.Mutex
	pending *Pending // the redirects its peers' heartbeats may not show yet

	local, redirect, refused atomic.Uint64
}

// NewPlacer returns the placer of the cluster's node. Its redirects count against their
// targets' loads until their heartbeats show them (Pending): a join storm spreads over the
// region instead of following the loads of the last heartbeat onto one node.
func NewPlacer(c *Cluster) *Placer {
	return &Placer{n: c.n, c: c, members: c.members, clock: c.o.Clock, pending: NewPending(c.o.Heartbeat)}
}

// Available tells whether this node can serve a join of room now: always while it reaches the
// cluster; while it does not (NATS is away), only for a room open here or on a node without
// peers, since a room opened here now could be one that lives on other nodes, which this node
// would split off until NATS returns.
func (p *Placer) Available(room string) bool {
	if p.c.Available() || p.n.Room(room) != nil || p.members.Len() == 0 {
		return true
	}
	p.refused.Add(1)
	return false
}

// Place returns the node a client of room (in region, if known) should join, and whether that
// is another node (its id and HTTP URL).
func (p *Placer) Place(room, region string, avoid ...string) (nodeID, httpURL string, redirect bool) {
	in := p.input(room, region, avoid)
	per := int64(1)
	if r := p.n.Room(room); r != nil {
		per = max(per, int64(len(r.Producers())))
	}
	p.mu.Lock()
	d := PlaceCounted(in, p.pending, p.clock.Now(), 1, per)
	p.mu.Unlock()
	if !d.Redirect {
		p.local.Add(1)
		return "", "", false
	}
	p.redirect.Add(1)
	return d.Node, d.HTTPURL, true
}

// Alternatives lists up to n nodes other than this one (and avoid) a client of room in region
// may go to, best first: where it resumes if this node goes.
func (p *Placer) Alternatives(room, region string, n int, avoid ...string) []proto.NodeURL {
	in := p.input(room, region, avoid)
	in.Avoid[in.Self.ID] = true
	p.mu.Lock()
	in.Peers = p.pending.Apply(in.Peers, in.Heard, p.clock.Now())
	p.mu.Unlock()
	var out []proto.NodeURL
	for _, s := range Rank(in) {
		if len(out) == n {
			break
		}
		out = append(out, proto.NodeURL{ID: s.ID, URL: s.HTTPURL, Region: s.Region})
	}
	return out
}

// input is what Place and Rank decide from for a client of room in region.
func (p *Placer) input(room, region string, avoid []string) PlacementInput {
	in := PlacementInput{Self: p.n.Stats(), Region: region, Carrying: map[string]bool{}, Avoid: map[string]bool{}}
	in.Peers, in.Heard = p.members.PeersHeard()
	for _, id := range avoid {
		in.Avoid[id] = true
	}
	if r := p.n.Room(room); r != nil {
		in.Carrying[in.Self.ID] = true
		for _, id := range r.Nodes() {
			in.Carrying[id] = true
		}
	}
	return in
}

// Decisions reports the decisions so far: joins served here, redirected, and refused while the
// cluster was unreachable.
func (p *Placer) Decisions() (local, redirect, refused uint64) {
	return p.local.Load(), p.redirect.Load(), p.refused.Load()
}
