package cluster

import (
	"sort"
	"sync/atomic"

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
func Place(in PlacementInput) Decision {
	self := in.Self
	cands := Rank(in)
	if len(cands) == 0 {
		return Decision{}
	}
	carrying := in.Carrying
	best := cands[0]
	if best.ID == self.ID {
		return Decision{}
	}
	for _, s := range cands {
		if s.ID != self.ID {
			continue
		}
		// Keep the client here unless the best is clearly better.
		slack := max(int64(20), best.Consumers/5)
		if carrying[self.ID] == carrying[best.ID] && self.Consumers <= best.Consumers+slack {
			return Decision{}
		}
	}
	return Decision{Redirect: true, Node: best.ID, HTTPURL: best.HTTPURL}
}

// Rank lists the nodes a client may go to, best first, by Place's policy (without its
// hysteresis): this node and the live peers with an HTTP URL, none draining or avoided; those of
// the client's region when there are any; the nodes carrying the room first, then the least
// loaded.
func Rank(in PlacementInput) []node.Stats {
	self := in.Self
	var cands []node.Stats
	if !self.Draining && !in.Avoid[self.ID] {
		cands = append(cands, self)
	}
	for _, p := range in.Peers {
		if !p.Draining && p.HTTPURL != "" && p.ID != self.ID && !in.Avoid[p.ID] {
			cands = append(cands, p)
		}
	}
	if in.Region != "" {
		var inRegion []node.Stats
		for _, s := range cands {
			if s.Region == in.Region {
				inRegion = append(inRegion, s)
			}
		}
		if len(inRegion) > 0 {
			cands = inRegion
		}
	}
	carrying := in.Carrying
	sort.SliceStable(cands, func(i, j int) bool {
		if carrying[cands[i].ID] != carrying[cands[j].ID] {
			return carrying[cands[i].ID]
		}
		if cands[i].Consumers != cands[j].Consumers {
			return cands[i].Consumers < cands[j].Consumers
		}
		return cands[i].ID < cands[j].ID
	})
	return cands
}

// Placer decides joins on this node (signal's Placement) with Place, from the node's load, the
// membership and the room's nodes, and counts its decisions.
type Placer struct {
	n       *node.Node
	c       *Cluster
	members *Membership

	local, redirect, refused atomic.Uint64
}

// NewPlacer returns the placer of the cluster's node.
func NewPlacer(c *Cluster) *Placer {
	return &Placer{n: c.n, c: c, members: c.members}
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
	d := Place(p.input(room, region, avoid))
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
	in := PlacementInput{Self: p.n.Stats(), Peers: p.members.Peers(), Region: region, Carrying: map[string]bool{}, Avoid: map[string]bool{}}
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
