package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// newCluster starts n nodes whose embedded NATS servers form one NATS cluster over routes (the
// first node's server is the seed), each joined to the Cascade cluster, and waits until every
// node sees every other.
func newCluster(t *testing.T, n, fanout int, regions ...string) []*env {
	t.Helper()
	// The default heartbeat (1 s; a peer is gone after three missed): at 100 and 300 ms a
	// loaded 2-core machine running the race detector starved heartbeats past the timeout,
	// and a peer once declared gone does not come back (issue: outages and restarts healed).
	return startClustered(t, n, fanout, func(i int, co *clusterOpts) *env {
		o := node.Options{ID: fmt.Sprintf("n%d", i), Workers: 1}
		if i < len(regions) {
			o.Region = regions[i]
		}
		return startNode(t, o, co)
	})
}

// TestClusterPublisherOnASeenOnBAndC: a publisher on one node reaches subscribers on two
// others through relays; each pair of nodes uses one link.
func TestClusterPublisherOnASeenOnBAndC(t *testing.T) {
	envs := newCluster(t, 3, 3)
	a, b, c := envs[0], envs[1], envs[2]
	pub := a.join("r", "pub", true, false)
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track, newSource(t, webrtc.MimeTypeOpus, "a", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	var subs []*peer
	for i := 0; i < 3; i++ {
		subs = append(subs, b.join("r", fmt.Sprint("b", i), false, true), c.join("r", fmt.Sprint("c", i), false, true))
	}
	for _, s := range subs {
		waitPackets(t, s, producerIDs(res)...)
	}
	// Everyone sees the same room: 7 participants on every node.
	for _, e := range envs {
		if n := len(e.node.Room("r").Participants()); n != 7 {
			t.Fatalf("%s sees %d participants, want 7", e.node.ID(), n)
		}
	}
	// One link per used pair (a-b, a-c), and the origin relays each producer once per edge.
	if got := a.view.View().Links; len(got) != 2 {
		t.Fatalf("origin links %v", got)
	}
	if got := a.metric(`cascade_relay_pipes{direction="out"}`); got != 4 {
		t.Fatalf("origin pipes out %v, want 4 (2 producers x 2 edges)", got)
	}
	if got := b.metric(`cascade_relay_packets_total{direction="in"}`); got == 0 {
		t.Fatal("edge b relayed nothing in")
	}

	// The last subscriber on c leaves: c is unpiped.
	for _, s := range subs {
		if strings.HasPrefix(s.Join.Participant.Identity, "c") {
			_ = s.Close()
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if got := a.metric(`cascade_relay_pipes{direction="out"}`); got != 2 {
			return fmt.Errorf("origin pipes out %v after c emptied, want 2", got)
		}
		return nil
	})
	// The publisher leaves: the producers are gone everywhere.
	_ = pub.Close()
	checkFor(t, 5*time.Second, func() error {
		for _, e := range envs[1:] {
			if r := e.node.Room("r"); r != nil && len(r.Producers()) != 0 {
				return fmt.Errorf("%s still has producers %v", e.node.ID(), r.Producers())
			}
		}
		return nil
	})
}

// TestClusterChatAndData: application messages and data-channel messages cross nodes.
func TestClusterChatAndData(t *testing.T) {
	envs := newCluster(t, 2, 3)
	x := envs[0].join("r", "x", true, true)
	y := envs[1].join("r", "y", true, true)
	checkFor(t, 5*time.Second, func() error {
		if !x.hasNote("participantJoined", `"identity":"y"`) {
			return fmt.Errorf("x did not see y join")
		}
		return nil
	})
	if err := y.SendMessage(context.Background(), map[string]string{"text": "across"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if !x.hasNote("message", `"text":"across"`) {
			return fmt.Errorf("chat did not cross")
		}
		if !x.DataOpen() {
			return fmt.Errorf("data channel not open")
		}
		_ = x.SendData([]byte("over the relay"))
		y.mu.Lock()
		defer y.mu.Unlock()
		for _, d := range y.data {
			if string(d) == "over the relay" {
				return nil
			}
		}
		return fmt.Errorf("data did not cross")
	})
}

// TestClusterTreeFanout: with K = 2 over five nodes, the origin relays to at most two nodes and
// the others attach to nodes that already carry the producer; every subscriber receives.
func TestClusterTreeFanout(t *testing.T) {
	envs := newCluster(t, 5, 2)
	_, res := publishVideo(t, envs[0], "r", "pub", false)
	id := res.Producers[0].ID
	var subs []*peer
	for i, e := range envs[1:] {
		subs = append(subs, e.join("r", fmt.Sprint("s", i), false, true))
		waitPackets(t, subs[len(subs)-1], id) // edges join one after another, as viewers do
	}
	if got := envs[0].metric(`cascade_relay_pipes{direction="out"}`); got > 2 {
		t.Fatalf("origin relays to %v nodes, K = 2", got)
	}
	// The tree: four edges, every parent with at most two children.
	checkFor(t, 5*time.Second, func() error {
		var tree []cluster.Edge
		for _, p := range envs[0].view.View().Rooms[0].Producers {
			if p.ID == id {
				tree = p.Tree
			}
		}
		children := map[string]int{}
		for _, e := range tree {
			children[e.Parent]++
		}
		if len(tree) != 4 {
			return fmt.Errorf("tree %v", tree)
		}
		for p, n := range children {
			if n > 2 {
				return fmt.Errorf("%s has %d children: %v", p, n, tree)
			}
		}
		return nil
	})
	for _, s := range subs {
		before := s.received(id)
		checkFor(t, 5*time.Second, func() error {
			if s.received(id) < before+10 {
				return fmt.Errorf("subscriber stalled")
			}
			return nil
		})
	}
}

// TestClusterRegions: media crosses the region boundary once: the second node of a region
// attaches to the first, not to the origin in the other region.
func TestClusterRegions(t *testing.T) {
	envs := newCluster(t, 3, 3, "eu", "us", "us")
	_, res := publishVideo(t, envs[0], "r", "pub", false)
	id := res.Producers[0].ID
	waitPackets(t, envs[1].join("r", "us1", false, true), id)
	waitPackets(t, envs[2].join("r", "us2", false, true), id)
	var tree []cluster.Edge
	for _, p := range envs[2].view.View().Rooms[0].Producers {
		if p.ID == id {
			tree = p.Tree
		}
	}
	want := map[string]string{"n1": "n0", "n2": "n1"}
	for _, e := range tree {
		if want[e.Node] != e.Parent {
			t.Fatalf("tree %v, want n1<-n0 and n2<-n1", tree)
		}
	}
	if got := envs[0].metric(`cascade_relay_pipes{direction="out"}`); got != 1 {
		t.Fatalf("origin relays across the region boundary %v times, want 1", got)
	}
}

// TestClusterForgedRelayPacketDropped: a datagram to a node's relay port from a stranger is
// dropped and counted, and media keeps flowing. The parent's own packets on the new pipe are
// never counted as a stranger's, even those that beat its answer to the edge.
func TestClusterForgedRelayPacketDropped(t *testing.T) {
	envs := newCluster(t, 2, 3)
	_, res := publishVideo(t, envs[0], "r", "pub", false)
	sub := envs[1].join("r", "sub", false, true)
	waitPackets(t, sub, res.Producers[0].ID)
	const unknown = `cascade_relay_dropped_total{reason="unknown_source"}`
	before := envs[1].metric(unknown)
	if before != 0 {
		t.Fatalf("the edge counted %v of its parent's packets as a stranger's", before)
	}
	conn, err := net.Dial("udp4", envs[1].pipes.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := []byte{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 42, 'e', 'v', 'i', 'l'}
	for i := 0; i < 5; i++ {
		if _, err := conn.Write(forged); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if got := envs[1].metric(unknown); got != before+5 {
			return fmt.Errorf("dropped %v, want %v", got, before+5)
		}
		return nil
	})
	received := sub.received(res.Producers[0].ID)
	checkFor(t, 5*time.Second, func() error {
		if sub.received(res.Producers[0].ID) < received+10 {
			return fmt.Errorf("media stalled")
		}
		return nil
	})
}

// TestClusterNewPipesDropNothing: the parent of a new pipe sends as soon as it has the request,
// before its answer reaches the edge; those first packets are neither taken for a stranger's
// nor failed nor left without a pipe. Every node publishes and every node subscribes to all,
// so each pair of nodes sets up a link with its first pipe and then more pipes on it; once
// media flows everywhere, no node has dropped a relay datagram.
func TestClusterNewPipesDropNothing(t *testing.T) {
	envs := newCluster(t, 3, 3)
	var ids []string
	for i, e := range envs {
		_, res := publishVideo(t, e, "r", fmt.Sprint("pub", i), false)
		ids = append(ids, res.Producers[0].ID)
	}
	for i, e := range envs {
		waitPackets(t, e.join("r", fmt.Sprint("sub", i), false, true), ids...)
	}
	for _, e := range envs {
		for _, reason := range []string{"unknown_source", "auth", "malformed", "replay", "key", "unknown_ssrc"} {
			if got := e.metric(`cascade_relay_dropped_total{reason="` + reason + `"}`); got != 0 {
				t.Errorf("%s dropped %v relay datagrams (%s) of new pipes", e.node.ID(), got, reason)
			}
		}
	}
}

// TestClusterNodeKilled: when the origin dies, the other nodes drop its participants and
// producers and tell their clients; the survivors keep working together.
func TestClusterNodeKilled(t *testing.T) {
	envs := newCluster(t, 3, 3)
	pub, res := publishVideo(t, envs[2], "r", "pub", false)
	sub := envs[1].join("r", "sub", false, true)
	waitPackets(t, sub, res.Producers[0].ID)
	// Kill n2 (not the NATS seed): no leave, no goodbye.
	envs[2].srv.Close()
	envs[2].leave()
	envs[2].node.Close()
	// They leave once the resume grace is over (nobody resumed them).
	checkFor(t, cluster.DefaultResumeGrace+10*time.Second, func() error {
		if !sub.hasNote("producerRemoved", res.Producers[0].ID) || !sub.hasNote("participantLeft", pub.Join.Participant.ID) {
			return fmt.Errorf("subscriber not told")
		}
		if got := len(envs[1].cluster.Peers()); got != 1 {
			return fmt.Errorf("n1 sees %d peers", got)
		}
		if got := envs[1].metric(`cascade_relay_pipes{direction="in"}`); got != 0 {
			return fmt.Errorf("n1 still has %v pipes in", got)
		}
		return nil
	})
	// The cluster view shows two nodes.
	checkFor(t, 10*time.Second, func() error {
		var v cluster.View
		if err := json.Unmarshal([]byte(scrape(t, envs[0].http.URL+"/cluster?format=json")), &v); err != nil {
			return err
		}
		if len(v.Nodes) != 2 {
			return fmt.Errorf("cluster view has %d nodes", len(v.Nodes))
		}
		return nil
	})
}

// TestClusterPlacement: a client reaching a node of the wrong region, or a draining node, is
// sent to a better one, and the Go client follows.
func TestClusterPlacement(t *testing.T) {
	envs := newCluster(t, 2, 3, "eu", "us")
	c, err := client.Dial(context.Background(), envs[0].ws, client.Options{Token: envs[0].token("r", "yank", false, true),
		LoopbackOnly: true, Region: "us"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := envs[1].node.Room("r"); r == nil || len(r.Participants()) != 1 {
		t.Fatal("the us client was not placed on the us node")
	}
	if envs[0].node.Room("r") != nil {
		t.Fatal("the eu node kept the us client")
	}
	// A draining node sends newcomers away, whatever their region. The admin call drains.
	req, _ := http.NewRequest(http.MethodPost, envs[1].http.URL+"/admin/drain", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("drain without a token: %v %v", resp, err)
	}
	req.Header.Set("Authorization", "Bearer "+testKeys.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("drain with the API secret as the bearer (the old scheme): %v %v", resp, err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken(t))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain: %v %v", resp, err)
	}
	if resp, err := http.Get(envs[1].http.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %v %v", resp, err)
	}
	checkFor(t, 5*time.Second, func() error {
		for _, p := range envs[0].cluster.Peers() {
			if p.ID == "n1" && !p.Draining {
				return fmt.Errorf("n0 does not see n1 draining yet")
			}
		}
		return nil
	})
	d, err := client.Dial(context.Background(), envs[1].ws, client.Options{Token: envs[1].token("r", "late", false, true), LoopbackOnly: true, Region: "us"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if r := envs[0].node.Room("r"); r == nil || len(r.Participants()) != 2 { // late, and yank seen remotely
		t.Fatalf("the newcomer was not placed on n0, or n0 did not learn the room from n1")
	}
	if got := envs[1].metric(`cascade_placement_decisions_total{result="redirect"}`); got != 1 {
		t.Fatalf("n1 redirected %v joins, want 1", got)
	}
}

// TestClusterFeedbackAcrossHops: keyframe requests from subscribers on an edge reach the
// publisher on the origin, collapsed per hop; NACKs are answered at the edge from its own
// packet cache.
func TestClusterFeedbackAcrossHops(t *testing.T) {
	envs := newCluster(t, 2, 3)
	pub, res := publishVideo(t, envs[0], "r", "pub", false)
	id := res.Producers[0].ID
	var subs []*peer
	for i := 0; i < 3; i++ {
		s := envs[1].join("r", fmt.Sprint("s", i), false, true)
		waitPackets(t, s, id)
		subs = append(subs, s)
	}
	time.Sleep(600 * time.Millisecond)
	before := pub.plis.Load()
	sendPLIs(t, subs, id, 5)
	checkFor(t, 5*time.Second, func() error {
		if got := pub.plis.Load() - before; got != 1 {
			return fmt.Errorf("publisher got %d keyframe requests for 15 PLIs on the edge, want 1", got)
		}
		return nil
	})
	// A NACK on the edge is answered there: the origin retransmits nothing.
	s := subs[0]
	s.mu.Lock()
	ssrc, last := s.ssrc[id], s.lastSeq[id]
	s.mu.Unlock()
	if err := s.Recv().WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: last - 3}}}}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if got := envs[1].metric("cascade_nack_retransmits_total"); got != 1 {
			return fmt.Errorf("edge retransmitted %v", got)
		}
		return nil
	})
	if got := envs[0].metric("cascade_nack_retransmits_total"); got != 0 {
		t.Fatalf("origin retransmitted %v", got)
	}
}

// TestClusterSameIdentityElsewhere: a client that reconnects to another node replaces its old
// session there.
func TestClusterSameIdentityElsewhere(t *testing.T) {
	envs := newCluster(t, 2, 3)
	old := envs[0].join("r", "alice", true, true)
	envs[1].join("r", "alice", true, true)
	select {
	case <-old.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the old session on the other node was not closed")
	}
	if !old.hasNote("closed", `"reason":"replaced"`) {
		t.Fatal("the old session was not told why")
	}
	checkFor(t, 5*time.Second, func() error {
		if n := len(envs[1].node.Room("r").Participants()); n != 1 {
			return fmt.Errorf("%d participants on n1, want 1", n)
		}
		return nil
	})
}
