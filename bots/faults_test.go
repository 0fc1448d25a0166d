package bots_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// The bad-day tests: real node processes in network namespaces, the bots as the real `cascade
// bots` command, and a fault in the middle of the run. What the bots report is checked against
// what the nodes forwarded, read from their /stats while the run goes on.

// faultCluster is three nodes on one external NATS server, each on its own host, and a host
// for the bots (or, with clusterOptions, more nodes, or nodes on embedded NATS servers).
type faultCluster struct {
	bin      string
	nats     *harness.Process // nil with embedded NATS
	natsHost *harness.Host
	natsArgs []string        // nats-server's arguments, to restart it
	hosts    []*harness.Host // n0 (origin), n1, n2...
	nodes    []*harness.Process
	args     [][]string // each node's arguments, to restart it
	bots     *harness.Host
}

// clusterOptions shape a fault cluster; the zero value is startFaultCluster's.
type clusterOptions struct {
	nodes int // 0: three
	// embedded: no nats-server; each node runs its embedded NATS server, listening on its
	// address (clients on 4222, routes on 6222), routed to every other node's: one NATS cluster.
	embedded bool
	args     []string // more flags for every node
}

const faultPort = 7880 // every node's HTTP port (each host has its own ports)

// faultClusterSecret is the cluster secret of every node of a fault lab: their embedded NATS
// servers admit each other only with credentials derived from it.
const faultClusterSecret = "fault-lab-cluster-secret-0123456789abcdef"

func startFaultCluster(t testing.TB) *faultCluster {
	return startFaultClusterWith(t, clusterOptions{})
}

func startFaultClusterWith(t testing.TB, o clusterOptions) *faultCluster {
	if o.nodes == 0 {
		o.nodes = 3
	}
	lab := harness.New(t)
	c := &faultCluster{bin: harness.Cascade(t)}
	var natsURL string
	if !o.embedded {
		c.natsHost = lab.Host("nats")
		c.natsArgs = []string{"-a", c.natsHost.Addr().String(), "-p", "4222"}
		c.nats = c.natsHost.Start(t, "nats-server", harness.NATSServer(t), c.natsArgs...)
		natsURL = "nats://" + net.JoinHostPort(c.natsHost.Addr().String(), "4222")
	}
	for i := range o.nodes {
		c.hosts = append(c.hosts, lab.Host(fmt.Sprintf("n%d", i)))
	}
	for _, h := range c.hosts {
		args := []string{"node", "--node-id", h.Name(), "--http", fmt.Sprintf(":%d", faultPort), "--udp-port", "7882",
			"--relay", ":7881", "--public-ip", h.Addr().String(), "--workers", "1", "--api-key", keys.Key,
			"--api-secret", keys.Secret, "--log-level", "warn", "--cluster-secret", faultClusterSecret}
		if o.embedded {
			var routes []string
			for _, other := range c.hosts {
				if other != h {
					routes = append(routes, "nats-route://"+net.JoinHostPort(other.Addr().String(), "6222"))
				}
			}
			args = append(args, "--nats-listen", net.JoinHostPort(h.Addr().String(), "4222"),
				"--nats-cluster", net.JoinHostPort(h.Addr().String(), "6222"), "--nats-routes", strings.Join(routes, ","))
		} else {
			args = append(args, "--nats", natsURL)
		}
		args = append(args, o.args...)
		c.args = append(c.args, args)
		c.nodes = append(c.nodes, h.Start(t, h.Name(), c.bin, args...))
	}
	c.bots = lab.Host("bots")
	harness.Eventually(t, 20*time.Second, func() error {
		for i, p := range c.nodes {
			if code, err := p.Wait(0); err == nil {
				t.Fatalf("n%d exited %d:\n%s", i, code, p.Output())
			}
		}
		for i := range c.hosts {
			var v struct {
				Nodes []json.RawMessage `json:"nodes"`
			}
			if err := c.get(i, "/cluster?format=json", &v); err != nil {
				return err
			}
			if len(v.Nodes) != o.nodes {
				return fmt.Errorf("n%d sees %d nodes", i, len(v.Nodes))
			}
		}
		return nil
	})
	return c
}

