package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

func TestMatchSubject(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b.c", "a.b.c", true},
		{"a.b.c", "a.b", false},
		{"a.b", "a.b.c", false},
		{"a.*.c", "a.x.c", true},
		{"a.*", "a.x.c", false},
		{"a.>", "a.x.c", true},
		{"a.>", "a", false},
		{"cascade.room.*.sync", "cascade.room.6869.sync", true},
		{"cascade.node.heartbeat.*", "cascade.node.heartbeat.n1", true},
	} {
		if got := matchSubject(splitSubject(c.pattern), splitSubject(c.subject)); got != c.want {
			t.Errorf("%s ~ %s: %v", c.pattern, c.subject, got)
		}
	}
}

func splitSubject(s string) []string { return strings.Split(s, ".") }

// TestMemNetDelivery: nothing moves until the caller steps; every subscriber gets a copy in
// publish order; faults drop and duplicate; a disconnected bus neither sends nor receives;
// request/reply works while another goroutine steps.
func TestMemNetDelivery(t *testing.T) {
	net := NewMemNet()
	a, b := net.Conn("a"), net.Conn("b")
	var got []string
	rec := func(who string) func(Msg) { return func(m Msg) { got = append(got, who+":"+string(m.Data)) } }
	if _, err := a.Subscribe("x.*", rec("a")); err != nil {
		t.Fatal(err)
	}
	sb, _ := b.Subscribe("x.>", rec("b"))
	_ = a.Publish(Msg{Subject: "x.1", Data: []byte("1")})
	_ = b.Publish(Msg{Subject: "x.2.deep", Data: []byte("2")})
	if len(got) != 0 || net.Pending() != 3 {
		t.Fatalf("delivered before a step: %v, %d pending", got, net.Pending())
	}
	if n := net.Drain(); n != 3 || !slices.Equal(got, []string{"a:1", "b:1", "b:2"}) {
		t.Fatalf("%d delivered: %v", n, got)
	}
	got = nil
	net.SetFault(func(m Msg, to string) int {
		if to == "a" {
			return 0
		}
		return 2
	})
	_ = a.Publish(Msg{Subject: "x.3", Data: []byte("3")})
	net.Drain()
	if !slices.Equal(got, []string{"b:3", "b:3"}) {
		t.Fatalf("faults: %v", got)
	}
	net.SetFault(nil)
	got = nil
	_ = a.Publish(Msg{Subject: "x.4", Data: []byte("4")})
	b.SetConnected(false)
	if err := b.Publish(Msg{Subject: "x.5"}); !errors.Is(err, ErrNoBus) || b.Connected() {
		t.Fatalf("a disconnected bus published: %v", err)
	}
	net.Drain()
	b.SetConnected(true)
	_ = sb.Unsubscribe()
	_ = a.Publish(Msg{Subject: "x.6", Data: []byte("6")})
	net.Drain()
	if !slices.Equal(got, []string{"a:4", "a:6"}) {
		t.Fatalf("disconnect and unsubscribe: %v", got)
	}

	_, _ = b.Subscribe("echo", func(m Msg) { _ = b.Publish(Msg{Subject: m.Reply, Data: append([]byte("re:"), m.Data...)}) })
	net.Start()
	defer net.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rep, err := a.Request(ctx, "echo", []byte("hi")); err != nil || string(rep) != "re:hi" {
		t.Fatalf("request: %q %v", rep, err)
	}
	if _, err := a.Request(ctx, "nobody", nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("request to nobody: %v", err)
	}
}

// simNode is a node reduced to its cluster state machines, Membership and RoomState, on a
// MemNet, the way the Cluster wires them; the test is its clock and its heartbeat ticker.
type simNode struct {
	id      string
	bus     *MemBus
	stamp   *Stamper
	dedup   *Dedup
	members *Membership
	rooms   *RoomState
	clock   *fakeClock
	effects []Effect
}

const simRoom = "town hall"

// missedBeats is DefaultTimeout in heartbeats of a second.
const missedBeats = 3

