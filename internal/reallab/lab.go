package reallab

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// httpPort is every node's HTTP port (each host has its own ports).
const httpPort = 7880

// room is the scenario's room.
const room = "simreal"

// keys sign the bots' and the test's tokens; clusterSecret is the nodes'.
var (
	keys          = auth.Keys{Key: "reallab", Secret: "reallab-secret-with-enough-bytes-0123"}
	clusterSecret = "reallab-cluster-secret-0123456789abcdef"
)

// Cluster is a scenario's nodes running in a lab: a host per node and one for NATS (in the
// origin's region), each joined through a delay bridge with a delay to every other host of
// the scenario (the delay between their regions, or IntraDelay in one region), and a host
// for the bots with no delay to any.
type Cluster struct {
	s     Scenario
	bin   string
	hosts map[string]*harness.Host // by node id
	nodes map[string]*harness.Process
	bots  *harness.Host
}

// Start starts the scenario's cluster and waits until every node sees every other. It skips
// the test without root (fails it under CI=true), as harness.New does.
func Start(t testing.TB, s Scenario) *Cluster {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	lab := harness.New(t)
	c := &Cluster{s: s, bin: harness.Cascade(t), hosts: map[string]*harness.Host{}, nodes: map[string]*harness.Process{}}
	natsHost := lab.Host("nats", harness.WithDelay(0, 0))
	region := map[*harness.Host]string{natsHost: s.Nodes[0].Region}
	for _, n := range s.Nodes {
		h := lab.Host(n.ID, harness.WithDelay(0, 0))
		c.hosts[n.ID], region[h] = h, n.Region
	}
	c.bots = lab.Host("bots")
	for a, ra := range region {
		for b, rb := range region {
			if a != b && s.Delay(ra, rb) > 0 {
				a.SetDelayTo(b, s.Delay(ra, rb))
			}
		}
	}
	natsURL := "nats://" + net.JoinHostPort(natsHost.Addr().String(), "4222")
	natsHost.Start(t, "nats-server", harness.NATSServer(t), "-a", natsHost.Addr().String(), "-p", "4222")
	for _, n := range s.Nodes {
		h := c.hosts[n.ID]
		addr := h.Addr().String()
		c.nodes[n.ID] = h.Start(t, n.ID, c.bin, "node", "--node-id", n.ID, "--region", n.Region,
			"--http", fmt.Sprintf(":%d", httpPort), "--public-url", c.httpURL(n.ID), "--udp-port", "7882",
			"--relay", ":7881", "--public-ip", addr, "--workers", "1", "--nats", natsURL,
			"--relay-fanout", fmt.Sprint(s.Fanout), "--heartbeat-interval", s.Heartbeat.String(),
			"--heartbeat-timeout", s.timeout().String(), "--api-key", keys.Key, "--api-secret", keys.Secret,
			"--cluster-secret", clusterSecret, "--log-level", logLevel())
	}
	harness.Eventually(t, 30*time.Second, func() error {
		for id, p := range c.nodes {
			if code, err := p.Wait(0); err == nil {
				t.Fatalf("%s exited %d:\n%s", id, code, p.Output())
			}
			var v struct {
				Nodes []json.RawMessage `json:"nodes"`
			}
			if err := c.get(id, "/cluster?format=json", &v); err != nil {
				return err
			}
			if len(v.Nodes) != len(s.Nodes) {
				return fmt.Errorf("%s sees %d nodes", id, len(v.Nodes))
			}
		}
		return nil
	})
	return c
}

// httpURL is node id's HTTP URL.
func (c *Cluster) httpURL(id string) string {
	return "http://" + net.JoinHostPort(c.hosts[id].Addr().String(), fmt.Sprint(httpPort))
}

// wsURL is node id's signaling URL.
func (c *Cluster) wsURL(id string) string {
	return "ws://" + net.JoinHostPort(c.hosts[id].Addr().String(), fmt.Sprint(httpPort))
}

// get fetches path from node id into v, from the bots' host, with an admin token.
func (c *Cluster) get(id, path string, v any) error {
	tok, err := keys.Mint(auth.Grant{Admin: true}, time.Minute)
	if err != nil {
		return err
	}
	return c.bots.GetJSONAuth(c.httpURL(id)+path, tok, v)
}

// nodeAt is the node whose address url names ("" if none).
func (c *Cluster) nodeAt(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return ""
	}
	for id, h := range c.hosts {
		if pu.Hostname() == h.Addr().String() {
			return id
		}
	}
	return ""
}

