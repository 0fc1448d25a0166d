package reallab

import (
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// Expect is what Cascade's own decision functions make of the scenario, each viewer decided
// after the previous one settled (the nodes' loads and the room's nodes known everywhere, as
// JoinEvery apart they are): cluster.Place on the node the viewer asks, with that node's view
// (the room's carrying nodes only when the room is open there), one redirect followed and kept;
// relay.Parents' first choice that relay.Accept lets in, for each node that newly needs the
// producer (the candidates asked in turn, as relay.Pipes asks them), which adds a
// consumer per track to its parent's load (a relay child is a consumer there). The server path of a
// node is the delays between the regions along its branch of the tree plus HopMs per hop.
func Expect(s Scenario) Outcome {
	tracks := s.Tracks
	origin := s.Origin()
	consumers := map[string]int64{}
	open := map[string]bool{origin: true} // the publisher's participant opens the room
	tree := relay.Tree{}
	var placement []string
	for _, v := range s.Viewers {
		at := v.Asks
		if d := cluster.Place(placementInput(s, at, v.Region, consumers, open)); d.Redirect {
			at = d.Node // the client follows, and that node keeps it
		}
		placement = append(placement, at)
		consumers[at] += int64(tracks)
		open[at] = true
		if _, carries := tree[at]; at != origin && !carries {
			live := map[string]string{}
			for _, n := range s.Nodes {
				if n.ID != at {
					live[n.ID] = n.Region
				}
			}
			for _, parent := range relay.Parents(tree, origin, at, s.Region(at), s.Fanout, live) {
				var kids []string // the regions of the parent's children
				for child, p := range tree {
					if p == parent {
						kids = append(kids, s.Region(child))
					}
				}
				if relay.Accept(s.Fanout, s.Region(parent), s.Region(at), kids) != nil {
					continue // the parent refuses: the next candidate
				}
				tree[at] = parent
				// A relay child is a consumer of each producer on its parent (relay.serve
				// attaches a node.Consumer): it counts in the parent's load as a viewer does.
				consumers[parent] += int64(tracks)
				break
			}
		}
	}
	out := Outcome{Placement: placement, Tree: tree, Crossings: crossings(s, tree), Consumers: map[string]int64{},
		PathMs: map[string]float64{origin: 0}}
	for _, n := range s.Nodes {
		out.Consumers[n.ID] = consumers[n.ID]
	}
	for id := range tree {
		var ms float64
		for c := id; c != origin; c = tree[c] {
			ms += float64(s.Delay(s.Region(c), s.Region(tree[c]))) / float64(time.Millisecond)
			ms += s.HopMs
		}
		out.PathMs[id] = ms
	}
	out.finish(s)
	for id := range out.PathMs { // as measured: the nodes with viewers
		if out.Viewers[id] == 0 {
			delete(out.PathMs, id)
		}
	}
	return out
}

// placementInput is what node self decides a join of a viewer in region from: its own load,
// its peers' (every node has an HTTP URL and is live), and, when the room is open on self,
// the nodes that have participants of it.
func placementInput(s Scenario, self, region string, consumers map[string]int64, open map[string]bool) cluster.PlacementInput {
	in := cluster.PlacementInput{Region: region, Carrying: map[string]bool{}}
	for _, n := range s.Nodes {
		st := node.Stats{ID: n.ID, Region: n.Region, HTTPURL: "http://" + n.ID, Consumers: consumers[n.ID]}
		if n.ID == self {
			in.Self = st
		} else {
			in.Peers = append(in.Peers, st)
		}
	}
	if open[self] {
		for id := range open {
			in.Carrying[id] = true
		}
	}
	return in
}
