package reallab

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestFarNodeLearnsProducers: two real nodes in two regions, 150 ms and 250 ms apart one way
// (EU <-> Asia, and worse), NATS in the near region. The publisher joins the near node first;
// then a viewer joins the far node, which opens the room there and asks the near node for its
// part of it: the answer comes back a round trip (300 ms, 500 ms) and more later, past the
// join's wait (cluster.DefaultSyncWait). The far viewer must still get the publisher's media:
// the far node keeps collecting late answers (cluster.SyncLateWait). Before that, it dropped
// them and never learnt the producers, and the viewer got nothing. A near viewer joins as well,
// as the control: it gets media either way. Root only, as TestSimMatchesReality.
func TestFarNodeLearnsProducers(t *testing.T) {
	for _, oneWay := range []time.Duration{150 * time.Millisecond, 250 * time.Millisecond} {
		t.Run(fmt.Sprint(oneWay), func(t *testing.T) {
			s := Scenario{
				Nodes:  []Node{{"eu-0", "eu"}, {"ap-0", "ap"}},
				Delays: map[string]time.Duration{"ap-eu": oneWay}, IntraDelay: time.Millisecond,
				Fanout: 3, Heartbeat: time.Second, Tracks: 1,
				Viewers: []Viewer{{Asks: "eu-0", Region: "eu"}}, // Start's check; the bots below are the viewers
			}
			c := Start(t, s)
			report := filepath.Join(t.TempDir(), "report.json")
			// Subscriber 0 asks eu-0 (region eu), subscriber 1 ap-0 (region ap): each stays.
			p := c.bots.Start(t, "bots", c.bin, "bots", "--publish-url", c.wsURL("eu-0"), "--url", c.wsURL("eu-0")+","+c.wsURL("ap-0"),
				"--regions", "eu,ap", "--room", "far", "--publishers", "1", "--subscribers", "2", "--video=false", "--audio",
				"--rate", "1", "--duration", "2s", "--join-timeout", "20s", "--max-stall", "0", "--api-key", keys.Key,
				"--api-secret", keys.Secret, "--run-id", "r", "--quiet", "--json", report)
			if code, err := p.Wait(2 * time.Minute); err != nil || code != 0 {
				t.Fatalf("bots: exit %d, %v:\n%s", code, err, p.Output())
			}
			rep := readReport(t, report)
			if !rep.OK() {
				t.Fatalf("bots run not ok: %q, errors %v", rep.Problems(), rep.Errors)
			}
			on := map[string]int{}
			for _, b := range rep.Bots {
				on[c.nodeAt(b.URL)]++
				t.Logf("%s on %s: join to first media %.0f ms", b.Name, c.nodeAt(b.URL), b.JoinMs)
			}
			if on["ap-0"] != 1 || on["eu-0"] != 1 {
				t.Fatalf("viewers per node %v, want one on each", on)
			}
		})
	}
}
