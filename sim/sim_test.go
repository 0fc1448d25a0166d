package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// small is a town hall on 18 nodes in three regions, K = 2: big enough for trees three hops
// deep and for each region to need a hub, small enough to run in a fraction of a second.
const small = `
name: small
duration: 30s
seed: 3
fanout: 2
regions:
  - {name: us, nodes: 6, capacity: 80}
  - {name: eu, nodes: 6, capacity: 80}
  - {name: ap, nodes: 6, capacity: 80}
delays: {us/eu: 40ms, us/ap: 110ms, eu/ap: 70ms}
rooms:
  - name: hall
    publishers: 1
    publisher_regions: [us]
    producers: 2
    publish_at: 2s
    arrivals:
      - {region: us, start: 3s, end: 13s, per_sec: 40}
      - {region: eu, start: 3s, end: 13s, per_sec: 40}
      - {region: ap, start: 3s, end: 13s, per_sec: 40}
`

func run(t *testing.T, yaml string) *Report {
	t.Helper()
	sc, err := ParseScenario([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(sc)
	if err != nil {
		t.Fatal(err)
	}
	return s.Run()
}

func check(t *testing.T, r *Report, prefix string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", prefix, r.Checks)
	return Check{}
}

// TestTownHallTree: every viewer is served, and the relay trees keep Cascade's promises: the
// origin sends at most K relay streams, the trees are deeper than one hop (a tree, not a
// star), every node with viewers gets the media, a remote region is entered once per
// producer, and the server path of a remote region costs its delay plus the hops.
func TestTownHallTree(t *testing.T) {
	r := run(t, small)
	if r.Viewers.Served != 1200 || r.Viewers.Refused != 0 {
		t.Fatalf("viewers: %+v, want 1200 served", r.Viewers)
	}
	if len(r.Trees) != 2 {
		t.Fatalf("%d trees, want 2", len(r.Trees))
	}
	for _, tr := range r.Trees {
		if tr.MaxEgress > r.Fanout || tr.MaxEgress == 0 {
			t.Errorf("%s: origin egress %d, want 1..K=%d", tr.Producer, tr.MaxEgress, r.Fanout)
		}
		if tr.MaxDepth < 2 {
			t.Errorf("%s: depth %d: a star, not a tree", tr.Producer, tr.MaxDepth)
		}
		if tr.Detached != 0 {
			t.Errorf("%s: %d nodes with viewers get no media", tr.Producer, tr.Detached)
		}
		// Media crosses into each remote region once per producer, join storm or not: the
		// region's nodes that open the room within a pipe set-up of each other wait for their
		// hub (relay.HubDelay) instead of each asking across the boundary.
		for _, region := range []string{"eu", "ap"} {
			if c := tr.Crossings[region]; c != 1 {
				t.Errorf("%s: %d pipes into %s, want 1: %v", tr.Producer, c, region, tr.Crossings)
			}
		}
		if tr.Carriers < 14 {
			t.Errorf("%s: %d carriers, want the 14 or more nodes the 1,200 viewers need", tr.Producer, tr.Carriers)
		}
	}
	for _, l := range r.Latency {
		floor := map[string]float64{"us": 0, "eu": 40, "ap": 110}[l.Region]
		if l.Ms.Min < floor || l.Ms.Max > floor+float64(l.Hops.Max)*(r.Costs.HopLatencyMs+70)+1 {
			t.Errorf("latency %s: %+v, below the region's delay %v ms or beyond its hops", l.Region, l.Ms, floor)
		}
	}
	if c := check(t, r, "origin egress"); !c.OK {
		t.Errorf("check %+v", c)
	}
}

// TestKillMidTree: a node in the middle of the tree dies; its children notice it within the
// heartbeat timeout (plus a check's tenth of an interval) and re-attach, with the subtree,
// within timeout + 1 s; its viewers come back through placement.
func TestKillMidTree(t *testing.T) {
	r := run(t, small+`
failures:
  - {at: 18s, kill: mid-tree}
`)
	if len(r.Failures) != 1 {
		t.Fatalf("failures: %+v", r.Failures)
	}
	f := r.Failures[0]
	if f.Node == "" || f.Orphans == 0 || f.Subtree < f.Orphans {
		t.Fatalf("mid-tree kill hit no subtree: %+v", f)
	}
	timeout := 3.0
	if f.DetectedSec < timeout-1 || f.DetectedSec > timeout+0.2 {
		t.Errorf("noticed after %.2f s, want about the timeout (%v s)", f.DetectedSec, timeout)
	}
	if !f.Repaired || f.RepairSec > timeout+1 {
		t.Errorf("repair: %+v, want within %v s", f, timeout+1)
	}
	if c := check(t, r, "subtree of mid-tree"); !c.OK {
		t.Errorf("check %+v", c)
	}
	// us runs at exactly its capacity once us-003 is gone (400 viewers, 5 x 80 places): a
	// reconnecting viewer whose three retries all meet loads a heartbeat old may give up (1
	// does with region hubs, whose relay children shift which nodes look least loaded).
	if r.Viewers.Served+r.Viewers.Refused != 1200 || r.Viewers.Refused > 2 {
		t.Errorf("served %d after the reconnects, want 1200 (at most 2 giving up): %+v", r.Viewers.Served, r.Viewers)
	}
	for _, tr := range r.TreesEnd {
		if tr.Detached != 0 || tr.OriginEgress > r.Fanout {
			t.Errorf("after the repair: %+v", tr)
		}
	}
}

// TestKillHub: the node that brings the stream into a region dies; the region's orphans
// re-attach within timeout + 1 s and the region gets the media again.
func TestKillHub(t *testing.T) {
	r := run(t, small+`
failures:
  - {at: 18s, kill: "hub:eu"}
`)
	f := r.Failures[0]
	if !strings.HasPrefix(f.Node, "eu-") || f.Orphans == 0 {
		t.Fatalf("hub kill: %+v", f)
	}
	if !f.Repaired || f.RepairSec > 4 {
		t.Errorf("hub repair: %+v, want within timeout + 1 s", f)
	}
	for _, tr := range r.TreesEnd {
		if tr.Detached != 0 {
			t.Errorf("after the hub's repair: %+v", tr)
		}
		if tr.Crossings["eu"] < 1 {
			t.Errorf("eu not fed after its hub died: %v", tr.Crossings)
		}
	}
}

// TestPartitionHeals: a region cut off for longer than the timeout drops the others (and is
// dropped); once the cut heals, its nodes get the media again.
func TestPartitionHeals(t *testing.T) {
	r := run(t, small+`
failures:
  - {at: 16s, partition: ap, for: 6s}
`)
	f := r.Failures[0]
	if f.Dropped == 0 {
		t.Errorf("a 6 s partition with a 3 s timeout dropped no member: %+v", f)
	}
	if !f.Repaired {
		t.Errorf("not repaired after the heal: %+v", f)
	}
	var cut bool
	for _, s := range r.Series {
		if s.T > 16 && s.T < 22 && s.NodesWithoutMedia > 0 {
			cut = true
		}
	}
	if !cut {
		t.Errorf("no node lost media during the partition")
	}
}

// TestPartitionHealsAtScale: a 10 s partition of a region of 30 nodes (every node of it drops
// every other region's, and the other way round): once it heals, every node with viewers gets
// the media back within a few seconds, however stale each node's view of the tree was.
func TestPartitionHealsAtScale(t *testing.T) {
	r := run(t, `
name: partition
duration: 60s
seed: 1
regions:
  - {name: us, nodes: 30, capacity: 100}
  - {name: eu, nodes: 30, capacity: 100}
  - {name: ap, nodes: 30, capacity: 100}
delays: {us/eu: 40ms, us/ap: 110ms, eu/ap: 70ms}
rooms:
  - name: hall
    publishers: 1
    publish_at: 2s
    arrivals:
      - {region: us, start: 3s, end: 13s, per_sec: 200}
      - {region: eu, start: 3s, end: 13s, per_sec: 200}
      - {region: ap, start: 3s, end: 13s, per_sec: 200}
failures:
  - {at: 30s, partition: ap, for: 10s}
`)
	f := r.Failures[0]
	if f.Dropped < 30*60 || !f.Repaired || f.RepairSec > 5 {
		t.Fatalf("partition: %+v, want every ap node to drop the 60 others and the media back within 5 s of the heal", f)
	}
	// Once repaired, the media enters each region once: the cut region's nodes time their wait
	// for its hub from the heal, not from a try during the cut (relay.Pipes.waitForHub).
	for region, n := range f.Crossings {
		if n != 1 {
			t.Errorf("after the heal the media enters %s %d times, want once: %v", region, n, f.Crossings)
		}
	}
}

// within is whether q's min and max lie in [lo, hi].
func within(q Quantiles, lo, hi float64) bool { return q.Min >= lo && q.Max <= hi }

// TestControlTraffic: at steady state, with the heartbeats aggregated per region
// (cluster.Aggregator), a node sends one heartbeat a second and receives one digest per region;
// the two aggregators of each region receive its six heartbeats on top, and the primary sends
// the digest. Heartbeats stay in their region; digests cross the gateways to the two other
// regions. The join storm's participant events dominate churn.
func TestControlTraffic(t *testing.T) {
	r := run(t, small)
	c := r.Control
	if c.Aggregators != 6 {
		t.Errorf("%d aggregators, want primary and backup of 3 regions", c.Aggregators)
	}
	if !within(c.OtherSent, 0.9, 1.1) || !within(c.OtherReceived, 2.9, 3.1) {
		t.Errorf("other nodes: sent %+v, received %+v; want 1 heartbeat, 3 digests a second", c.OtherSent, c.OtherReceived)
	}
	if !within(c.AggregatorSent, 0.9, 2.1) || c.AggregatorSent.Max < 1.9 || !within(c.AggregatorReceived, 8.9, 9.1) {
		t.Errorf("aggregators: sent %+v, received %+v; want a heartbeat (and a digest: the primary), 6 heartbeats and 3 digests", c.AggregatorSent, c.AggregatorReceived)
	}
	if c.ChurnReceivedMax <= uint64(c.SteadyReceived.Max) {
		t.Errorf("churn %d not above steady %v", c.ChurnReceivedMax, c.SteadyReceived.Max)
	}
	var hb, dg TypeTraffic
	for _, tt := range c.ByType {
		switch tt.Type {
		case msgHeartbeat:
			hb = tt
		case msgDigest:
			dg = tt
		}
		if tt.Bytes <= 0 || tt.Bytes >= NATSMaxPayload {
			t.Errorf("%s: %d bytes", tt.Type, tt.Bytes)
		}
	}
	// 18 nodes, 30 beats each, heard by two aggregators; 3 digests a second from about 1 s.
	if hb.Sent < 17*30 || hb.Gateway != 0 || hb.Received < 2*hb.Sent-18 {
		t.Errorf("heartbeats %+v", hb)
	}
	if dg.Sent < 3*28 || dg.Sent > 3*31 || dg.Gateway != 2*dg.Sent || dg.Received < 17*dg.Sent {
		t.Errorf("digests %+v", dg)
	}
}

// TestDeterministic: one scenario and seed give one report (the wall-clock figures aside).
func TestDeterministic(t *testing.T) {
	a, b := run(t, small), run(t, small)
	for _, r := range []*Report{a, b} {
		r.WallSec, r.Placement, r.Checks = 0, PlacementReport{}, nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatal("two runs of one scenario differ")
	}
}

// TestScenarios: the committed scenarios parse; unknown keys and bad values are refused.
func TestScenarios(t *testing.T) {
	names := ListScenarios()
	if len(names) < 3 {
		t.Fatalf("committed scenarios: %v", names)
	}
	for _, n := range names {
		if _, err := LoadScenario(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	for _, bad := range []string{
		small + "\nfanuot: 3\n",
		strings.Replace(small, "us/eu: 40ms, ", "", 1),
		strings.Replace(small, "duration: 30s", "duration: 0s", 1),
		small + "\nfailures:\n  - {at: 1s, partition: mars, for: 1s}\n",
		strings.Replace(small, "fanout: 2", "fanout: 2\ntimeout: 1s", 1), // under two heartbeats
	} {
		if _, err := ParseScenario([]byte(bad)); !errors.Is(err, ErrScenario) {
			t.Errorf("accepted a bad scenario:\n%s", bad)
		}
	}
	sc, _ := ParseScenario([]byte(small))
	if sc.Timeout != 3*time.Second || sc.Costs.CPUPerPacket != DefaultCPUPerPacket || sc.Fanout != 2 {
		t.Errorf("defaults: %+v", sc)
	}
}

// TestControlTrafficScaling: the control traffic per node at steady state, with no failure
// and no joins, as the cluster grows fourfold (100 to 400 nodes in two regions): a node that
// does not aggregate sends one heartbeat and receives one digest per region a second, whatever
// the cluster's size; the two aggregators of a region receive its heartbeats (linear in the
// region's size, but only they) and the primary sends one digest a second on top. All-to-all
// heartbeats would have grown every node's received count fourfold.
func TestControlTrafficScaling(t *testing.T) {
	other := map[int]float64{}
	for _, n := range []int{100, 400} {
		r := run(t, fmt.Sprintf(`
name: idle
duration: 12s
steady_from: 5s
regions:
  - {name: us, nodes: %d, capacity: 100}
  - {name: eu, nodes: %d, capacity: 100}
delays: {us/eu: 40ms}
`, n/2, n/2))
		c := r.Control
		t.Logf("%d nodes: others receive %.2f/s (max %.2f), aggregators %.2f/s (max %.2f)", n, c.OtherReceived.Mean, c.OtherReceived.Max, c.AggregatorReceived.Mean, c.AggregatorReceived.Max)
		if c.Aggregators != 4 {
			t.Errorf("%d nodes: %d aggregators, want 4", n, c.Aggregators)
		}
		if !within(c.OtherSent, 0.99, 1.01) || !within(c.OtherReceived, 1.99, 2.01) {
			t.Errorf("%d nodes: other nodes sent %+v, received %+v; want 1/s and one digest per region", n, c.OtherSent, c.OtherReceived)
		}
		if !within(c.AggregatorSent, 0.99, 2.01) || !within(c.AggregatorReceived, float64(n/2)+1.99, float64(n/2)+2.01) {
			t.Errorf("%d nodes: aggregators sent %+v, received %+v; want up to 2/s, and the region's %d heartbeats and 2 digests", n, c.AggregatorSent, c.AggregatorReceived, n/2)
		}
		other[n] = c.OtherReceived.Max
	}
	if other[400] > 1.1*other[100] {
		t.Errorf("received per non-aggregating node grew from %.2f to %.2f with a fourfold cluster", other[100], other[400])
	}
}

// TestJoinStormHerding: a join storm faster than the heartbeats. Without the placer's
// accounting every node sends its joins to the same carrying node on loads a heartbeat old, so
// the region fills one node at a time and joins are refused while empty nodes wait; with it
// (the default: cluster.PlaceCounted, as the Placer decides) each node counts its redirects,
// times its region's nodes, against their targets, and every viewer is served; with the
// placement's Spread every node keeps the joins the load balancer brings it.
func TestJoinStormHerding(t *testing.T) {
	storm := `
name: storm
duration: 20s
seed: 5
join_retries: 1
regions:
  - {name: us, nodes: 10, capacity: 100}
  - {name: eu, nodes: 10, capacity: 100}
delays: {us/eu: 40ms}
rooms:
  - name: hall
    publishers: 1
    publisher_regions: [us]
    publish_at: 2s
    arrivals:
      - {region: us, start: 4s, end: 6s, per_sec: 400}
      - {region: eu, start: 4s, end: 6s, per_sec: 400}
`
	// How many give up depends on which nodes look least loaded, relay children included (the
	// region hub's children are consumers on it): 164 here with region hubs, 278 before them.
	herd := run(t, storm+"placement_accounting: false\n")
	if herd.Viewers.Refused < 100 || herd.Load.PeakHerding < 3 {
		t.Errorf("without accounting: %d refused, herding %.1fx: the storm did not pile up", herd.Viewers.Refused, herd.Load.PeakHerding)
	}
	// The default (the placer's accounting): no viewer refused while the region has room
	// (1,600 viewers, 2,000 places), and at most a few turned away once, by a node a
	// heartbeat fuller than its last heartbeat said.
	def := run(t, storm)
	if def.Viewers.Refused != 0 || def.Viewers.Served != 1600 || def.Viewers.Refusals > 20 {
		t.Errorf("default placement: %+v, want all 1,600 served", def.Viewers)
	}
	for _, tr := range def.Trees {
		if tr.MaxEgress > def.Fanout || tr.Crossings["eu"] != 1 || tr.Detached != 0 { // once per producer: see TestTownHallTree
			t.Errorf("default placement: tree %+v", tr)
		}
	}
	spread := run(t, storm+"placement_spread: 1000\n")
	if spread.Viewers.Refused != 0 || spread.Load.PeakHerding > 2 {
		t.Errorf("with Spread: %d refused, herding %.1fx, want none", spread.Viewers.Refused, spread.Load.PeakHerding)
	}
}

// TestListsSmallRuns: a small run lists its placement decisions and its trees' edges (what a
// comparison with real nodes needs), and the edges are the tree the figures describe.
func TestListsSmallRuns(t *testing.T) {
	r := run(t, `
name: tiny
duration: 15s
regions:
  - {name: us, nodes: 2, capacity: 10}
  - {name: eu, nodes: 2, capacity: 10}
delays: {us/eu: 40ms}
rooms:
  - name: r
    publishers: 1
    producers: 1
    publish_at: 2s
    arrivals:
      - {region: eu, start: 3s, end: 5s, per_sec: 10}
`)
	if len(r.Placements) != 21 || r.Placements[0].Region != "us" || r.Placements[1].Region != "eu" {
		t.Fatalf("placements: %+v", r.Placements)
	}
	tr := r.Trees[0]
	if len(tr.Edges) != tr.Carriers || tr.Carriers != 2 {
		t.Fatalf("tree: %+v", tr)
	}
	if tr.Crossings["eu"] != 1 {
		t.Fatalf("crossings: %v", tr.Crossings)
	}
}

// TestKillAggregator: the primary aggregator of a region's heartbeats dies. Its backup takes
// over (it publishes once the primary's digests are missing for 1.25 intervals), so no live
// node is dropped by anyone, in its region or the others, while every node drops the dead one
// within the timeout and an interval (detection as with all-to-all heartbeats); then the
// backup is the primary and the next id the backup. When both aggregators of a region die at
// once, the region's next two ids take over once the dead ones' heartbeats are older than the
// timeout, and every node sees every live node again.
func TestKillAggregator(t *testing.T) {
	sc, err := ParseScenario([]byte(`
name: aggregator
duration: 36s
steady_from: 4s
regions:
  - {name: us, nodes: 6, capacity: 100}
  - {name: eu, nodes: 6, capacity: 100}
  - {name: ap, nodes: 6, capacity: 100}
delays: {us/eu: 40ms, us/ap: 110ms, eu/ap: 70ms}
failures:
  - {at: 8s, kill: "aggregator:us"}
  - {at: 14s, kill: "aggregator:ap"}
  - {at: 24s, kill: eu-000}
  - {at: 24s, kill: eu-001}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(sc)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Run()
	if len(r.Failures) != 4 {
		t.Fatalf("failures %+v", r.Failures)
	}
	// Both of eu's aggregators at once: nobody reports eu's other nodes until one of them
	// aggregates, after the dead ones' heartbeats are older than the timeout, so the other
	// regions drop them for a moment (as in a partition), and take them back.
	for _, f := range r.Failures[2:] {
		t.Logf("killed %s with its partner: by all after %.2f s, %d live nodes dropped meanwhile", f.Node, f.DetectedAllSec, f.LiveDropped)
		if f.DetectedAllSec > 5.2 {
			t.Errorf("%s dropped by every node only after %.2f s", f.Node, f.DetectedAllSec)
		}
	}
	for i, want := range []string{"us-000", "ap-000"} {
		f := r.Failures[i]
		t.Logf("killed %s: first noticed after %.2f s, by all after %.2f s, %d live nodes dropped", f.Node, f.DetectedSec, f.DetectedAllSec, f.LiveDropped)
		if f.Node != want {
			t.Errorf("killed %q, want the primary %s", f.Node, want)
		}
		if f.LiveDropped != 0 {
			t.Errorf("killing %s dropped %d live nodes", f.Node, f.LiveDropped)
		}
		if f.DetectedSec < 2 || f.DetectedAllSec > 4.2 {
			t.Errorf("%s dropped after %.2f s, by every node after %.2f s; want within the timeout and an interval", f.Node, f.DetectedSec, f.DetectedAllSec)
		}
	}
	for _, n := range s.nodes {
		if n.alive && n.mem.Len() != 13 {
			t.Errorf("%s has %d peers, want the 13 other live nodes", n.id, n.mem.Len())
		}
	}
	for id, want := range map[string]string{"us-001": "primary", "us-002": "backup", "us-003": "none", "ap-001": "primary", "eu-002": "primary", "eu-003": "backup", "eu-004": "none"} {
		if got := s.byID[id].agg.Role().String(); got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}
}
