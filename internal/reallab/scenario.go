// Package reallab runs a small Cascade scenario for real: `cascade node` processes in the
// bad-day lab (internal/harness), one host per node, with one-way delays between regions and
// none inside one, and `cascade bots` as the publisher and the viewers. It measures what the
// simulator (`cascade sim`) predicts for the same scenario: where each viewer lands, each
// node's parent in the relay tree, the region boundaries the media crosses, and the
// server-path latency to each node; and it computes what Cascade's own placement and tree
// functions (cluster.Place, relay.Parents) decide for it, as the expectation both must meet.
//
// # What "server path" means here
//
// The bots run in one process, on a host with no delay to any node, so one clock times each
// packet from the publisher's send to a viewer's receive (the bots' latency). A viewer on the
// origin node sees the client legs and one node's forwarding; a viewer on an edge sees those
// plus the relay path. The server-path latency of a node is the median latency of its viewers
// minus that of the origin's viewers: the relay hops and the region delays between origin and
// node, as the media really travelled (encrypted relay links, real sockets, the delays injected
// per destination by the lab's userspace bridges). The bots host stands for viewers that each
// reach a node of their own region with no delay, which is where placement puts them.
package reallab

import (
	"fmt"
	"time"
)

// Node is one node of a scenario.
type Node struct {
	ID, Region string
}

// Viewer is one viewer: the node it first asks (a load balancer's or DNS's choice) and its
// region hint. Placement may redirect it.
type Viewer struct {
	Asks, Region string
}

// Scenario is a small cluster in regions, one publisher and viewers joining one by one.
type Scenario struct {
	// Nodes of the cluster; the first is the origin, where the publisher joins.
	Nodes []Node
	// Delays are the one-way delays between regions, keyed "a-b" with a < b (the same both
	// ways); IntraDelay between two hosts of one region.
	Delays     map[string]time.Duration
	IntraDelay time.Duration
	// Fanout is K, --relay-fanout.
	Fanout int
	// Heartbeat is the nodes' heartbeat interval (their loads as the others see them), Timeout
	// their heartbeat timeout (0: five intervals).
	Heartbeat, Timeout time.Duration
	// Tracks is what the publisher sends: 1, audio; 2, audio and video. A viewer is that many
	// consumers; each track has its relay tree.
	Tracks int
	// Viewers join in this order, JoinEvery apart; the first must be of the origin's region
	// (the bots' publisher takes the first region hint).
	Viewers   []Viewer
	JoinEvery time.Duration
	// Hold is how long the bots hold once every viewer receives media.
	Hold time.Duration
	// HopMs is the cost of one relay hop, in ms (BENCHMARKS.md, "Relay hops"), for the
	// expected server path.
	HopMs float64
}

// Delay is the one-way delay between regions a and b (IntraDelay inside a region).
func (s Scenario) Delay(a, b string) time.Duration {
	if a == b {
		return s.IntraDelay
	}
	if a > b {
		a, b = b, a
	}
	return s.Delays[a+"-"+b]
}

// Region is the region of node id ("" if unknown).
func (s Scenario) Region(id string) string {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n.Region
		}
	}
	return ""
}

// timeout is the heartbeat timeout.
func (s Scenario) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 5 * s.Heartbeat
}

// Origin is the publisher's node.
func (s Scenario) Origin() string { return s.Nodes[0].ID }

// Check reports what makes the scenario unusable.
func (s Scenario) Check() error {
	if len(s.Nodes) == 0 || len(s.Viewers) == 0 {
		return fmt.Errorf("reallab: a scenario needs nodes and viewers")
	}
	if s.Tracks != 1 && s.Tracks != 2 {
		return fmt.Errorf("reallab: %d tracks: the bots publish audio (1) or audio and video (2)", s.Tracks)
	}
	for _, v := range s.Viewers {
		if s.Region(v.Asks) == "" {
			return fmt.Errorf("reallab: a viewer asks node %q, which is not in the scenario", v.Asks)
		}
	}
	if s.Viewers[0].Region != s.Nodes[0].Region {
		return fmt.Errorf("reallab: the first viewer's region %q is not the origin's %q", s.Viewers[0].Region, s.Nodes[0].Region)
	}
	regions := map[string]bool{}
	for _, n := range s.Nodes {
		regions[n.Region] = true
	}
	for a := range regions {
		for b := range regions {
			if a < b && s.Delay(a, b) == 0 {
				return fmt.Errorf("reallab: no delay between %s and %s", a, b)
			}
		}
	}
	return nil
}

// Redirects5 is a scenario the simulator cannot express (its viewers enter in their own
// region), run for real against Expect: five nodes in three regions (eu: 2, us: 2, ap: 1),
// one-way delays eu-us 35 ms, eu-ap 75 ms, us-ap 55 ms, K = 3, the publisher on eu-1 and
// fifteen viewers, one every 500 ms, cycling through the regions (eu, us, ap) while the node
// each first asks cycles through all five: every pairing of asked node and region occurs once,
// so placement keeps some viewers where they asked and redirects the others to the least
// loaded node of their region.
func Redirects5() Scenario {
	s := Scenario{
		Nodes: []Node{{"eu-1", "eu"}, {"eu-2", "eu"}, {"us-1", "us"}, {"us-2", "us"}, {"ap-1", "ap"}},
		Delays: map[string]time.Duration{"eu-us": 35 * time.Millisecond, "ap-eu": 75 * time.Millisecond,
			"ap-us": 55 * time.Millisecond},
		Fanout: 3, Heartbeat: 200 * time.Millisecond, Tracks: 1, JoinEvery: 500 * time.Millisecond, Hold: 4 * time.Second,
		HopMs: 0.4,
	}
	regions := []string{"eu", "us", "ap"}
	for i := range 15 {
		s.Viewers = append(s.Viewers, Viewer{Asks: s.Nodes[i%len(s.Nodes)].ID, Region: regions[i%len(regions)]})
	}
	return s
}