func newSimNode(t *testing.T, net *MemNet, id, inc string, clock *fakeClock) *simNode {
	t.Helper()
	n := &simNode{id: id, bus: net.Conn(id + "/" + inc), stamp: NewStamper(id, inc, clock), dedup: NewDedup(),
		members: NewMembership(id, time.Second, DefaultTimeout), rooms: NewRoomState(), clock: clock}
	n.rooms.Open(simRoom)
	for subj, h := range map[string]func(Msg){
		SubjectHeartbeat + ".*":               n.onHeartbeat,
		subjectRoom(roomToken(simRoom), "ev"): n.onEvent,
	} {
		if _, err := n.bus.Subscribe(subj, h); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// receive is Cluster.receive: own messages and repeats are dropped; a restart ends the old
// incarnation's state first.
func (n *simNode) receive(m Msg) (Envelope, bool) {
	e, err := Open(m.Data)
	if err != nil || e.Node == n.id {
		return e, false
	}
	restarted, err := n.dedup.Accept(e)
	if restarted {
		n.gone(e.Node)
	}
	return e, err == nil
}

func (n *simNode) onHeartbeat(m Msg) {
	e, ok := n.receive(m)
	if e.Node == n.id {
		n.members.Self(n.clock.Now())
		return
	}
	if ok {
		n.members.Heartbeat(e.Inc, node.Stats{ID: e.Node}, n.clock.Now())
	}
}

func (n *simNode) onEvent(m Msg) {
	if e, ok := n.receive(m); ok {
		if msg, err := DecodeRoomMsg(e); err == nil {
			n.effects = append(n.effects, n.rooms.Apply(simRoom, e.Stamp(), msg, n.clock.Now())...)
		}
	}
}

func (n *simNode) gone(id string) {
	n.members.Remove(id)
	n.effects = append(n.effects, n.rooms.NodeGone(id, n.clock.Now())...)
}

func (n *simNode) beat() {
	b, _ := n.stamp.Seal(typeHeartbeat, node.Stats{ID: n.id})
	_ = n.bus.Publish(Msg{Subject: SubjectHeartbeat + "." + n.id, Data: b})
}

func (n *simNode) tick() {
	for _, id := range n.members.Tick(n.clock.Now()) {
		n.gone(id)
	}
	n.rooms.Tick(n.clock.Now())
}

func (n *simNode) send(t *testing.T, m RoomMsg) []byte {
	t.Helper()
	b, err := SealRoomMsg(n.stamp, m)
	if err != nil {
		t.Fatal(err)
	}
	_ = n.bus.Publish(Msg{Subject: subjectRoom(roomToken(simRoom), "ev"), Data: b})
	return b
}

// TestStateMachinesOverMemNet drives three nodes' Membership and RoomState over the in-memory
// bus in virtual time: they meet, a producer published on one reaches the others' views once
// even when every message is duplicated, the node falls silent and its producer leaves their
// views after the heartbeat timeout, and the node back under a new incarnation is a new node
// whose previous incarnation's replayed messages change nothing.
func TestStateMachinesOverMemNet(t *testing.T) {
	net := NewMemNet()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a, b, c := newSimNode(t, net, "a", "a1", clock), newSimNode(t, net, "b", "b1", clock), newSimNode(t, net, "c", "c1", clock)
	round := func(beating ...*simNode) {
		for _, n := range beating {
			n.beat()
		}
		net.Drain()
		for _, n := range []*simNode{a, b, c} {
			n.tick()
		}
		clock.advance(time.Second)
	}
	round(a, b, c)
	for _, n := range []*simNode{a, b, c} {
		if n.members.Len() != 2 {
			t.Fatalf("%s knows %v", n.id, n.members.Peers())
		}
	}

	net.SetFault(func(Msg, string) int { return 2 }) // nats.go replaying its reconnect buffer
	x := node.ParticipantInfo{ID: "x", Identity: "speaker"}
	p := node.ProducerInfo{ID: "P", Participant: "x", Kind: "video", Codec: "video/VP8"}
	a.send(t, ParticipantJoinedMsg{Participant: x})
	replay := a.send(t, ProducerAddedMsg{Producer: p})
	net.Drain()
	net.SetFault(nil)
	for _, n := range []*simNode{b, c} {
		want := []Effect{ReplaceIdentity{simRoom, x, nil}, AddRemoteParticipant{simRoom, x, "a"}, AddRemoteProducer{simRoom, p, "a"}}
		if !reflect.DeepEqual(n.effects, want) {
			t.Fatalf("%s: effects %+v, want %+v", n.id, n.effects, want)
		}
		n.effects = nil
	}

	// a falls silent (its process hangs: it neither sends nor hears). b and c drop it once
	// they have heard themselves and not a for longer than the timeout.
	for i := 1; ; i++ {
		round(b, c)
		if got := b.rooms.Producers(simRoom); len(got) == 0 {
			if i != missedBeats+1 {
				t.Fatalf("a's producer gone after %d silent beats, want %d", i, missedBeats+1)
			}
			break
		}
		if i > missedBeats+1 {
			t.Fatal("a's producer outlived the timeout")
		}
	}
	for _, n := range []*simNode{b, c} {
		want := []Effect{RemoveRemoteProducer{simRoom, "P"}, RemoveRemoteParticipant{simRoom, "x"}}
		if !reflect.DeepEqual(n.effects, want) || n.members.Len() != 1 {
			t.Fatalf("%s: effects %+v, want %+v; peers %v", n.id, n.effects, want, n.members.Peers())
		}
		n.effects = nil
	}

	// a restarts under the same id: a new incarnation, numbering from 1 again.
	a.bus.SetConnected(false)
	a = newSimNode(t, net, "a", "a2", clock)
	q := node.ProducerInfo{ID: "Q", Participant: "y", Kind: "audio", Codec: "audio/opus"}
	round(a, b, c)
	a.send(t, ProducerAddedMsg{Producer: q})
	_ = b.bus.Publish(Msg{Subject: subjectRoom(roomToken(simRoom), "ev"), Data: replay}) // the old incarnation's message, late
	net.Drain()
	for _, n := range []*simNode{b, c} {
		if got := n.rooms.Producers(simRoom); !reflect.DeepEqual(got, map[string]string{"Q": "a"}) {
			t.Fatalf("%s after a's restart: %v", n.id, got)
		}
		if n.members.Incarnation("a") != "a2" {
			t.Fatalf("%s: a's incarnation %q", n.id, n.members.Incarnation("a"))
		}
		if want := []Effect{AddRemoteProducer{simRoom, q, "a"}}; !reflect.DeepEqual(n.effects, want) {
			t.Fatalf("%s: effects %+v, want %+v", n.id, n.effects, want)
		}
	}
	if fmt.Sprint(a.members.Peers()) == "[]" {
		t.Fatal("the new incarnation knows nobody")
	}
}
