package reallab

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/relay"
)

// TestManyRoomsReality: two real nodes in two regions 100 ms apart (one way), 40 rooms, each
// with one publisher (audio) on eu-0 and two viewers, one of each region (both ask ap-0 with
// their region hint; placement sends the eu one to eu-0), the bots joining 25 a second. ap-0
// wants 40 producers from eu-0 within a few seconds, each a pipe request and its reply across
// the boundary (a round trip of 200 ms and more). Every viewer must get media, and ap-0's
// slowest viewer's time from its join to its first packet must be within 10 round trips of its
// fastest's: with up to relay.MaxSetups set-ups under way at once the pipes come up together; a
// manager serving one producer at a time (as before) made the last viewer wait about 40 round
// trips in turn. The bound is in the run's own round trip and compares viewers of one run.
// Root only, as TestSimMatchesReality.
func TestManyRoomsReality(t *testing.T) {
	const rooms, oneWay = 40, 100 * time.Millisecond
	s := Scenario{
		Nodes:  []Node{{"eu-0", "eu"}, {"ap-0", "ap"}},
		Delays: map[string]time.Duration{"ap-eu": oneWay}, IntraDelay: time.Millisecond,
		Fanout: 3, Heartbeat: time.Second, Tracks: 1,
		Viewers: []Viewer{{Asks: "eu-0", Region: "eu"}}, // Start's check; the bots below are the viewers
	}
	c := Start(t, s)
	report := filepath.Join(t.TempDir(), "report.json")
	p := c.bots.Start(t, "bots", c.bin, "bots", "--publish-url", c.wsURL("eu-0"), "--url", c.wsURL("ap-0"), "--regions", "eu,ap",
		"--room", "many", "--rooms", fmt.Sprint(rooms), "--publishers", "1", "--subscribers", "2", "--video=false", "--audio",
		"--rate", "25", "--duration", "3s", "--join-timeout", "40s", "--max-stall", "0", "--api-key", keys.Key, "--api-secret", keys.Secret,
		"--run-id", "r", "--quiet", "--json", report)
	if code, err := p.Wait(3 * time.Minute); err != nil || code != 0 {
		t.Fatalf("bots: exit %d, %v:\n%s", code, err, p.Output())
	}
	rep := readReport(t, report)
	if !rep.OK() {
		t.Fatalf("bots run not ok: %q, errors %v", rep.Problems(), rep.Errors)
	}
	joins := map[string][]float64{}
	for _, b := range rep.Bots {
		joins[c.nodeAt(b.URL)] = append(joins[c.nodeAt(b.URL)], b.JoinMs)
	}
	if len(joins["ap-0"]) != rooms || len(joins["eu-0"]) != rooms {
		t.Fatalf("viewers per node: ap-0 %d, eu-0 %d; want %d each", len(joins["ap-0"]), len(joins["eu-0"]), rooms)
	}
	for _, id := range []string{"eu-0", "ap-0"} {
		j := joins[id]
		slices.Sort(j)
		t.Logf("%d viewers on %s, join to first media: min %.0f ms, p50 %.0f ms, max %.0f ms", len(j), id, j[0], j[len(j)/2], j[len(j)-1])
	}
	ap := joins["ap-0"]
	rtt := float64(2*oneWay) / float64(time.Millisecond)
	t.Logf("round trip %.0f ms, %d pipe set-ups at once", rtt, relay.MaxSetups)
	if spread := ap[len(ap)-1] - ap[0]; spread > 10*rtt {
		t.Errorf("ap-0's slowest viewer got media %.0f ms after its fastest (join to first media), want within 10 round trips (%.0f ms): pipe set-ups queued", spread, 10*rtt)
	}
}
