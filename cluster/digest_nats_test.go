package cluster_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/nats-io/nats-server/v2/server"
)

// aggMember is a node of region on the NATS server at url, beating every interval.
type aggMember struct {
	id  string
	ns  *cluster.NATS
	c   *cluster.Cluster
	pl  *cluster.Placer
	url string
}

func startAggMember(t *testing.T, url, id, region string, interval time.Duration) *aggMember {
	t.Helper()
	n, err := node.New(node.Options{ID: id, Region: region, LoopbackOnly: true, Workers: 1, HTTPURL: "http://" + id + ".example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	ns, err := cluster.StartNATS(cluster.NATSOptions{URL: url, Name: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	pipes, err := relay.Open(relay.Options{Self: id, Region: region, Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	c, err := cluster.New(n, pipes, ns.Bus(), cluster.Options{Heartbeat: interval, Secrets: testSecrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &aggMember{id: id, ns: ns, c: c, pl: cluster.NewPlacer(c), url: "http://" + id + ".example"}
}

func peerIDs(c *cluster.Cluster) []string {
	var ids []string
	for _, p := range c.Peers() {
		ids = append(ids, p.ID)
	}
	return ids
}

// TestAggregatorFailover: five nodes in two regions on a real NATS server. Each region's two
// lowest ids aggregate its heartbeats; every node knows every other through the digests. The
// primary aggregator of eu loses NATS abruptly (its connection closed: no goodbye, no more
// heartbeat or digest). While its backup takes over, no node drops any live node, in eu or us;
// every survivor drops the dead one within the timeout and two intervals; the backup becomes
// the primary and the next id the backup; placement on every survivor keeps answering: a client
// of eu is sent to the live nodes of eu, never to the dead one.
func TestAggregatorFailover(t *testing.T) {
	const interval = 100 * time.Millisecond
	const timeout = 3 * interval
	s := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	defer s.Shutdown()
	var ms []*aggMember
	for _, spec := range []string{"a1/eu", "a2/eu", "a3/eu", "b1/us", "b2/us"} {
		id, region, _ := strings.Cut(spec, "/")
		ms = append(ms, startAggMember(t, s.ClientURL(), id, region, interval))
	}
	all := []string{"a1", "a2", "a3", "b1", "b2"}
	others := func(self string, ids []string) string {
		return strings.Join(slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == self }), ",")
	}
	roles := func(want map[string]cluster.Role) func() error {
		return func() error {
			for _, m := range ms {
				if w, ok := want[m.id]; ok && m.c.Aggregation() != w {
					return fmt.Errorf("%s is %v, want %v", m.id, m.c.Aggregation(), w)
				}
			}
			return nil
		}
	}
	checkFor(t, 10*time.Second, func() error {
		for _, m := range ms {
			if got, want := strings.Join(peerIDs(m.c), ","), others(m.id, all); got != want {
				return fmt.Errorf("%s sees %q, want %q", m.id, got, want)
			}
		}
		return roles(map[string]cluster.Role{"a1": cluster.RolePrimary, "a2": cluster.RoleBackup, "a3": cluster.RoleNone,
			"b1": cluster.RolePrimary, "b2": cluster.RoleBackup})()
	})

	// Watch every survivor's table from here on: any live node missing is a wrong drop; the
	// first look without a1 is when it dropped it.
	survivors := ms[1:]
	var mu sync.Mutex
	var wrong []string
	droppedAt := map[string]time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval / 10):
			}
			now := time.Now()
			mu.Lock()
			for _, m := range survivors {
				ids := peerIDs(m.c)
				for _, o := range survivors {
					if o != m && !slices.Contains(ids, o.id) {
						wrong = append(wrong, m.id+" dropped "+o.id)
					}
				}
				if _, ok := droppedAt[m.id]; !ok && !slices.Contains(ids, "a1") {
					droppedAt[m.id] = now
				}
			}
			mu.Unlock()
		}
	}()
	killed := time.Now()
	ms[0].ns.Conn().Close() // a1's NATS path dies at once: no goodbye, no last digest
	checkFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(droppedAt) < len(survivors) {
			return fmt.Errorf("a1 dropped by %v only", droppedAt)
		}
		return nil
	})
	// Watch a few more intervals, with the new roles settled.
	checkFor(t, 10*time.Second, roles(map[string]cluster.Role{"a2": cluster.RolePrimary, "a3": cluster.RoleBackup,
		"b1": cluster.RolePrimary, "b2": cluster.RoleBackup}))
	time.Sleep(5 * interval) // a window for a wrong drop to show: the watcher, not a wait for a state
	close(stop)
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("live nodes dropped while eu's backup took over: %v", wrong)
	}
	var last time.Duration
	for id, at := range droppedAt {
		d := at.Sub(killed)
		t.Logf("%s dropped a1 after %v", id, d.Round(time.Millisecond))
		last = max(last, d)
	}
	// Timeout + 2 intervals is the bound; a check's tenth and the watcher's tenth on top.
	if bound := timeout + 2*interval + 3*interval/10; last > bound {
		t.Errorf("a1 dropped by every survivor only after %v, bound %v", last, bound)
	}
	for _, m := range survivors {
		var alts []string
		for _, a := range m.pl.Alternatives("room-after", "eu", 10) {
			alts = append(alts, a.ID)
		}
		slices.Sort(alts)
		if got, want := strings.Join(alts, ","), others(m.id, []string{"a2", "a3"}); !m.pl.Available("room-after") || got != want {
			t.Errorf("placement on %s: available %v, alternatives %q, want %q", m.id, m.pl.Available("room-after"), got, want)
		}
	}
}
