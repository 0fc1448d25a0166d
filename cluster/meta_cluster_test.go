package cluster_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// TestRoomMetaAcrossNodes: a room the room API opened on n1, with nobody in it, has its
// settings on n2 when someone joins there (the sync); its maxParticipants counts both nodes; a
// participant's metadata set on its node reaches the other node's participants
// (participantUpdated) and copy, a node without the room refuses a join past the cap after the
// sync; a newer settings change is not undone by a re-sync, and a
// re-sync carries it to the node that had older settings.
func TestRoomMetaAcrossNodes(t *testing.T) {
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	// The joins below are decided on the room's sync: under load the other nodes' parts may take
	// longer than the default wait, and the test is about what they carry, not about the bound.
	o := cluster.Options{Heartbeat: 50 * time.Millisecond, ResumeGrace: testGrace, SyncWait: 30 * time.Second}
	n1, _, c1, _ := memMemberWith(t, net, "n1", o, 0)
	n2, _, c2, _ := memMemberWith(t, net, "n2", o, 0)
	n3, _, c3, _ := memMemberWith(t, net, "n3", o, 0)
	checkFor(t, 5*time.Second, func() error {
		for _, c := range []*cluster.Cluster{c1, c2, c3} {
			if len(c.Peers()) != 2 {
				return fmt.Errorf("peers %v", c.Peers())
			}
		}
		return nil
	})
	created, _, err := n1.OpenRoom("r", node.RoomSettings{Metadata: "agenda", MaxParticipants: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := created.Settings()

	alice, err := n2.Join("r", "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	if got := alice.Room().Settings(); got != want {
		t.Fatalf("n2's settings after the join %+v, want n1's %+v", got, want)
	}
	lb := &heard{} // api_write_test.go
	if _, err := n1.Join("r", "bob", node.Grant{Subscribe: true}, false, lb); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if len(n1.Room("r").Participants()) != 2 || len(n2.Room("r").Participants()) != 2 {
			return fmt.Errorf("n1 sees %s, n2 sees %s", participants(n1, "r"), participants(n2, "r"))
		}
		return nil
	})
	for _, n := range []*node.Node{n1, n2} {
		if _, err := n.Join("r", "carol", node.Grant{}, false, quiet{}); !errors.Is(err, node.ErrRoomFull) {
			t.Fatalf("a third participant on %s of a room of at most 2 over the cluster: %v", n.ID(), err)
		}
	}
	// On a node without the room, the join is counted again once the room's sync told it the
	// others' participants and the room's cap; the room it opened for the join goes again.
	if _, err := n3.Join("r", "carol", node.Grant{}, false, quiet{}); !errors.Is(err, node.ErrRoomFull) {
		t.Fatalf("a third participant on n3, which had no part of the room: %v", err)
	}
	if n3.Room("r") != nil {
		t.Fatal("n3 kept the room of the refused join")
	}

	info, ok := n2.Room("r").SetParticipantMetadata("alice", `{"hand":"up"}`)
	if !ok {
		t.Fatal("alice not on n2")
	}
	waitHeard(t, "bob", lb, node.EventParticipantUpdated, `"metadata":"{\"hand\":\"up\"}"`)
	for _, p := range n1.Room("r").Participants() {
		if p.ID == info.ID && p != info {
			t.Fatalf("n1's copy of alice %+v, want %+v", p, info)
		}
	}

	// A newer change on n2 (the room API reaches each node): n2's re-sync keeps it, n1's adopts it.
	m := "newer"
	newer := n2.Room("r").UpdateSettings(node.SettingsUpdate{Metadata: &m})
	before := c2.Resyncs()
	c2.Resync("test")
	checkFor(t, 5*time.Second, func() error {
		if c2.Resyncs() == before {
			return errors.New("no re-sync pass yet")
		}
		return nil
	})
	if got := n2.Room("r").Settings(); got != newer {
		t.Fatalf("n2's settings after its re-sync %+v, want its newer %+v", got, newer)
	}
	c1.Resync("test")
	waitHeard(t, "bob", lb, node.EventRoomUpdated, `{"metadata":"newer"}`)
	if got := n1.Room("r").Settings(); got.Metadata != "newer" || got.CreatedAt != want.CreatedAt {
		t.Fatalf("n1's settings after its re-sync %+v", got)
	}
}
