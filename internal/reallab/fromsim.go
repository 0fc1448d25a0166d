package reallab

import (
	"fmt"
	"maps"
	"math"
	"sort"
	"time"

	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/sim"
)

// FromSim is the real-run form of a simulator scenario: one room of one publisher with one or
// two producers, its viewers' arrivals expanded as the simulator expands them (evenly spaced
// from start to end, one placement decision each), and each viewer's entry node chosen as the
// simulator's load balancer chooses it: the next node of its region, round robin, the publisher
// taking the first of its region. Node ids are the simulator's (REGION-000, REGION-001, ...).
// The real bots join at one rate: JoinEvery is the shortest gap between two arrivals, so the
// order of the joins is the simulator's.
func FromSim(sc *sim.Scenario) (Scenario, error) {
	bad := func(format string, a ...any) (Scenario, error) {
		return Scenario{}, fmt.Errorf("reallab: scenario %s: "+format, append([]any{sc.Name}, a...)...)
	}
	if len(sc.Rooms) != 1 || sc.Rooms[0].Count != 1 || sc.Rooms[0].Publishers != 1 || len(sc.Failures) > 0 {
		return bad("want one room with one publisher, and no failures")
	}
	g := sc.Rooms[0]
	if sc.ViewersPerDecision != 1 {
		return bad("want one viewer per placement decision")
	}
	if sc.PlacementSpread != 0 {
		return bad("placement_spread: real nodes have no such setting")
	}

	s := Scenario{Delays: map[string]time.Duration{}, IntraDelay: sc.IntraRegionDelay, Fanout: sc.Fanout,
		Heartbeat: sc.Heartbeat, Timeout: sc.Timeout, Tracks: g.Producers, Hold: 4 * time.Second,
		HopMs: float64(sc.Costs.HopLatency) / float64(time.Millisecond)}
	inRegion := map[string][]string{}
	for _, r := range sc.Regions {
		for i := range r.Nodes {
			id := fmt.Sprintf("%s-%03d", r.Name, i)
			inRegion[r.Name] = append(inRegion[r.Name], id)
			s.Nodes = append(s.Nodes, Node{ID: id, Region: r.Name})
		}
	}
	for _, a := range sc.Regions {
		for _, b := range sc.Regions {
			if a.Name < b.Name {
				s.Delays[a.Name+"-"+b.Name] = sc.Delays[a.Name+"/"+b.Name] + sc.Delays[b.Name+"/"+a.Name]
			}
		}
	}
	// The load balancer: the publisher first, then the viewers in the order they arrive.
	next := map[string]int{}
	entry := func(region string) string {
		ids := inRegion[region]
		id := ids[next[region]%len(ids)]
		next[region]++
		return id
	}
	origin := entry(g.PublisherRegions[0])
	for i, n := range s.Nodes { // the origin first
		if n.ID == origin {
			s.Nodes[0], s.Nodes[i] = s.Nodes[i], s.Nodes[0]
		}
	}
	type arrival struct {
		at     time.Duration
		region string
	}
	var arrivals []arrival
	for _, a := range g.Arrivals {
		total := int(math.Round(a.PerSec * (a.End - a.Start).Seconds()))
		for i := range total {
			arrivals = append(arrivals, arrival{a.Start + time.Duration(float64(a.End-a.Start)*float64(i)/float64(total)), a.Region})
		}
	}
	sort.SliceStable(arrivals, func(i, j int) bool { return arrivals[i].at < arrivals[j].at })
	for i, a := range arrivals {
		if a.at < g.PublishAt {
			return bad("a viewer arrives before the publisher")
		}
		if i > 0 {
			gap := a.at - arrivals[i-1].at
			if gap <= 0 {
				return bad("two viewers arrive at %v: the real run could not keep their order", a.at)
			}
			if s.JoinEvery == 0 || gap < s.JoinEvery {
				s.JoinEvery = gap
			}
		}
		s.Viewers = append(s.Viewers, Viewer{Asks: entry(a.region), Region: a.region})
	}
	if s.JoinEvery == 0 {
		s.JoinEvery = time.Second
	}
	for _, r := range sc.Regions { // real nodes have no capacity: none may fill up
		if r.Capacity <= len(s.Viewers) {
			return bad("region %s: capacity %d: a node could fill up, and real nodes have no capacity", r.Name, r.Capacity)
		}
	}
	return s, s.Check()
}

// SimOutcome is what a simulator run of s (made by FromSim) came to: each viewer's node (the
// report's placement decisions, the publisher's first; each viewer must have entered where
// FromSim says), the viewers per node, the relay tree (every producer's must be the same), its
// crossings, and each region's median server path.
func SimOutcome(s Scenario, rep *sim.Report) (Outcome, error) {
	if len(rep.Placements) != 1+len(s.Viewers) {
		return Outcome{}, fmt.Errorf("reallab: the simulator lists %d placement decisions, want the publisher's and %d viewers'", len(rep.Placements), len(s.Viewers))
	}
	out := Outcome{RegionPathMs: map[string]float64{}}
	for i, d := range rep.Placements[1:] {
		if v := s.Viewers[i]; d.Entry != v.Asks || d.Region != v.Region || d.Count != 1 {
			return Outcome{}, fmt.Errorf("reallab: the simulator's decision %d: %+v, want a viewer of %s entering at %s", i, d, v.Region, v.Asks)
		}
		out.Placement = append(out.Placement, d.Node)
	}
	for i, tr := range rep.TreesEnd {
		tree := relay.Tree{}
		for _, e := range tr.Edges {
			tree[e.Node] = e.Parent
		}
		if i == 0 {
			out.Tree = tree
		} else if !maps.Equal(tree, out.Tree) {
			return Outcome{}, fmt.Errorf("reallab: the simulator's trees differ: %s %v, %s %v", rep.TreesEnd[0].Producer, out.Tree, tr.Producer, tree)
		}
	}
	out.Crossings = crossings(s, out.Tree)
	for _, l := range rep.Latency {
		out.RegionPathMs[l.Region] = l.Ms.P50
	}
	out.finish(s) // the viewers per node (it has no per-node paths: the regions' stay its own)
	return out, nil
}
