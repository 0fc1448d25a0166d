package webhook_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/webhook"
)

var testSecrets = cluster.Secrets{"cascade-test-cluster-secret-0123456789"}

type quiet struct{}

func (quiet) Notify(string, any) {}

// member starts a node joined to the cluster on net, its webhook events sent to url.
func member(t *testing.T, mn *cluster.MemNet, id, url string) (*node.Node, *cluster.Cluster) {
	t.Helper()
	n, err := node.New(node.Options{ID: id, LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	pipes, err := relay.Open(relay.Options{Self: id, Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	s := newSender(t, webhook.Options{URLs: []string{url}})
	c, err := cluster.New(n, pipes, mn.Conn(id), cluster.Options{Heartbeat: 50 * time.Millisecond, Secrets: testSecrets,
		Observer: webhook.NewSource(id, s)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return n, c
}

// twoMembers starts nodes n1 and n2 on a fresh in-process bus, their webhook events sent to
// url, and waits until they see each other.
func twoMembers(t *testing.T, url string) (mn *cluster.MemNet, n1 *node.Node, c1 *cluster.Cluster, n2 *node.Node, c2 *cluster.Cluster) {
	t.Helper()
	mn = cluster.NewMemNet()
	mn.Start()
	t.Cleanup(mn.Close)
	n1, c1 = member(t, mn, "n1", url)
	n2, c2 = member(t, mn, "n2", url)
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 1 || len(c2.Peers()) != 1 {
			return fmt.Errorf("peers %v %v", c1.Peers(), c2.Peers())
		}
		return nil
	})
	return mn, n1, c1, n2, c2
}

// publishVP8 publishes a VP8 track from a loopback PeerConnection as p, and sends packets until
// the test ends.
func publishVP8(t *testing.T, p *node.Participant) {
	t.Helper()
	vp8pub.Start(t, 0, func(offer string) (string, error) {
		answer, _, err := p.Publish(offer, true)
		return answer, err
	})
}

// summary is an event as "node:event:identity" (identity of the participant, if any).
func summary(ev webhook.Event) string {
	s := ev.Node + ":" + ev.Event
	if ev.Participant != nil {
		s += ":" + ev.Participant.Identity
	}
	return s
}

// TestWebhooksAcrossNodes: two nodes over the in-process bus, each sending to one real
// receiver. alice joins n1 and publishes, bob joins n2, alice leaves, then bob: every event is
// sent once, by the node holding the session; room_started once (n1: alice was first),
// room_finished once (n2: bob was the last anywhere); signatures and ids check; each node's
// events come in the order they happened.
func TestWebhooksAcrossNodes(t *testing.T) {
	r := newReceiver(t, nil)
	_, n1, c1, n2, c2 := twoMembers(t, r.srv.URL)
	alice, err := n1.Join("r", "alice", node.Grant{Publish: true, Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	publishVP8(t, alice)
	checkFor(t, 10*time.Second, func() error {
		if len(n1.Room("r").Producers()) != 1 {
			return fmt.Errorf("alice's track is not live on n1: %v", n1.Room("r").Producers())
		}
		return nil
	})
	bob, err := n2.Join("r", "bob", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error { // each node knows the other's participant
		if len(c1.Rooms().Participants("r")) != 1 || len(c2.Rooms().Participants("r")) != 1 {
			return fmt.Errorf("n1 sees %v, n2 sees %v", c1.Rooms().Participants("r"), c2.Rooms().Participants("r"))
		}
		return nil
	})
	alice.Close()
	checkFor(t, 5*time.Second, func() error { // n2 learnt that alice left
		if got := c2.Rooms().Participants("r"); len(got) != 0 {
			return fmt.Errorf("n2 still sees %v", got)
		}
		return nil
	})
	bob.Close()

	want1 := []string{"n1:room_started", "n1:participant_joined:alice", "n1:track_published:alice", "n1:track_unpublished:alice", "n1:participant_left:alice"}
	want2 := []string{"n2:participant_joined:bob", "n2:participant_left:bob", "n2:room_finished"}
	var got1, got2 []string
	checkFor(t, 10*time.Second, func() error {
		got1, got2 = nil, nil
		for _, ev := range r.events() {
			if ev.Node == "n1" {
				got1 = append(got1, summary(ev))
			} else {
				got2 = append(got2, summary(ev))
			}
		}
		if strings.Join(got1, " ") != strings.Join(want1, " ") || strings.Join(got2, " ") != strings.Join(want2, " ") {
			return fmt.Errorf("n1 sent %v, n2 sent %v; want %v and %v", got1, got2, want1, want2)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a late duplicate would show now
	r.noneRefused()
	evs := r.events()
	if len(evs) != len(want1)+len(want2) {
		t.Fatalf("%d events, want %d", len(evs), len(want1)+len(want2))
	}
	ids := map[string]bool{}
	for _, ev := range evs {
		if ids[ev.ID] || !strings.HasPrefix(ev.ID, "EV") || ev.Room.Name != "r" || ev.CreatedAt == 0 {
			t.Fatalf("event %+v: repeated or incomplete", ev)
		}
		ids[ev.ID] = true
		if ev.Event == webhook.TrackPublished && (ev.Track == nil || ev.Track.Kind != "video" || ev.Track.Participant != alice.ID()) {
			t.Fatalf("track_published %+v", ev.Track)
		}
	}
}

// TestWebhooksRoomDeletedAcrossNodes: the room API deletes a room with participants on two
// nodes; both nodes close their part in the same instant, each still counting the other's
// participants, yet room_finished is sent, once, by one node (the least id holding the room).
func TestWebhooksRoomDeletedAcrossNodes(t *testing.T) {
	r := newReceiver(t, nil)
	_, n1, c1, n2, c2 := twoMembers(t, r.srv.URL)
	for _, j := range []struct {
		n  *node.Node
		id string
	}{{n1, "alice"}, {n2, "bob"}, {n2, "carol"}} {
		if _, err := j.n.Join("r", j.id, node.Grant{Subscribe: true}, false, quiet{}); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Rooms().Participants("r")) != 2 || len(c2.Rooms().Participants("r")) != 1 {
			return fmt.Errorf("n1 sees %v, n2 sees %v", c1.Rooms().Participants("r"), c2.Rooms().Participants("r"))
		}
		return nil
	})
	cluster.NewAPI(c1) // n1 answers the room API's questions too
	if err := cluster.NewAPI(c2).DeleteRoom(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	var finished []string
	checkFor(t, 10*time.Second, func() error {
		finished = nil
		left := 0
		for _, ev := range r.events() {
			switch ev.Event {
			case webhook.RoomFinished:
				finished = append(finished, ev.Node)
			case webhook.ParticipantLeft:
				left++
			}
		}
		if left != 3 || len(finished) != 1 || finished[0] != "n1" {
			return fmt.Errorf("%d participant_left, room_finished from %v; want 3 and [n1]", left, finished)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a late duplicate would show now
	n := 0
	for _, ev := range r.events() {
		if ev.Event == webhook.RoomFinished {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d room_finished events, want 1", n)
	}
}

// TestWebhooksLastLeaveTogether: the last participants of a room on two nodes leave in the
// same instant, each node still counting the other's: room_finished is sent once (by n1, the
// least of the nodes waiting on it), not never.
func TestWebhooksLastLeaveTogether(t *testing.T) {
	r := newReceiver(t, nil)
	mn, n1, c1, n2, c2 := twoMembers(t, r.srv.URL)
	alice, err := n1.Join("r", "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n2.Join("r", "bob", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Rooms().Participants("r")) != 1 || len(c2.Rooms().Participants("r")) != 1 {
			return fmt.Errorf("n1 sees %v, n2 sees %v", c1.Rooms().Participants("r"), c2.Rooms().Participants("r"))
		}
		return nil
	})
	mn.SetFault(func(cluster.Msg, string) int { return 0 }) // lose the leaves: each node still counts the other's
	alice.Close()
	bob.Close()
	mn.SetFault(nil)
	finished := func() (out []string) {
		for _, ev := range r.events() {
			if ev.Event == webhook.RoomFinished {
				out = append(out, ev.Node)
			}
		}
		return out
	}
	checkFor(t, 10*time.Second, func() error {
		if got := finished(); len(got) != 1 || got[0] != "n1" {
			return fmt.Errorf("room_finished from %v, want [n1]", got)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // n2's own check, a second after its close, must not add one
	if got := finished(); len(got) != 1 {
		t.Fatalf("room_finished from %v, want once", got)
	}
}
