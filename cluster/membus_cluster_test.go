package cluster_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// testSecrets is the cluster secret every node of a test cluster shares.
var testSecrets = cluster.Secrets{"cascade-test-cluster-secret-0123456789"}

type quiet struct{}

func (quiet) Notify(string, any) {}

// memMember starts a node with its relay, joined to the cluster on net at a 50 ms heartbeat.
func memMember(t testing.TB, net *cluster.MemNet, id string) (*node.Node, *cluster.MemBus, *cluster.Cluster) {
	t.Helper()
	return memMemberBeat(t, net, id, 50*time.Millisecond)
}

// memMemberBeat is memMember at heartbeat interval hb, with a resume grace of testGrace.
func memMemberBeat(t testing.TB, net *cluster.MemNet, id string, hb time.Duration) (*node.Node, *cluster.MemBus, *cluster.Cluster) {
	t.Helper()
	n, bus, c, _ := memMemberWith(t, net, id, cluster.Options{Heartbeat: hb, ResumeGrace: testGrace}, 0)
	return n, bus, c
}

// testGrace is the resume grace of the test clusters: a node that leaves is gone from its
// peers' rooms soon after the heartbeat timeout (no session resumes in these tests).
const testGrace = 200 * time.Millisecond

// memMemberWith is memMember with options o (its secrets are the test cluster's) and relay
// fan-out fanout (0: the default), and its relay.
func memMemberWith(t testing.TB, net *cluster.MemNet, id string, o cluster.Options, fanout int) (*node.Node, *cluster.MemBus, *cluster.Cluster, *relay.Pipes) {
	t.Helper()
	n, err := node.New(node.Options{ID: id, LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	pipes, err := relay.Open(relay.Options{Self: id, Producers: n, Fanout: fanout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	bus := net.Conn(id)
	o.Secrets = testSecrets
	c, err := cluster.New(n, pipes, bus, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return n, bus, c, pipes
}

// met waits until two nodes see each other.
func met(t *testing.T, c1, c2 *cluster.Cluster) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 1 || len(c2.Peers()) != 1 {
			return fmt.Errorf("peers %v %v", c1.Peers(), c2.Peers())
		}
		return nil
	})
}

// participants lists a room's participants on n, sorted by id.
func participants(n *node.Node, room string) string {
	for _, r := range n.Rooms() {
		if r.Name() == room {
			return fmt.Sprint(r.Participants())
		}
	}
	return "[]"
}

// TestClusterOverMemNet: whole nodes (real node.Node, real relay sockets on loopback) joined by
// the in-process bus instead of NATS: they meet, a room's participants are seen on both nodes
// through the sync and the events, a newer session of an identity on the other node closes the
// older one, and a node that leaves the bus leaves the other's rooms after the timeout.
func TestClusterOverMemNet(t *testing.T) {
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close) // after the clusters (cleanups run last first)
	n1, _, c1 := memMember(t, net, "n1")
	n2, bus2, c2 := memMember(t, net, "n2")
	met(t, c1, c2)
	alice, err := n1.Join("r", "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	carol, err := n1.Join("r", "carol", node.Grant{Subscribe: true}, false, quiet{}) // keeps the room open on n1
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n2.Join("r", "bob", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	both := func() error {
		p1, p2 := participants(n1, "r"), participants(n2, "r")
		if p1 != p2 || len(c2.Rooms().Participants("r")) != 2 || len(c1.Rooms().Participants("r")) != 1 {
			return fmt.Errorf("n1 sees %s, n2 sees %s", p1, p2)
		}
		return nil
	}
	checkFor(t, 5*time.Second, both)
	if got := c2.Rooms().Participants("r"); got[alice.ID()] != "n1" {
		t.Fatalf("n2's view of the room: %v", got)
	}
	// alice again, on n2: the newer session; n1 closes the older one.
	alice2, err := n2.Join("r", "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if got := c1.Rooms().Participants("r"); len(got) != 2 || got[alice2.ID()] != "n2" || got[bob.ID()] != "n2" {
			return fmt.Errorf("n1's view %v", got)
		}
		if got := c2.Rooms().Participants("r"); len(got) != 1 || got[carol.ID()] != "n1" {
			return fmt.Errorf("n2's view %v: alice should have left n1", got)
		}
		return nil
	})
	// n2 drops off the bus: n1 hears itself and not n2, and forgets n2's participants.
	bus2.SetConnected(false)
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 0 || len(c1.Rooms().Participants("r")) != 0 {
			return fmt.Errorf("n1 still sees n2: %v %v", c1.Peers(), c1.Rooms().Participants("r"))
		}
		return nil
	})
	if p := participants(n1, "r"); p != fmt.Sprint([]node.ParticipantInfo{carol.Info()}) {
		t.Fatalf("n1's room: %s", p)
	}
}

// TestClusterResync: messages between two nodes are lost, first room events only (a
// subscription fell behind), then everything for longer than the timeout (NATS away, or a
// partition): each time the rooms re-sync, and both nodes agree again on the participants.
func TestClusterResync(t *testing.T) {
	net := cluster.NewMemNet()
	var lose atomic.Value // func(subject string) bool, for messages between the two nodes
	lose.Store(func(string) bool { return false })
	net.SetFault(func(m cluster.Msg, to string) int {
		e, err := cluster.Open(m.Data)
		if err == nil && e.Node != to && lose.Load().(func(string) bool)(m.Subject) {
			return 0
		}
		return 1
	})
	net.Start()
	t.Cleanup(net.Close)
	n1, _, c1 := memMember(t, net, "n1")
	n2, _, c2 := memMember(t, net, "n2")
	met(t, c1, c2)
	join := func(n *node.Node, who string) *node.Participant {
		p, err := n.Join("r", who, node.Grant{Subscribe: true}, false, quiet{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	join(n1, "alice")
	bob := join(n2, "bob")
	agree := func() error {
		p1, p2 := participants(n1, "r"), participants(n2, "r")
		if p1 != p2 {
			return fmt.Errorf("n1 sees %s, n2 sees %s", p1, p2)
		}
		return nil
	}
	checkFor(t, 5*time.Second, agree)

	lose.Store(func(subject string) bool { return strings.HasSuffix(subject, ".ev") })
	join(n2, "carol")
	bob.Close()
	time.Sleep(100 * time.Millisecond)
	if agree() == nil {
		t.Fatal("the nodes agree although n2's events were lost")
	}
	lose.Store(func(string) bool { return false })
	c1.Resync("test: events lost")
	checkFor(t, 2*time.Second, agree)

	lose.Store(func(string) bool { return true })
	before := c1.Resyncs()
	join(n2, "dave")
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 0 {
			return fmt.Errorf("n1 still has peers %v", c1.Peers())
		}
		return nil
	})
	lose.Store(func(string) bool { return false })
	checkFor(t, 5*time.Second, agree)
	if c1.Resyncs() == before {
		t.Fatal("n1 agrees again without a re-sync")
	}
	if !strings.Contains(participants(n1, "r"), "dave") {
		t.Fatalf("n1 does not see dave: %s", participants(n1, "r"))
	}
}
