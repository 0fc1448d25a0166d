package reallab

import (
	"testing"

	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/sim"
)

// simScenario is a committed simulator scenario, run through the simulator, and its real form.
func simScenario(t *testing.T, name string) (Scenario, Outcome) {
	t.Helper()
	sc, err := sim.LoadScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromSim(sc)
	if err != nil {
		t.Fatal(err)
	}
	run, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := SimOutcome(s, run.Run())
	if err != nil {
		t.Fatal(err)
	}
	return s, out
}

// TestSimMatchesFunctions: the simulator makes of small-5.yaml what Cascade's placement and
// tree functions make of it, applied as the real nodes apply them (Expect).
func TestSimMatchesFunctions(t *testing.T) {
	s, simOut := simScenario(t, "small-5.yaml")
	want := Expect(s)
	t.Logf("scenario: origin %s, viewers %v", s.Origin(), s.Viewers)
	t.Logf("functions:\n%s", want)
	t.Logf("simulator:\n%s", simOut)
	for _, d := range Diff(want, simOut, DefaultTolerance) {
		t.Error(d)
	}
}

// TestSimMatchesReality runs sim/scenarios/small-5.yaml through the simulator and for real
// (five `cascade node` processes in three regions of the bad-day lab, delays between the
// regions' hosts, the bots as publisher and viewers, each viewer entering at the node the
// simulator's load balancer gives it): the viewers on each node, the relay tree, the region
// crossings must be the same, and each region's server-path latency within 20 % (2 ms inside a
// region). Reality must also be what Expect says. Root only: it skips without a lab, and fails
// under CI=true.
func TestSimMatchesReality(t *testing.T) {
	s, simOut := simScenario(t, "small-5.yaml")
	c := Start(t, s)
	real, rep := c.Run(t)
	t.Logf("simulator:\n%s", simOut)
	t.Logf("reality (bots' latency p50 %.1f ms):\n%s", rep.LatencyMs.P50, real)
	for _, d := range Diff(real, simOut, DefaultTolerance) {
		t.Errorf("simulator: %s", d)
	}
	for _, d := range Diff(Expect(s), real, DefaultTolerance) {
		t.Errorf("reality: %s", d)
	}
}

// TestStormReality runs sim/scenarios/storm-5.yaml, a join storm (five viewers 50 ms apart,
// three of them on the three nodes of a region 75 ms away), through the simulator and for real.
// Where each viewer lands and the server paths per region must agree, and the media must enter
// each region once, as in the simulator: a region's nodes wait for its hub (relay.HubDelay),
// and the hub among the room's nodes a node knows of waits relay.HubJoinWait for a region-mate
// of more weight whose join it has not heard yet (a real node asks for the producer a join
// time after its viewer arrives, which the simulator does not model). Which in-region carrier
// each follower hangs below is logged, not compared: it depends on which carriers a node knows
// of when it asks (docs/CAPACITY.md, "Sim and reality"). Root only, as TestSimMatchesReality.
func TestStormReality(t *testing.T) {
	s, simOut := simScenario(t, "storm-5.yaml")
	c := Start(t, s)
	real, _ := c.Run(t)
	t.Logf("simulator:\n%s", simOut)
	t.Logf("reality:\n%s", real)
	for region, n := range entries(s, real.Tree) {
		if n != 1 {
			t.Errorf("reality enters %s %d times, want once: %v", region, n, real.Tree)
		}
	}
	for region, n := range entries(s, simOut.Tree) {
		if n != 1 {
			t.Errorf("the simulator enters %s %d times, want once: %v", region, n, simOut.Tree)
		}
	}
	simOut.Tree = real.Tree // logged above, not compared
	for _, d := range Diff(real, simOut, DefaultTolerance) {
		t.Errorf("simulator: %s", d)
	}
	for id := range real.Viewers { // every node with viewers gets the media from the origin
		if id != s.Origin() && real.Tree.Depth(id, s.Origin()) > len(real.Tree) {
			t.Errorf("%s has viewers and no branch to the origin %s: %v", id, s.Origin(), real.Tree)
		}
	}
}

// entries counts, per region other than the origin's that the tree reaches, the tree's edges
// into it from another region: how often the media enters it.
func entries(s Scenario, t relay.Tree) map[string]int {
	out := map[string]int{}
	for child, parent := range t {
		if r := s.Region(child); r != s.Region(s.Origin()) {
			if _, ok := out[r]; !ok {
				out[r] = 0
			}
			if r != s.Region(parent) {
				out[r]++
			}
		}
	}
	return out
}
