package bots_test

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
)

// The healing tests (issue 12): NATS is the control plane and must never be what stops media.
// A frozen, a killed and restarted NATS server, and cut NATS routes leave every subscriber
// without a stall over 1 s, and the nodes agree on each room within 5 s after; a node
// restarted under its id serves again, and a mid-tree node's death stalls only its subtree,
// for no longer than the heartbeat timeout + 1 s.

// healSubscribers is the audience: 30 subscribers on the two edges.
const healSubscribers = 30

// maxStall is the bound for the NATS outages: no subscriber without media for longer.
const maxStall = time.Second

// agreeWithin is how soon after a fault heals every node must agree on a room.
const agreeWithin = 5 * time.Second

// botsRun is one `cascade bots` run: one publisher on pub, then subs subscribers spread
// round-robin over the nodes on, rate of them joining a second.
type botsRun struct {
	room     string
	pub      int   // node of the publisher
	on       []int // nodes of the subscribers, in join order
	subs     int
	hold     time.Duration // once every subscriber receives media
	maxStall time.Duration // --max-stall (0: report stalls, never fail on them)
	rate     float64       // bots joining per second (0: 20)
}

// launch starts run r (its name names the process) and returns the process and the path of
// its JSON report.
func (c *faultCluster) launch(t *testing.T, name string, r botsRun) (*harness.Process, string) {
	t.Helper()
	if r.rate == 0 {
		r.rate = 20
	}
	var urls []string
	for _, i := range r.on {
		urls = append(urls, c.url(i))
	}
	out := filepath.Join(t.TempDir(), name+".json")
	p := c.bots.Start(t, name, c.bin, "bots", "--publish-url", c.url(r.pub), "--url", strings.Join(urls, ","),
		"--room", r.room, "--publishers", "1", "--subscribers", fmt.Sprint(r.subs), "--duration", r.hold.String(),
		"--rate", fmt.Sprint(r.rate), "--max-stall", r.maxStall.String(), "--api-key", keys.Key, "--api-secret", keys.Secret,
		"--quiet", "--json", out)
	return p, out
}

// startBots launches run r, the only one, and waits until the cluster serves it: its bots
// joined and consume both tracks, wherever placement put them (a node redirects a joining
// client to a clearly less loaded one), and media flows on every node of r.on.
func (c *faultCluster) startBots(t *testing.T, name string, r botsRun) (*harness.Process, string) {
	t.Helper()
	p, out := c.launch(t, name, r)
	load := func() (participants, consumers int64, err error) {
		for i := range c.hosts {
			var s struct {
				Participants int64 `json:"participants"`
				Consumers    int64 `json:"consumers"`
			}
			if err := c.get(i, "/stats", &s); err != nil {
				return 0, 0, err
			}
			participants += s.Participants
			consumers += s.Consumers
		}
		return participants, consumers, nil
	}
	harness.Eventually(t, 30*time.Second, func() error {
		participants, consumers, err := load()
		if err != nil {
			return err
		}
		if participants < int64(r.subs)+1 || consumers < 2*int64(r.subs) {
			return fmt.Errorf("%s: %d participants and %d consumers on the nodes, want %d and %d",
				name, participants, consumers, r.subs+1, 2*r.subs)
		}
		for _, i := range r.on {
			if _, pkts, err := c.stats(i); err != nil || pkts == 0 {
				return fmt.Errorf("%s: n%d forwarded no packet (%v)", name, i, err)
			}
		}
		return nil
	})
	return p, out
}

// participants requires node i to serve want participants: the tests that judge a subscriber
// by the node it asked for check that placement kept it there.
func (c *faultCluster) participants(t *testing.T, i int, want int64) {
	t.Helper()
	var s struct {
		Participants int64 `json:"participants"`
	}
	if err := c.get(i, "/stats", &s); err != nil {
		t.Fatal(err)
	}
	if s.Participants != want {
		t.Fatalf("n%d serves %d participants, want %d: placement moved subscribers, the test cannot tell them apart", i, s.Participants, want)
	}
}