// Run runs the scenario's bots (one publisher on the origin, of audio, and video with two
// tracks; the viewers one every JoinEvery, each asking its node with its region hint), reads
// the relay tree from the room API and each node's load from its /stats while they hold, and
// returns what it measured, with the bots' report.
func (c *Cluster) Run(t testing.TB) (Outcome, *bots.Report) {
	t.Helper()
	s := c.s
	var urls, regions []string
	for _, v := range s.Viewers {
		urls = append(urls, c.wsURL(v.Asks))
		regions = append(regions, v.Region)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	p := c.bots.Start(t, "bots", c.bin, "bots", "--publish-url", c.wsURL(s.Origin()), "--url", strings.Join(urls, ","),
		"--regions", strings.Join(regions, ","), "--room", room, "--publishers", "1", "--subscribers", fmt.Sprint(len(s.Viewers)),
		fmt.Sprintf("--video=%t", s.Tracks == 2), "--audio", "--rate", fmt.Sprint(float64(time.Second)/float64(s.JoinEvery)),
		"--duration", s.Hold.String(), "--max-stall", "2s", "--api-key", keys.Key, "--api-secret", keys.Secret,
		"--run-id", "r", "--quiet", "--json", report)

	// While the bots hold: every viewer in the room, the tree spanning every node with viewers
	// (a node knows its own parent; the room API gathers them), and the nodes' loads.
	var tree relay.Tree
	var load map[string]int64
	joinTime := time.Duration(len(s.Viewers))*s.JoinEvery + 30*time.Second
	harness.Eventually(t, joinTime, func() error {
		if code, err := p.Wait(0); err == nil {
			t.Fatalf("bots exited %d before the tree was read:\n%s", code, p.Output())
		}
		var d proto.APIRoomDetail
		if err := c.get(s.Origin(), "/api/rooms/"+room, &d); err != nil {
			return err
		}
		if d.Participants != 1+len(s.Viewers) || len(d.ProducerList) != s.Tracks {
			return fmt.Errorf("%d participants, %d producers", d.Participants, len(d.ProducerList))
		}
		// Every track's tree: they must be one and the same.
		for i, pr := range d.ProducerList {
			tr := relay.Tree{}
			for _, e := range pr.Tree {
				if e.Parent != "" {
					tr[e.Node] = e.Parent
				}
			}
			if i == 0 {
				tree = tr
			} else if !maps.Equal(tr, tree) {
				return fmt.Errorf("producer %s's tree %v, producer %s's %v", pr.ID, tr, d.ProducerList[0].ID, tree)
			}
		}
		if carriers := len(d.Nodes); len(tree) != carriers-1 {
			return fmt.Errorf("tree %v, %d nodes carry the room", tree, carriers)
		}
		// Each node's load: every viewer's consumers and every relay child's, once all exist.
		load = map[string]int64{}
		var sum int64
		for _, n := range s.Nodes {
			var st struct {
				Consumers int64 `json:"consumers"`
			}
			if err := c.get(n.ID, "/stats", &st); err != nil {
				return err
			}
			load[n.ID] = st.Consumers
			sum += st.Consumers
		}
		if want := int64(s.Tracks * (len(s.Viewers) + len(tree))); sum != want {
			return fmt.Errorf("%d consumers over the nodes, want %d", sum, want)
		}
		return nil
	})
	if code, err := p.Wait(time.Minute); err != nil || code != 0 {
		t.Fatalf("bots: exit %d, %v:\n%s", code, err, p.Output())
	}
	rep := readReport(t, report)
	if !rep.OK() {
		t.Fatalf("bots run not ok: %q, errors %v", rep.Problems(), rep.Errors)
	}
	out := c.measure(t, rep, tree)
	out.Consumers = load
	return out, rep
}

// measure turns the bots' report and the tree into an outcome: each viewer's node (by its
// name, sub-ROOM-RUNID-N, in join order), and each node's server path: the median of its
// viewers' median latencies less the origin's.
func (c *Cluster) measure(t testing.TB, rep *bots.Report, tree relay.Tree) Outcome {
	t.Helper()
	out := Outcome{Placement: make([]string, len(c.s.Viewers)), Tree: tree, Crossings: crossings(c.s, tree), PathMs: map[string]float64{}}
	lat := map[string][]float64{}
	for _, b := range rep.Bots {
		var i int
		if _, err := fmt.Sscanf(b.Name[strings.LastIndex(b.Name, "-")+1:], "%d", &i); err != nil || i >= len(out.Placement) {
			t.Fatalf("bot %q: not a viewer of the scenario", b.Name)
		}
		id := c.nodeAt(b.URL)
		out.Placement[i] = id
		lat[id] = append(lat[id], b.LatencyMs.P50)
	}
	base, ok := lat[c.s.Origin()]
	if !ok {
		t.Fatalf("no viewer on the origin %s: no baseline for the server paths", c.s.Origin())
	}
	for id, l := range lat {
		out.PathMs[id] = median(l) - median(base)
	}
	out.finish(c.s)
	return out
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func readReport(t testing.TB, path string) *bots.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep bots.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// logLevel is the nodes' log level: REALLAB_LOG, or warn.
func logLevel() string {
	if l := os.Getenv("REALLAB_LOG"); l != "" {
		return l
	}
	return "warn"
}
