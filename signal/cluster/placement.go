package cluster

import (
	"sort"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// Place implements signal.Placement, the default region-aware policy: a client goes to a node
// of its region when there is one (any region otherwise), never to a draining node; among
// those, nodes that already carry the room come first, then the least loaded. This node keeps
// the client unless another node is clearly better (so clients do not bounce between nodes of
// nearly equal load).
func (c *Cluster) Place(room, region string) (proto.Redirect, bool) {
	self := c.n.Stats()
	cands := []node.Stats{self}
	for _, p := range c.Peers() {
		if !p.Draining && p.HTTPURL != "" {
			cands = append(cands, p)
		}
	}
	if self.Draining {
		cands = cands[1:]
	}
	if region != "" {
		var in []node.Stats
		for _, s := range cands {
			if s.Region == region {
				in = append(in, s)
			}
		}
		if len(in) > 0 {
			cands = in
		}
	}
	if len(cands) == 0 {
		c.metrics.placementLocal.Add(1)
		return proto.Redirect{}, false
	}
	carrying := map[string]bool{}
	if r := c.n.Room(room); r != nil {
		carrying[c.me] = true
		for _, id := range r.Nodes() {
			carrying[id] = true
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if carrying[cands[i].ID] != carrying[cands[j].ID] {
			return carrying[cands[i].ID]
		}
		return cands[i].Consumers < cands[j].Consumers
	})
	best := cands[0]
	for _, s := range cands {
		if s.ID != c.me {
			continue
		}
		// Keep the client here unless the best is clearly better.
		slack := max(int64(20), best.Consumers/5)
		if carrying[c.me] == carrying[best.ID] && self.Consumers <= best.Consumers+slack {
			c.metrics.placementLocal.Add(1)
			return proto.Redirect{}, false
		}
	}
	if best.ID == c.me {
		c.metrics.placementLocal.Add(1)
		return proto.Redirect{}, false
	}
	u, err := proto.WebSocketURL(best.HTTPURL)
	if err != nil {
		c.metrics.placementLocal.Add(1)
		return proto.Redirect{}, false // a peer with an unusable URL: keep the client here
	}
	c.metrics.placementRedirect.Add(1)
	return proto.Redirect{Node: best.ID, URL: u}, true
}
