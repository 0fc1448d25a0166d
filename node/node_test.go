package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal(err)
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []node.Options{
		{UDPPort: -1},
		{UDPPort: 65535, Workers: 4},
		{PublicIP: "not-an-ip"},
		{UDPHost: "example.com"},
		{NATSListen: "no-port"},
	} {
		_, err := node.New(o)
		if !errors.Is(err, node.ErrBadOptions) {
			t.Errorf("%+v: got %v, want ErrBadOptions", o, err)
		}
	}
}

// TestEmbeddedNATSAndHeartbeat: a node with no NATS URL starts its own server (JetStream on)
// and announces itself on it.
func TestEmbeddedNATSAndHeartbeat(t *testing.T) {
	n, err := node.New(node.Options{ID: "n1", Region: "eu", LoopbackOnly: true, NATSListen: "127.0.0.1:0",
		Workers: 2, Heartbeat: 50 * time.Millisecond, NATSStoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	nc, err := nats.Connect(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.JetStream(); err != nil {
		t.Fatal(err)
	}
	js, _ := nc.JetStream()
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("JetStream is not enabled on the embedded server: %v", err)
	}
	sub, err := nc.SubscribeSync(node.SubjectHeartbeat + ".>")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var s node.Stats
	if err := json.Unmarshal(msg.Data, &s); err != nil {
		t.Fatal(err)
	}
	if s.ID != "n1" || s.Region != "eu" || len(s.Workers) != 2 || msg.Subject != node.SubjectHeartbeat+".n1" {
		t.Fatalf("heartbeat %s: %+v", msg.Subject, s)
	}
	if !n.Ready() {
		t.Fatal("node not ready")
	}
	n.Drain()
	if n.Ready() {
		t.Fatal("draining node still ready")
	}
	if _, err := n.Join("r", "x", node.Grant{}, false, nil); !errors.Is(err, node.ErrDraining) {
		t.Fatalf("join while draining: %v", err)
	}
}

// TestExternalNATSReconnect: with --nats the node uses an external server and keeps
// reconnecting while it is down; heartbeats resume when it is back.
func TestExternalNATSReconnect(t *testing.T) {
	port := freePort(t)
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true}
	s := startNATS(t, opts)
	n, err := node.New(node.Options{ID: "ext", LoopbackOnly: true, Workers: 1, NATSURL: s.ClientURL(), Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.NATSURL() != "" {
		t.Fatal("node started an embedded server despite --nats")
	}
	s.Shutdown()
	s.WaitForShutdown()
	checkFor(t, 5*time.Second, func() error {
		if n.Ready() {
			return fmt.Errorf("node still ready without NATS")
		}
		return nil
	})
	s = startNATS(t, opts)
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync(node.SubjectHeartbeat + ".ext")
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no heartbeat after NATS came back: %v", err)
	}
	if !n.Ready() {
		t.Fatal("node not ready after reconnect")
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFixedUDPPorts: worker i listens on udp-port + i.
func TestFixedUDPPorts(t *testing.T) {
	// A free TCP port is very likely a free UDP port too; try a few in case the next one is taken.
	var n *node.Node
	var base int
	var err error
	for try := 0; try < 5 && n == nil; try++ {
		base = freePort(t)
		n, err = node.New(node.Options{LoopbackOnly: true, Workers: 2, UDPPort: base, NATSListen: "127.0.0.1:0", NATSStoreDir: t.TempDir()})
	}
	if err != nil {
		t.Fatalf("no two free UDP ports in five tries: %v", err)
	}
	defer n.Close()
	for i := 0; i < 2; i++ {
		if got := n.WorkerAddr(i).(*net.UDPAddr).Port; got != base+i {
			t.Fatalf("worker %d on port %d, want %d", i, got, base+i)
		}
	}
	// A second node on the same ports fails with a clear error instead of sharing them.
	if _, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, UDPPort: base, NATSListen: "127.0.0.1:0", NATSStoreDir: t.TempDir()}); err == nil {
		t.Fatal("second node on a busy port started")
	}
}

// TestNATSGateways: two nodes whose embedded servers are linked by a gateway (two regions of a
// supercluster) hear each other's heartbeats.
func TestNATSGateways(t *testing.T) {
	eu, err := node.New(node.Options{ID: "eu1", Region: "eu", LoopbackOnly: true, Workers: 1, NATSListen: "127.0.0.1:0",
		NATSClusterName: "eu", NATSGateway: "127.0.0.1:0", Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eu.Close()
	us, err := node.New(node.Options{ID: "us1", Region: "us", LoopbackOnly: true, Workers: 1, NATSListen: "127.0.0.1:0",
		NATSClusterName: "us", NATSGateway: "127.0.0.1:0", Heartbeat: 50 * time.Millisecond,
		NATSGateways: map[string][]string{"eu": {eu.NATSGatewayURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	nc, err := nats.Connect(eu.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync(node.SubjectHeartbeat + ".us1")
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no heartbeat across the gateway: %v", err)
	}
	if _, err := node.GatewayOptions("x", "127.0.0.1:7222", map[string][]string{"y": {"not a url"}}); err == nil {
		t.Fatal("bad gateway URL accepted")
	}
	if _, err := node.GatewayOptions("x", "", map[string][]string{"y": {"nats://h:1"}}); err == nil {
		t.Fatal("gateways without a listen address accepted")
	}
}
