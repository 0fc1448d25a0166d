package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// regionMember is memMember with a region.
func regionMember(t *testing.T, net *cluster.MemNet, id, region string) (*node.Node, *cluster.MemBus, *cluster.Cluster) {
	t.Helper()
	n, err := node.New(node.Options{ID: id, Region: region, LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	pipes, err := relay.Open(relay.Options{Self: id, Region: region, Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	bus := net.Conn(id)
	c, err := cluster.New(n, pipes, bus, cluster.Options{Heartbeat: 50 * time.Millisecond, Secrets: testSecrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return n, bus, c
}

// joinAll joins each identity to room on n.
func joinAll(t *testing.T, n *node.Node, room string, identities ...string) {
	t.Helper()
	for _, id := range identities {
		if _, err := n.Join(room, id, node.Grant{Subscribe: true}, false, quiet{}); err != nil {
			t.Fatalf("join %s to %s on %s: %v", id, room, n.ID(), err)
		}
	}
}

// twoNodes starts two nodes in two regions over MemNet (with fault, when not nil), with their
// room APIs, and waits until they see each other.
func twoNodes(t *testing.T, fault func(m cluster.Msg, to string) int) (n1, n2 *node.Node, a1, a2 *cluster.API) {
	t.Helper()
	net := cluster.NewMemNet()
	if fault != nil {
		net.SetFault(fault)
	}
	net.Start()
	t.Cleanup(net.Close)
	n1, _, c1 := regionMember(t, net, "n1", "eu")
	n2, _, c2 := regionMember(t, net, "n2", "us")
	a1, a2 = cluster.NewAPI(c1), cluster.NewAPI(c2)
	met(t, c1, c2)
	return n1, n2, a1, a2
}

// TestAPIReadAcrossNodes: whichever node is asked, the room API lists the rooms of both nodes
// with each node's own participants counted once, and finds a participant on the other node.
func TestAPIReadAcrossNodes(t *testing.T) {
	n1, n2, a1, a2 := twoNodes(t, nil)
	ctx := context.Background()
	joinAll(t, n1, "r", "alice", "carol")
	joinAll(t, n2, "r", "bob")
	joinAll(t, n2, "solo", "dave")
	// Each node holds a copy of the other's part of "r" once the sync ran: it must not count.
	checkFor(t, 5*time.Second, func() error {
		if len(n1.Room("r").Participants()) != 3 || len(n2.Room("r").Participants()) != 3 {
			return fmt.Errorf("room r not synced: %v / %v", n1.Room("r").Participants(), n2.Room("r").Participants())
		}
		return nil
	})
	for _, a := range []*cluster.API{a1, a2} {
		page, err := a.ListRooms(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Rooms) != 2 || page.Next != "" || len(page.Unreachable) != 0 {
			t.Fatalf("page %+v", page)
		}
		r, solo := page.Rooms[0], page.Rooms[1]
		if r.Name != "r" || r.Participants != 3 || r.Publishers != 0 || r.Producers != 0 || r.CreatedAt == 0 {
			t.Fatalf("room r: %+v", r)
		}
		if want := []proto.APIRoomNode{{ID: "n1", Region: "eu", Participants: 2}, {ID: "n2", Region: "us", Participants: 1}}; fmt.Sprint(r.Nodes) != fmt.Sprint(want) {
			t.Fatalf("room r nodes %+v, want %+v", r.Nodes, want)
		}
		if solo.Name != "solo" || solo.Participants != 1 || len(solo.Nodes) != 1 || solo.Nodes[0].ID != "n2" {
			t.Fatalf("room solo: %+v", solo)
		}
	}

	d, err := a1.Room(ctx, "solo")
	if err != nil || d.Name != "solo" || d.Participants != 1 || d.ProducerList == nil || len(d.ProducerList) != 0 {
		t.Fatalf("room solo from n1: %+v %v", d, err)
	}
	_, err = a1.Room(ctx, "nope")
	wantCode(t, "room nope", err, proto.CodeNotFound)

	ps, err := a2.Participants(ctx, "r", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps.Participants {
		got = append(got, p.Identity+"@"+p.Node+"/"+p.Region)
		if p.ID == "" || p.JoinedAt == 0 || p.Producers == nil {
			t.Fatalf("participant %+v", p)
		}
	}
	if strings.Join(got, " ") != "alice@n1/eu bob@n2/us carol@n1/eu" || ps.Next != "" {
		t.Fatalf("participants of r: %v next %q", got, ps.Next)
	}
	p, err := a1.Participant(ctx, "r", "bob")
	if err != nil || p.Identity != "bob" || p.Node != "n2" {
		t.Fatalf("bob from n1: %+v %v", p, err)
	}
	_, err = a1.Participant(ctx, "r", "zed")
	wantCode(t, "participant zed", err, proto.CodeNotFound)
	_, err = a1.Participants(ctx, "nope", "", 10)
	wantCode(t, "participants of nope", err, proto.CodeNotFound)
}

// TestAPIReadPages: five rooms spread over two nodes (two of them on both), read two at a time
// from either node: every room comes exactly once, in order, with the participants of both
// nodes; the participants of a room page the same way.
func TestAPIReadPages(t *testing.T) {
	n1, n2, a1, a2 := twoNodes(t, nil)
	ctx := context.Background()
	joinAll(t, n1, "a", "a1")
	joinAll(t, n2, "b", "b1", "b2")
	joinAll(t, n1, "c", "c1")
	joinAll(t, n2, "c", "c2")
	joinAll(t, n2, "d", "d1")
	joinAll(t, n1, "e", "e1", "e2", "e3")
	joinAll(t, n2, "e", "e4", "e5")
	want := "a:1 b:2 c:2 d:1 e:5"
	for _, a := range []*cluster.API{a1, a2} {
		var got []string
		after, pages := "", 0
		for {
			page, err := a.ListRooms(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(page.Rooms) > 2 || pages > 5 {
				t.Fatalf("page %d after %q: %+v", pages, after, page)
			}
			for _, r := range page.Rooms {
				got = append(got, fmt.Sprintf("%s:%d", r.Name, r.Participants))
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if strings.Join(got, " ") != want || pages != 3 {
			t.Fatalf("rooms over %d pages: %v, want %s", pages, got, want)
		}
	}
	var got []string
	after := ""
	for i := 0; ; i++ {
		page, err := a2.Participants(ctx, "e", after, 2)
		if err != nil || i > 3 || len(page.Participants) > 2 {
			t.Fatalf("participants page %d: %+v %v", i, page, err)
		}
		for _, p := range page.Participants {
			got = append(got, p.Identity)
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if strings.Join(got, " ") != "e1 e2 e3 e4 e5" {
		t.Fatalf("participants of e: %v", got)
	}
}

// TestAPIReadBadInput: limits and names out of bounds are bad requests.
func TestAPIReadBadInput(t *testing.T) {
	_, _, a1, _ := twoNodes(t, nil)
	ctx := context.Background()
	long := strings.Repeat("x", proto.MaxName+1)
	for what, err := range map[string]error{
		"limit 0":          second(a1.ListRooms(ctx, "", 0)),
		"limit 1001":       second(a1.ListRooms(ctx, "", 1001)),
		"long after":       second(a1.ListRooms(ctx, long, 10)),
		"long room":        second(a1.Room(ctx, long)),
		"empty room":       second(a1.Room(ctx, "")),
		"participants -1":  second(a1.Participants(ctx, "r", "", -1)),
		"long identity":    second(a1.Participant(ctx, "r", long)),
		"participants big": second(a1.Participants(ctx, long, "", 10)),
	} {
		wantCode(t, what, err, proto.CodeBadRequest)
	}
}

func second[T any](_ T, err error) error { return err }

// TestAPIReadUnreachable: a node that does not answer (a member still: its heartbeats arrive,
// the questions to it are lost) is named; a listing still has the other node's rooms, and a
// lookup that finds nothing while it is silent is cluster_unavailable, not not_found.
func TestAPIReadUnreachable(t *testing.T) {
	var deaf atomic.Bool
	n1, n2, a1, _ := twoNodes(t, func(m cluster.Msg, to string) int {
		if to == "n2" && deaf.Load() && strings.HasPrefix(m.Subject, "cascade.api.") {
			return 0
		}
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	joinAll(t, n1, "here", "alice")
	joinAll(t, n2, "there", "bob")
	if _, err := a1.Room(ctx, "there"); err != nil {
		t.Fatalf("room there before: %v", err)
	}
	deaf.Store(true)
	// Each call waits for n2 until its ctx ends: a short one keeps the test quick.
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	page, err := a1.ListRooms(short(), "", 10)
	if err != nil || len(page.Rooms) != 1 || page.Rooms[0].Name != "here" || fmt.Sprint(page.Unreachable) != "[n2]" {
		t.Fatalf("list with n2 away: %+v %v", page, err)
	}
	_, err = a1.Room(short(), "there")
	wantCode(t, "room there", err, proto.CodeClusterUnavailable)
	_, err = a1.Participant(short(), "here", "bob")
	wantCode(t, "participant bob", err, proto.CodeClusterUnavailable)
	ps, err := a1.Participants(short(), "here", "", 10)
	if err != nil || len(ps.Participants) != 1 || fmt.Sprint(ps.Unreachable) != "[n2]" {
		t.Fatalf("participants with n2 away: %+v %v", ps, err)
	}
}

// TestAPIReadCreatedRoom: a room created by the API with nobody in it is listed, from the other
// node too, with its settings and no participants; once someone joins it on the other node,
// both nodes carry it with the same settings.
func TestAPIReadCreatedRoom(t *testing.T) {
	_, n2, a1, a2 := twoNodes(t, nil)
	ctx := context.Background()
	if _, created, err := a1.CreateRoom(ctx, proto.CreateRoom{Name: "planned", Metadata: "agenda", MaxParticipants: 7, EmptyTimeout: 60}); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	page, err := a2.ListRooms(ctx, "", 10)
	if err != nil || len(page.Rooms) != 1 {
		t.Fatalf("list: %+v %v", page, err)
	}
	r := page.Rooms[0]
	if r.Name != "planned" || r.Participants != 0 || r.Metadata != "agenda" || r.MaxParticipants != 7 || r.EmptyTimeout != 60 ||
		r.CreatedAt == 0 || fmt.Sprint(r.Nodes) != "[{n1 eu 0}]" {
		t.Fatalf("created room: %+v", r)
	}
	joinAll(t, n2, "planned", "zoe")
	checkFor(t, 5*time.Second, func() error {
		d, err := a1.Room(ctx, "planned")
		if err != nil || d.Participants != 1 || fmt.Sprint(d.Nodes) != "[{n1 eu 0} {n2 us 1}]" || d.Metadata != "agenda" || d.MaxParticipants != 7 {
			return fmt.Errorf("room: %+v %v", d, err)
		}
		return nil
	})
}

// TestAPIReadPagesOverBudget: participants with the largest metadata, more of them on one node
// than fit in one node's answer: the pages end where that node's answer ends, and over the
// pages every participant of both nodes comes exactly once, in identity order.
func TestAPIReadPagesOverBudget(t *testing.T) {
	n1, n2, a1, _ := twoNodes(t, nil)
	big := strings.Repeat("m", proto.MaxMetadata)
	want := map[string]bool{}
	for i := 0; i < 120; i++ {
		n, id := n1, fmt.Sprintf("p%03d", i)
		if i%4 == 0 {
			n = n2
		}
		if _, err := n.Join("big", id, node.Grant{Subscribe: true, Metadata: big}, false, quiet{}); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	// Every join's event is through the bus before the listing: under load a node's answer would
	// otherwise queue behind the backlog of 4 KiB events past the ask timeout (and be named
	// unreachable, which fails below).
	checkFor(t, 30*time.Second, func() error {
		if a, b := len(n1.Room("big").Participants()), len(n2.Room("big").Participants()); a != len(want) || b != len(want) {
			return fmt.Errorf("n1 sees %d participants, n2 %d", a, b)
		}
		return nil
	})
	var got []string
	pages, after := 0, ""
	for {
		page, err := a1.Participants(context.Background(), "big", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Unreachable) > 0 { // the page may lack their part: it is no full listing
			t.Fatalf("page %d after %q: no answer from %v", pages, after, page.Unreachable)
		}
		for _, p := range page.Participants {
			if len(got) > 0 && p.Identity <= got[len(got)-1] {
				t.Fatalf("%s after %s", p.Identity, got[len(got)-1])
			}
			if p.Metadata != big {
				t.Fatalf("%s: metadata of %d bytes", p.Identity, len(p.Metadata))
			}
			got = append(got, p.Identity)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(got) != len(want) || pages < 2 {
		t.Fatalf("%d participants in %d pages, want %d in more than one", len(got), pages, len(want))
	}
}

// TestAPIReadAsksDepartedNode: a node dropped from the membership for silence (its heartbeats
// lost, here; queued behind a burst of room events, under load) is still asked within the resume
// grace: alive, its participants are listed; silent, it is named unreachable rather than left
// out of a listing that would look complete.
func TestAPIReadAsksDepartedNode(t *testing.T) {
	var lostBeats, offline atomic.Bool
	net := cluster.NewMemNet()
	net.SetFault(func(m cluster.Msg, to string) int {
		// n2 is its region's aggregator: n1 hears of it through its digests.
		fromN2 := m.Subject == cluster.HeartbeatSubject("us", "n2") || m.Subject == cluster.DigestSubject("us")
		if (lostBeats.Load() && fromN2 && to == "n1") || (offline.Load() && (to == "n2" || fromN2)) {
			return 0
		}
		return 1
	})
	net.Start()
	t.Cleanup(net.Close)
	n1, _, c1 := regionMember(t, net, "n1", "eu")
	n2, bus2, c2 := regionMember(t, net, "n2", "us")
	a1 := cluster.NewAPI(c1)
	cluster.NewAPI(c2)
	met(t, c1, c2)
	joinAll(t, n1, "r", "alice")
	joinAll(t, n2, "r", "bob")

	lostBeats.Store(true)
	checkFor(t, 10*time.Second, func() error {
		if len(c1.Peers()) != 0 {
			return fmt.Errorf("n1 still counts %v as members", c1.Peers())
		}
		return nil
	})
	page, err := a1.Participants(context.Background(), "r", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Participants) != 2 || page.Participants[1].Identity != "bob" || len(page.Unreachable) != 0 {
		t.Fatalf("with n2 out of n1's membership but answering: %+v, unreachable %v", page.Participants, page.Unreachable)
	}

	offline.Store(true)
	bus2.SetConnected(false)
	page, err = a1.Participants(context.Background(), "r", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Participants) != 1 || len(page.Unreachable) != 1 || page.Unreachable[0] != "n2" {
		t.Fatalf("with n2 silent: %+v, unreachable %v, want alice and n2 named", page.Participants, page.Unreachable)
	}
}