func (c *faultCluster) url(i int) string {
	return fmt.Sprintf("ws://%s", net.JoinHostPort(c.hosts[i].Addr().String(), fmt.Sprint(faultPort)))
}

// get fetches path from node i into v, over a connection made on the bots' host, with an admin
// token (/stats and /cluster need one).
func (c *faultCluster) get(i int, path string, v any) error {
	tok, err := keys.Mint(auth.Grant{Admin: true}, time.Minute)
	if err != nil {
		return err
	}
	return c.bots.GetJSONAuth(fmt.Sprintf("http://%s%s", net.JoinHostPort(c.hosts[i].Addr().String(), fmt.Sprint(faultPort)), path), tok, v)
}

// nodeStats is what the test reads of a node's /stats.
type nodeStats struct {
	Consumers int64 `json:"consumers"`
	Workers   []struct {
		Packets uint64 `json:"forwarded_packets"`
	} `json:"workers"`
}

func (c *faultCluster) stats(i int) (nodeStats, uint64, error) {
	var s nodeStats
	err := c.get(i, "/stats", &s)
	var pkts uint64
	for _, w := range s.Workers {
		pkts += w.Packets
	}
	return s, pkts, err
}

// runBots starts `cascade bots`: the publisher on n0, subs subscribers over n1 and n2, for
// hold once all joined. It returns the process and the path of its JSON report.
func (c *faultCluster) runBots(t testing.TB, subs int, hold time.Duration, extra ...string) (*harness.Process, string) {
	out := filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"bots", "--publish-url", c.url(0), "--url", c.url(1) + "," + c.url(2),
		"--room", "faults", "--publishers", "1", "--subscribers", fmt.Sprint(subs), "--duration", hold.String(),
		"--rate", "20", "--max-stall", "2s", "--api-key", keys.Key, "--api-secret", keys.Secret, "--quiet", "--json", out}, extra...)
	p := c.bots.Start(t, "bots", c.bin, args...)
	// Every subscriber is served by the edge it joined (half each), with media flowing there.
	harness.Eventually(t, 30*time.Second, func() error {
		for _, i := range []int{1, 2} {
			s, pkts, err := c.stats(i)
			if err != nil {
				return err
			}
			if s.Consumers < int64(subs) || pkts == 0 { // subs/2 subscribers x 2 tracks
				return fmt.Errorf("n%d: %d consumers, %d packets forwarded", i, s.Consumers, pkts)
			}
		}
		return nil
	})
	return p, out
}

// flatFor watches node i's forwarded packets for d and returns the longest time (sampled every
// 250 ms) the counter did not move: the ground truth the bots' report is checked against.
func (c *faultCluster) flatFor(i int, d time.Duration) time.Duration {
	var longest time.Duration
	var last uint64
	var since time.Time
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		_, pkts, err := c.stats(i)
		now := time.Now()
		if err == nil && pkts != last {
			last, since = pkts, now
			continue
		}
		if !since.IsZero() {
			longest = max(longest, now.Sub(since))
		}
	}
	return longest
}

