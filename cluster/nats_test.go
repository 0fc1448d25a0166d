package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func checkFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	harness.Eventually(t, timeout, f)
}

// member starts a node on NATS no, with its relay, joined to the cluster at a 50 ms heartbeat.
func member(t *testing.T, o node.Options, no cluster.NATSOptions) (*node.Node, *cluster.NATS, *cluster.Cluster) {
	t.Helper()
	o.LoopbackOnly, o.Workers = true, 1
	n, err := node.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	no.Name = n.ID()
	nc, err := cluster.StartNATS(no)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pipes, err := relay.Open(relay.Options{Self: n.ID(), Region: o.Region, Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	c, err := cluster.New(n, pipes, nc.Bus(), cluster.Options{Heartbeat: 50 * time.Millisecond, Secrets: testSecrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return n, nc, c
}

// TestEmbeddedNATSAndHeartbeat: with no NATS URL the node starts its own server (JetStream on)
// and announces itself on it, in an envelope carrying its incarnation.
func TestEmbeddedNATSAndHeartbeat(t *testing.T) {
	_, ns, c := member(t, node.Options{ID: "n1", Region: "eu"}, cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets})
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(cluster.NATSClientCredentials(natsSecrets)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("JetStream is not enabled on the embedded server: %v", err)
	}
	sub, err := nc.SubscribeSync(cluster.SubjectHeartbeat + ".>")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e, err := cluster.Open(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	var s node.Stats
	if err := json.Unmarshal(e.Body, &s); err != nil {
		t.Fatal(err)
	}
	if e.Node != "n1" || e.Inc != c.Incarnation() || s.ID != "n1" || s.Region != "eu" || s.RelayAddr == "" || msg.Subject != cluster.HeartbeatSubject("eu", "n1") {
		t.Fatalf("heartbeat %s: %+v %+v", msg.Subject, e, s)
	}
	if !ns.Ready() {
		t.Fatal("nats not ready")
	}
	if _, err := cluster.StartNATS(cluster.NATSOptions{Listen: "no-port"}); err == nil {
		t.Fatal("bad listen address accepted")
	}
}

// TestExternalNATSReconnect: with a URL the node uses an external server and keeps reconnecting
// while it is down; heartbeats resume when it is back.
func TestExternalNATSReconnect(t *testing.T) {
	port := harness.FreePort(t)
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true}
	s := startNATS(t, opts)
	_, ns, _ := member(t, node.Options{ID: "ext"}, cluster.NATSOptions{URL: s.ClientURL()})
	if ns.ClientURL() != "" {
		t.Fatal("started an embedded server despite the URL")
	}
	s.Shutdown()
	s.WaitForShutdown()
	checkFor(t, 5*time.Second, func() error {
		if ns.Connected() {
			return fmt.Errorf("still connected without NATS")
		}
		return nil
	})
	if !ns.Ready() {
		t.Fatal("a node that joined the cluster is not ready while NATS is away (it still serves its rooms)")
	}
	s = startNATS(t, opts)
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync(cluster.HeartbeatSubject("", "ext"))
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no heartbeat after NATS came back: %v", err)
	}
	if !ns.Ready() || !ns.Connected() {
		t.Fatal("not ready after reconnect")
	}
}

// TestNATSGateways: two nodes whose embedded servers are linked by a gateway (two regions of a
// supercluster) see each other.
func TestNATSGateways(t *testing.T) {
	_, eu, ceu := member(t, node.Options{ID: "eu1", Region: "eu"}, cluster.NATSOptions{Listen: "127.0.0.1:0", ClusterName: "eu", Gateway: "127.0.0.1:0",
		InsecureGW: true, Secrets: natsSecrets})
	_, _, cus := member(t, node.Options{ID: "us1", Region: "us"}, cluster.NATSOptions{Listen: "127.0.0.1:0", ClusterName: "us", Gateway: "127.0.0.1:0",
		InsecureGW: true, Secrets: natsSecrets, Gateways: map[string][]string{"eu": {eu.GatewayURL()}}})
	checkFor(t, 10*time.Second, func() error {
		if len(ceu.Peers()) != 1 || len(cus.Peers()) != 1 {
			return fmt.Errorf("no heartbeat across the gateway: %v %v", ceu.Peers(), cus.Peers())
		}
		return nil
	})
	if _, err := cluster.GatewayOptions("x", "127.0.0.1:7222", map[string][]string{"y": {"not a url"}}); err == nil {
		t.Fatal("bad gateway URL accepted")
	}
	if _, err := cluster.GatewayOptions("x", "", map[string][]string{"y": {"nats://h:1"}}); err == nil {
		t.Fatal("gateways without a listen address accepted")
	}
}

func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	return s
}

// TestJoinsWhileNATSAway: with NATS gone, a node keeps serving the rooms open on it and
// refuses, at once, joins of rooms that may live elsewhere; when NATS is back it serves them
// again and re-syncs (nats.go's reconnect is a trouble signal).
func TestJoinsWhileNATSAway(t *testing.T) {
	port := harness.FreePort(t)
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true}
	s := startNATS(t, opts)
	n1, ns1, c1 := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{URL: s.ClientURL()})
	_, _, c2 := member(t, node.Options{ID: "n2"}, cluster.NATSOptions{URL: s.ClientURL()})
	var troubles atomic.Int32
	ns1.OnTrouble(func(string) { troubles.Add(1) })
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 1 || len(c2.Peers()) != 1 || !c1.Available() {
			return fmt.Errorf("peers %v %v, available %v", c1.Peers(), c2.Peers(), c1.Available())
		}
		return nil
	})
	if _, err := n1.Join("open", "alice", node.Grant{Subscribe: true}, false, quiet{}); err != nil {
		t.Fatal(err)
	}
	placer := cluster.NewPlacer(c1)
	s.Shutdown()
	s.WaitForShutdown()
	checkFor(t, 2*time.Second, func() error {
		if c1.Available() || placer.Available("elsewhere") {
			return fmt.Errorf("n1 still thinks it reaches the cluster")
		}
		return nil
	})
	if !placer.Available("open") {
		t.Fatal("a room open here refused while NATS is away")
	}
	if len(c1.Peers()) != 1 {
		t.Fatalf("n1 dropped its peers while it hears nobody: %v", c1.Peers())
	}
	s = startNATS(t, opts)
	defer s.Shutdown()
	checkFor(t, 10*time.Second, func() error {
		if !placer.Available("elsewhere") || troubles.Load() == 0 {
			return fmt.Errorf("available %v, troubles %d", placer.Available("elsewhere"), troubles.Load())
		}
		return nil
	})
	if _, _, refused := placer.Decisions(); refused == 0 {
		t.Fatal("the refusal was not counted")
	}
}

// TestLongRoomName: a room's NATS subjects have a fixed length whatever its name: a name of
// several KiB (over NATS's 4 KiB control line, which once closed the node's connection) syncs
// and carries events between nodes like any other, and both nodes stay connected.
func TestLongRoomName(t *testing.T) {
	n1, ns1, c1 := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets})
	n2, ns2, c2 := member(t, node.Options{ID: "n2"}, cluster.NATSOptions{URL: ns1.ClientURL(), Secrets: natsSecrets})
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 1 || len(c2.Peers()) != 1 {
			return fmt.Errorf("peers %v %v", c1.Peers(), c2.Peers())
		}
		return nil
	})
	room := strings.Repeat("a.b* >", 1000) // 6 KB, with every character a subject cannot hold
	alice, err := n1.Join(room, "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n2.Join(room, "bob", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if got := c1.Rooms().Participants(room); got[bob.ID()] != "n2" {
			return fmt.Errorf("n1 sees %v", got)
		}
		if got := c2.Rooms().Participants(room); got[alice.ID()] != "n1" {
			return fmt.Errorf("n2 sees %v", got)
		}
		return nil
	})
	if !ns1.Connected() || !ns2.Connected() {
		t.Fatal("a node lost its NATS connection")
	}
}
