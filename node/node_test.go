package node_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
)

func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	harness.Eventually(t, timeout, f)
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []node.Options{
		{UDPPort: -1},
		{UDPPort: 65535, Workers: 4},
		{PublicIP: "not-an-ip"},
		{UDPHost: "example.com"},
	} {
		_, err := node.New(o)
		if !errors.Is(err, node.ErrBadOptions) {
			t.Errorf("%+v: got %v, want ErrBadOptions", o, err)
		}
	}
}

// TestDrainNotReady: a draining node is not ready and refuses joins. (Its NATS part,
// TestEmbeddedNATSAndHeartbeat, moved to package cluster with the embedded server.)
func TestDrainNotReady(t *testing.T) {
	n, err := node.New(node.Options{ID: "n1", Region: "eu", LoopbackOnly: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if s := n.Stats(); s.ID != "n1" || s.Region != "eu" || len(s.Workers) != 2 {
		t.Fatalf("stats %+v", s)
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

// TestFixedUDPPorts: worker i listens on udp-port + i.
func TestFixedUDPPorts(t *testing.T) {
	// A free TCP port is very likely a free UDP port too; try a few in case the next one is taken.
	var n *node.Node
	var base int
	var err error
	for try := 0; try < 5 && n == nil; try++ {
		base = harness.FreePort(t)
		n, err = node.New(node.Options{LoopbackOnly: true, Workers: 2, UDPPort: base})
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
	if _, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, UDPPort: base}); err == nil {
		t.Fatal("second node on a busy port started")
	}
}