// restart starts node i again, under the same id with the same flags (a StatefulSet pod), once
// the old process is gone.
func (c *faultCluster) restart(t *testing.T, i int) {
	t.Helper()
	if _, err := c.nodes[i].Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.nodes[i] = c.hosts[i].Start(t, c.hosts[i].Name()+"-again", c.bin, c.args[i]...)
}

// finish waits for a bots run and returns its exit code and report.
func finish(t *testing.T, p *harness.Process, out string) (int, *bots.Report) {
	t.Helper()
	code, err := p.Wait(90 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, readReport(t, out)
}

// noStalls requires a run with --max-stall 1s to have passed, every subscriber to have joined
// and received both tracks of the publisher, and none to have gone a second without media.
func noStalls(t *testing.T, p *harness.Process, out string) {
	t.Helper()
	code, rep := finish(t, p, out)
	t.Logf("bots: exit %d, %d subscribers joined, %d stalls in %d subscribers, longest %.0f ms, %.1f%% loss",
		code, rep.Joined-rep.Publishers, rep.Stalls, rep.StalledSubscribers, rep.LongestStallMs, rep.LossPct)
	if code != 0 {
		t.Errorf("cascade bots exited %d:\n%s", code, p.Output())
	}
	bad := 0
	for _, b := range rep.Bots {
		if !b.Joined || b.Tracks < 2 || len(b.Stalls) > 0 || b.LongestGapMs >= float64(maxStall/time.Millisecond) {
			if bad++; bad <= 5 {
				t.Errorf("%s on %s: joined %v, %d tracks, longest gap %.0f ms, stalls %+v", b.Name, b.URL, b.Joined, b.Tracks, b.LongestGapMs, b.Stalls)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more subscribers like these (%d of %d)", bad-5, bad, len(rep.Bots))
	}
}

// clusterRooms is what the healing tests read of a node's /cluster?format=json.
type clusterRooms struct {
	Node  string `json:"node"`
	Nodes []struct {
		ID        string `json:"id"`
		UptimeSec int64  `json:"uptime_s"`
	} `json:"nodes"`
	Rooms []roomEntry `json:"rooms"`
}

type roomEntry struct {
	Name       string         `json:"name"`
	Producers  []producerTree `json:"producers"`
	Publishers []string       `json:"publishers"`
}

type producerTree struct {
	ID     string `json:"id"`
	Origin string `json:"origin"`
	Tree   []struct {
		Node   string `json:"node"`
		Parent string `json:"parent"`
	} `json:"tree"`
}

// roomViewsAgree requires, within agreeWithin, every node of nodes (live nodes serving
// participants of room) to have the room open and to report the same producers and the same
// publishers, neither empty (the room has a publisher). It fails t without stopping it, so
// that the media of the run is judged as well.
func roomViewsAgree(t *testing.T, c *faultCluster, nodes []int, room string) {
	t.Helper()
	deadline := time.Now().Add(agreeWithin)
	for {
		err := roomViewsDiffer(c, nodes, room)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("room views do not agree within %v: %v", agreeWithin, err)
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// roomViewsDiffer tells how the views of room on nodes differ (with every node's view), or nil
// when they agree.
func roomViewsDiffer(c *faultCluster, nodes []int, room string) error {
	views := map[string]bool{}
	var all []string
	var problem error
	for _, i := range nodes {
		var v clusterRooms
		if err := c.get(i, "/cluster?format=json", &v); err != nil {
			return err
		}
		at := slices.IndexFunc(v.Rooms, func(r roomEntry) bool { return r.Name == room })
		if at < 0 {
			all = append(all, fmt.Sprintf("n%d: room closed", i))
			problem = cmp.Or(problem, fmt.Errorf("n%d does not have room %s open", i, room))
			continue
		}
		r := v.Rooms[at]
		var producers []string
		for _, p := range r.Producers {
			producers = append(producers, p.ID)
		}
		sort.Strings(producers)
		publishers := slices.Clone(r.Publishers)
		sort.Strings(publishers)
		view := fmt.Sprintf("producers %v, publishers %v", producers, publishers)
		views[view] = true
		all = append(all, fmt.Sprintf("n%d: %s", i, view))
		if len(producers) == 0 || len(publishers) == 0 {
			problem = cmp.Or(problem, fmt.Errorf("n%d lists no producer or no publisher", i))
		}
	}
	if len(views) > 1 {
		problem = cmp.Or(problem, errors.New("the nodes differ"))
	}
	if problem != nil {
		return fmt.Errorf("%w; room %s: %s", problem, room, strings.Join(all, "; "))
	}
	return nil
}

// TestHealNATSFrozen: the NATS server freezes (SIGSTOP) for 30 s under a publisher on n0 and 30
// subscribers on n1 and n2, then resumes. No subscriber goes a second without media, and the
// nodes agree on the room within 5 s after.
func TestHealNATSFrozen(t *testing.T) {
	c := startFaultCluster(t)
	const outage = 30 * time.Second
	p, out := c.startBots(t, "bots", botsRun{room: "heal", pub: 0, on: []int{1, 2}, subs: healSubscribers,
		hold: 2*time.Second + outage + 8*time.Second, maxStall: maxStall})
	time.Sleep(2 * time.Second) // media flowing for a while before the fault
	c.nats.Stop()
	time.Sleep(outage)
	c.nats.Cont()
	roomViewsAgree(t, c, []int{0, 1, 2}, "heal")
	noStalls(t, p, out)
}

// TestHealNATSRestarted: the NATS server dies (SIGKILL) and comes back 10 s later on the same
// host with the same arguments, empty. No subscriber goes a second without media, and the
// nodes agree on the room within 5 s of its return.
func TestHealNATSRestarted(t *testing.T) {
	c := startFaultCluster(t)
	const outage = 10 * time.Second
	p, out := c.startBots(t, "bots", botsRun{room: "heal", pub: 0, on: []int{1, 2}, subs: healSubscribers,
		hold: 2*time.Second + outage + 8*time.Second, maxStall: maxStall})
	time.Sleep(2 * time.Second)
	c.nats.Kill()
	if _, err := c.nats.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	c.nats = c.natsHost.Start(t, "nats-server-again", harness.NATSServer(t), c.natsArgs...)
	roomViewsAgree(t, c, []int{0, 1, 2}, "heal")
	noStalls(t, p, out)
}

// TestHealRoutesCut: the nodes' embedded NATS servers form one cluster over routes; the route
// port is dropped (silently, nftables) on every node for 30 s while relay links and media stay
// open: each node is alone on its NATS island. No subscriber goes a second without media, and
// the nodes agree on the room within 5 s after the routes are back.
func TestHealRoutesCut(t *testing.T) {
	c := startFaultClusterWith(t, clusterOptions{embedded: true})
	const outage = 30 * time.Second
	p, out := c.startBots(t, "bots", botsRun{room: "heal", pub: 0, on: []int{1, 2}, subs: healSubscribers,
		hold: 2*time.Second + outage + 8*time.Second, maxStall: maxStall})
	time.Sleep(2 * time.Second)
	var heals []func()
	for _, h := range c.hosts {
		heals = append(heals, h.BlockPort("tcp", 6222))
	}
	time.Sleep(outage)
	for _, heal := range heals {
		heal()
	}
	roomViewsAgree(t, c, []int{0, 1, 2}, "heal")
	noStalls(t, p, out)
}

// trees returns the producers of room as node i sees them, with their relay trees, once the
// room has the two producers of a bots publisher.
func (c *faultCluster) trees(i int, room string) ([]producerTree, error) {
	var v clusterRooms
	if err := c.get(i, "/cluster?format=json", &v); err != nil {
		return nil, err
	}
	at := slices.IndexFunc(v.Rooms, func(r roomEntry) bool { return r.Name == room })
	if at < 0 || len(v.Rooms[at].Producers) != 2 {
		return nil, fmt.Errorf("n%d has rooms %+v, want %s with two producers", i, v.Rooms, room)
	}
	return v.Rooms[at].Producers, nil
}

// seesFresh tells whether node i lists node id with an uptime of at most up: the incarnation
// started since, not the last heartbeat of the one before.
func (c *faultCluster) seesFresh(i int, id string, up time.Duration) error {
	var v clusterRooms
	if err := c.get(i, "/cluster?format=json", &v); err != nil {
		return err
	}
	for _, n := range v.Nodes {
		if n.ID == id {
			if time.Duration(n.UptimeSec)*time.Second > up {
				return fmt.Errorf("n%d lists %s up for %d s: the incarnation killed %v ago", i, id, n.UptimeSec, up)
			}
			return nil
		}
	}
	return fmt.Errorf("n%d does not list %s", i, id)
}

// TestHealRestartSameID: edge n2 dies (SIGKILL) and comes straight back under the same id and
// flags, well within the heartbeat timeout, as a StatefulSet pod does. The subscribers on n1
// never stall; n0 and n1 list the new n2 within a few seconds; and n2 serves again: the
// subscribers of a new run there receive media relayed from n0.
func TestHealRestartSameID(t *testing.T) {
	c := startFaultCluster(t)
	// n2 serves subscribers too, so that n0 relays to it and n2 holds remote producers: state
	// the restart must not leave stale. Only n1's subscribers are judged.
	startA := time.Now()
	a, outA := c.startBots(t, "bots", botsRun{room: "restart", pub: 0, on: []int{1, 2}, subs: 10, hold: 30 * time.Second})
	c.participants(t, 1, 5)
	c.participants(t, 2, 5)
	// n0 relays to n1 and n2 directly (fan-out 3): n1 is not below n2, so that no stall at all
	// is the right judgement of its subscribers.
	harness.Eventually(t, 10*time.Second, func() error {
		trees, err := c.trees(0, "restart")
		if err != nil {
			return err
		}
		for _, pr := range trees {
			if len(pr.Tree) != 2 || pr.Tree[0].Parent != "n0" || pr.Tree[1].Parent != "n0" {
				return fmt.Errorf("the tree of %s is %+v, want n1 and n2 below n0", pr.ID, pr.Tree)
			}
		}
		return nil
	})
	// The incarnation being killed must have run longer than the new one can have when it is
	// checked, for the uptime to tell them apart.
	var old clusterRooms
	if err := c.get(2, "/cluster?format=json", &old); err != nil {
		t.Fatal(err)
	}
	if wait := 10*time.Second - time.Duration(old.Nodes[0].UptimeSec)*time.Second; wait > 0 {
		time.Sleep(wait)
	}
	time.Sleep(2 * time.Second) // media flowing for a while before the fault
	c.nodes[2].Kill()
	killed := time.Now()
	c.restart(t, 2)
	harness.Eventually(t, 5*time.Second, func() error {
		for _, i := range []int{0, 1} {
			if err := c.seesFresh(i, "n2", time.Since(killed)+time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	// The new n2 serves: a new run's subscribers there get a publisher's media from n0, in a
	// room of its own, so that its three subscribers are all n2 serves.
	b, outB := c.launch(t, "bots-on-n2", botsRun{room: "restart-again", pub: 0, on: []int{2}, subs: 3, hold: 5 * time.Second, maxStall: maxStall})
	harness.Eventually(t, 15*time.Second, func() error {
		var s struct {
			Participants int64 `json:"participants"`
		}
		if err := c.get(2, "/stats", &s); err != nil || s.Participants != 3 {
			return fmt.Errorf("n2 serves %d participants, want the 3 subscribers of the new run (%v)", s.Participants, err)
		}
		return nil
	})
	noStalls(t, b, outB)

	code, rep := finish(t, a, outA)
	if code != 0 {
		t.Errorf("the run through the restart exited %d:\n%s", code, a.Output())
	}
	judged := 0
	for _, s := range rep.Bots {
		if !strings.HasPrefix(s.URL, c.url(1)) {
			continue
		}
		judged++
		if len(s.Stalls) > 0 || s.LongestGapMs >= float64(maxStall/time.Millisecond) {
			t.Errorf("%s on n1: longest gap %.0f ms, stalls %+v (n2 was killed at about t=%.1f s)", s.Name, s.LongestGapMs, s.Stalls,
				killed.Sub(startA).Seconds())
		}
	}
	if judged != 5 {
		t.Errorf("%d subscribers of the run on n1, want 5", judged)
	}
}

// TestHealMidTreeKilled: with relay fan-out 1 the relay tree is a chain from n0 through n1,
// n2 and n3, in the order the subscribers joined; a node in the middle of it dies (SIGKILL).
// The orphaned nodes below it re-attach: their subscribers stall for no longer than the
// heartbeat timeout + 1 s, and recover; subscribers on nodes above it never stall.
func TestHealMidTreeKilled(t *testing.T) {
	const timeout = 3 * time.Second
	c := startFaultClusterWith(t, clusterOptions{nodes: 4, args: []string{"--relay-fanout", "1",
		"--heartbeat-interval", "1s", "--heartbeat-timeout", timeout.String()}})
	// One subscriber a third of a second: n1's first, then n2's, then n3's.
	p, out := c.startBots(t, "bots", botsRun{room: "tree", pub: 0, on: []int{1, 2, 3}, subs: 9, hold: 16 * time.Second, rate: 3})
	for i := 1; i < 4; i++ {
		c.participants(t, i, 3)
	}

	// The trees at the origin, once every edge carries every producer.
	var trees []producerTree
	harness.Eventually(t, 10*time.Second, func() (err error) {
		if trees, err = c.trees(0, "tree"); err != nil {
			return err
		}
		for _, pr := range trees {
			if len(pr.Tree) != 3 {
				return fmt.Errorf("the tree of %s is %+v, want n1, n2 and n3 in it", pr.ID, pr.Tree)
			}
		}
		return nil
	})
	children := map[string][]string{}
	for _, pr := range trees {
		t.Logf("tree of %s: %+v", pr.ID, pr.Tree)
		for _, e := range pr.Tree {
			if !slices.Contains(children[e.Parent], e.Node) {
				children[e.Parent] = append(children[e.Parent], e.Node)
			}
		}
	}
	below := func(id string) map[string]bool {
		sub := map[string]bool{}
		var walk func(string)
		walk = func(n string) {
			for _, k := range children[n] {
				if !sub[k] {
					sub[k] = true
					walk(k)
				}
			}
		}
		walk(id)
		return sub
	}
	// The victim: an edge with children, best the one with the fewest below it, which leaves
	// an edge above it to judge too.
	victim, orphans := -1, map[string]bool{}
	for i := 1; i < 4; i++ {
		sub := below(fmt.Sprintf("n%d", i))
		if len(sub) > 0 && (victim < 0 || len(sub) < len(orphans)) {
			victim, orphans = i, sub
		}
	}
	if victim < 0 {
		t.Fatalf("no node but the origin relays: trees %+v", trees)
	}
	t.Logf("killing n%d; orphaned: %v", victim, orphans)
	time.Sleep(2 * time.Second)
	c.nodes[victim].Kill()

	code, rep := finish(t, p, out)
	t.Logf("bots: exit %d, %d stalls in %d subscribers, longest %.0f ms", code, rep.Stalls, rep.StalledSubscribers, rep.LongestStallMs)
	bound := float64((timeout + time.Second) / time.Millisecond)
	judged := 0
	for _, b := range rep.Bots {
		node := -1
		for i := range c.hosts {
			if strings.HasPrefix(b.URL, c.url(i)) {
				node = i
			}
		}
		id := fmt.Sprintf("n%d", node)
		if len(b.Stalls) > 0 {
			t.Logf("%s on %s: stalls %+v", b.Name, id, b.Stalls)
		}
		switch {
		case node == victim:
			continue // stalled for good: its node is gone
		case orphans[id]:
			for _, s := range b.Stalls {
				if !s.Recovered || s.DurationMs > bound {
					t.Errorf("%s on orphaned %s: stalled %.0f ms (recovered %v), want at most %.0f ms and recovered", b.Name, id, s.DurationMs, s.Recovered, bound)
				}
			}
		default:
			if len(b.Stalls) > 0 {
				t.Errorf("%s on %s, above the killed n%d: stalls %+v", b.Name, id, victim, b.Stalls)
			}
		}
		if !b.Joined || b.Tracks < 2 {
			t.Errorf("%s on %s: joined %v, %d tracks", b.Name, id, b.Joined, b.Tracks)
		}
		judged++
	}
	if judged != 6 {
		t.Errorf("%d subscribers judged on the surviving edges, want 6", judged)
	}
}