func readReport(t testing.TB, path string) *bots.Report {
	t.Helper()
	var rep bots.Report
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// TestFaultEdgeKilledBotsSeeStalls: an edge node dies (SIGKILL) under load; its subscribers stop
// receiving. The report names each of them as stalled on that node, not recovered, says how
// much of the run was without media, and `cascade bots` exits non-zero; the other edge's
// subscribers have no stall.
func TestFaultEdgeKilledBotsSeeStalls(t *testing.T) {
	c := startFaultCluster(t)
	const subs = 6
	p, out := c.runBots(t, subs, 12*time.Second, "--no-resume")
	time.Sleep(2 * time.Second) // media flowing for a while before the fault
	c.nodes[2].Kill()
	code, err := p.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Fatalf("cascade bots exited 0 although an edge died:\n%s", p.Output())
	}
	if !strings.Contains(p.Output(), "stalls longer than --max-stall") || !strings.Contains(p.Output(), c.url(2)) {
		t.Errorf("the output does not name the stalled subscribers and their node:\n%s", p.Output())
	}
	rep := readReport(t, out)
	for _, b := range rep.Bots {
		onDead := strings.HasPrefix(b.URL, c.url(2))
		switch {
		case onDead && (len(b.Stalls) == 0 || b.Stalls[len(b.Stalls)-1].Recovered || b.Stalls[len(b.Stalls)-1].DurationMs < 5000):
			t.Errorf("%s on the killed node: stalls %+v, want one of several seconds, not recovered", b.Name, b.Stalls)
		case !onDead && len(b.Stalls) > 0:
			t.Errorf("%s on the live edge: stalls %+v", b.Name, b.Stalls)
		}
	}
	if rep.StalledSubscribers != subs/2 || len(rep.OverMaxStall) != subs/2 {
		t.Errorf("%d stalled subscribers, %d over the limit; want %d", rep.StalledSubscribers, len(rep.OverMaxStall), subs/2)
	}
	if rep.StalledPct < 10 {
		t.Errorf("%.1f%% of subscriber-seconds without media, want a share that shows half the viewers gone", rep.StalledPct)
	}
	stalled := 0
	for _, s := range rep.Timeline {
		stalled = max(stalled, s.Stalled)
	}
	if stalled != subs/2 {
		t.Errorf("the timeline shows at most %d subscribers stalled, want %d", stalled, subs/2)
	}
}

// TestFaultNATSFrozenBotsAgreeWithNodes: the NATS server freezes (SIGSTOP) for 10 s. Whatever the nodes do
// with that, the bots' report must agree with what the edges forwarded: when an edge stopped
// forwarding for longer than --max-stall, its subscribers are reported stalled and the run
// fails; when media kept flowing, no stall is reported.
func TestFaultNATSFrozenBotsAgreeWithNodes(t *testing.T) {
	c := startFaultCluster(t)
	const subs = 6
	p, out := c.runBots(t, subs, 16*time.Second)
	time.Sleep(2 * time.Second)
	c.nats.Stop()
	flat := make([]time.Duration, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		flat[2] = c.flatFor(2, 10*time.Second)
	}()
	flat[1] = c.flatFor(1, 10*time.Second)
	<-done
	c.nats.Cont()
	code, err := p.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, out)
	t.Logf("edges forwarded nothing for up to %v (n1) and %v (n2); bots: exit %d, %d stalls in %d subscribers, longest %.1f s",
		flat[1], flat[2], code, rep.Stalls, rep.StalledSubscribers, rep.LongestStallMs/1000)
	for _, i := range []int{1, 2} {
		var stalled int
		for _, b := range rep.Bots {
			if strings.HasPrefix(b.URL, c.url(i)) && b.LongestGapMs > 1000 && len(b.Stalls) > 0 {
				stalled++
			}
		}
		switch {
		case flat[i] > 3*time.Second && stalled != subs/2:
			t.Errorf("n%d forwarded nothing for %v, but the bots report %d of its %d subscribers stalled", i, flat[i], stalled, subs/2)
		case flat[i] < time.Second && stalled != 0:
			t.Errorf("n%d kept forwarding, but the bots report %d of its subscribers stalled", i, stalled)
		}
	}
	if flat[1] > 3*time.Second || flat[2] > 3*time.Second {
		if code == 0 || len(rep.OverMaxStall) == 0 {
			t.Errorf("an edge stopped for over 3 s but the run passed (exit %d):\n%s", code, p.Output())
		}
	} else if code != 0 {
		t.Errorf("media kept flowing but the run failed (exit %d):\n%s", code, p.Output())
	}
}
