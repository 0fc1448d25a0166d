package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// heard records a participant's notifications as "method json".
type heard struct {
	mu  sync.Mutex
	got []string
}

func (h *heard) Notify(method string, data any) {
	b, _ := json.Marshal(data)
	h.mu.Lock()
	h.got = append(h.got, method+" "+string(b))
	h.mu.Unlock()
}

// count is how many notifications of method whose data contains each of parts h heard.
func (h *heard) count(method string, parts ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
next:
	for _, s := range h.got {
		if !strings.HasPrefix(s, method+" ") {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(s, p) {
				continue next
			}
		}
		n++
	}
	return n
}

func (h *heard) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.got, "\n")
}

// waitHeard waits until h heard a notification of method with each of parts.
func waitHeard(t *testing.T, who string, h *heard, method string, parts ...string) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		if h.count(method, parts...) == 0 {
			return fmt.Errorf("%s heard no %s with %q; heard:\n%s", who, method, parts, h)
		}
		return nil
	})
}

// apiPair is two nodes over MemNet, each with its room API, met.
type apiPair struct {
	n1, n2   *node.Node
	c1, c2   *cluster.Cluster
	bus2     *cluster.MemBus
	api1, a2 *cluster.API
}

func newAPIPair(t *testing.T) *apiPair {
	t.Helper()
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	p := &apiPair{}
	p.n1, _, p.c1 = memMember(t, net, "n1")
	p.n2, p.bus2, p.c2 = memMember(t, net, "n2")
	p.api1, p.a2 = cluster.NewAPI(p.c1), cluster.NewAPI(p.c2)
	met(t, p.c1, p.c2)
	return p
}

// join joins identity to room on n with a recording listener.
func join(t *testing.T, n *node.Node, room, identity string, g node.Grant) (*node.Participant, *heard) {
	t.Helper()
	h := &heard{}
	p, err := n.Join(room, identity, g, false, h)
	if err != nil {
		t.Fatalf("join %s on %s: %v", identity, n.ID(), err)
	}
	return p, h
}

// seen waits until every node of ns lists want participants in room.
func seen(t *testing.T, room string, want int, ns ...*node.Node) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		for _, n := range ns {
			r := n.Room(room)
			if r == nil || len(r.Participants()) != want {
				return fmt.Errorf("%s lists %s in %s, want %d participants", n.ID(), participants(n, room), room, want)
			}
		}
		return nil
	})
}

// wantCode fails unless err is a *proto.Error with code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

// ended waits until a participant's session is over.
func ended(t *testing.T, who string, p *node.Participant) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s's session did not end", who)
	}
}

// TestAPIRemoveOnOtherNode: asked on n1, the API removes a participant connected to n2: its
// session ends with closed {"reason":"removed"}, and n1 no longer lists it. A second removal,
// and one of nobody, are not_found; a bad identity is refused before anyone is asked.
func TestAPIRemoveOnOtherNode(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	_, aliceHeard := join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	bob, bobHeard := join(t, p.n2, "r", "bob", node.Grant{Subscribe: true})
	seen(t, "r", 2, p.n1, p.n2)

	if err := p.api1.RemoveParticipant(ctx, "r", "bob"); err != nil {
		t.Fatalf("remove bob: %v", err)
	}
	ended(t, "bob", bob)
	if bobHeard.count(node.EventClosed, `"reason":"removed"`) != 1 {
		t.Fatalf("bob heard:\n%s", bobHeard)
	}
	seen(t, "r", 1, p.n1)
	waitHeard(t, "alice", aliceHeard, node.EventParticipantLeft, bob.ID())
	if aliceHeard.count(node.EventClosed) != 0 {
		t.Fatalf("alice was closed too:\n%s", aliceHeard)
	}
	wantCode(t, "remove bob again", p.api1.RemoveParticipant(ctx, "r", "bob"), proto.CodeNotFound)
	wantCode(t, "remove nobody", p.a2.RemoveParticipant(ctx, "r", "nobody"), proto.CodeNotFound)
	wantCode(t, "remove from no room", p.a2.RemoveParticipant(ctx, "no-room", "alice"), proto.CodeNotFound)
	wantCode(t, "empty identity", p.api1.RemoveParticipant(ctx, "r", ""), proto.CodeBadRequest)
	wantCode(t, "long room", p.api1.RemoveParticipant(ctx, strings.Repeat("r", proto.MaxName+1), "alice"), proto.CodeBadRequest)
}

// TestAPIMuteRefusals: a mute without a producer id is refused before anyone is asked; one of a
// producer nobody has, or of an identity with no producer, is not_found. (A producer goes live
// with its media: the mute of a live producer on the other node is tested with real media in
// signal, TestRoomAPIMuteAcrossNodes.)
func TestAPIMuteRefusals(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	join(t, p.n2, "r", "bob", node.Grant{Publish: true, Subscribe: true})
	seen(t, "r", 2, p.n1, p.n2)
	for _, c := range []struct {
		what, identity, producer, code string
	}{
		{"no producer id", "bob", "", proto.CodeBadRequest},
		{"no identity", "", "PRx", proto.CodeBadRequest},
		{"a producer nobody has", "bob", "PRnope", proto.CodeNotFound},
		{"an identity nobody has", "zed", "PRnope", proto.CodeNotFound},
	} {
		_, err := p.api1.MuteProducer(ctx, "r", c.identity, proto.MuteProducer{Producer: c.producer, Muted: true})
		wantCode(t, c.what, err, c.code)
	}
}

// TestAPIDeleteRoomEverywhere: deleting a room ends every session of it on both nodes with
// closed {"reason":"room_deleted"}, closes it on both, and leaves other rooms alone.
func TestAPIDeleteRoomEverywhere(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	alice, aliceHeard := join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	bob, bobHeard := join(t, p.n2, "r", "bob", node.Grant{Subscribe: true})
	carol, carolHeard := join(t, p.n2, "r", "carol", node.Grant{Subscribe: true})
	_, daveHeard := join(t, p.n2, "other", "dave", node.Grant{Subscribe: true})
	seen(t, "r", 3, p.n1, p.n2)

	if err := p.api1.DeleteRoom(ctx, "r"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, s := range []struct {
		who string
		p   *node.Participant
		h   *heard
	}{{"alice", alice, aliceHeard}, {"bob", bob, bobHeard}, {"carol", carol, carolHeard}} {
		ended(t, s.who, s.p)
		if s.h.count(node.EventClosed, `"reason":"room_deleted"`) != 1 {
			t.Fatalf("%s heard:\n%s", s.who, s.h)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if p.n1.Room("r") != nil || p.n2.Room("r") != nil {
			return fmt.Errorf("the room is still open: n1 %v, n2 %v", p.n1.Room("r") != nil, p.n2.Room("r") != nil)
		}
		return nil
	})
	if p.n2.Room("other") == nil || daveHeard.count(node.EventClosed) != 0 {
		t.Fatalf("deleting r touched room other: dave heard\n%s", daveHeard)
	}
	wantCode(t, "delete again", p.a2.DeleteRoom(ctx, "r"), proto.CodeNotFound)
	wantCode(t, "delete no name", p.a2.DeleteRoom(ctx, ""), proto.CodeBadRequest)
}

// TestAPIMetadataAcrossNodes: a participant's metadata set through n1 for a participant on n2
// reaches n1's participant as participantUpdated; the room's metadata set through n2 reaches
// both as roomUpdated, and the room as answered counts both nodes.
func TestAPIMetadataAcrossNodes(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	_, aliceHeard := join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	bob, bobHeard := join(t, p.n2, "r", "bob", node.Grant{Subscribe: true})
	seen(t, "r", 2, p.n1, p.n2)

	md := `{"role":"host"}`
	got, err := p.api1.UpdateParticipant(ctx, "r", "bob", proto.UpdateParticipant{Metadata: &md})
	if err != nil {
		t.Fatalf("update bob: %v", err)
	}
	if got.ID != bob.ID() || got.Identity != "bob" || got.Metadata != md || got.Node != "n2" || got.Producers == nil {
		t.Fatalf("update answered %+v", got)
	}
	quoted, _ := json.Marshal(md)
	waitHeard(t, "alice", aliceHeard, proto.MethodParticipantUpdated, bob.ID(), string(quoted))
	waitHeard(t, "bob", bobHeard, proto.MethodParticipantUpdated, bob.ID(), string(quoted))
	// Without metadata: the participant as it is.
	got, err = p.api1.UpdateParticipant(ctx, "r", "bob", proto.UpdateParticipant{})
	if err != nil || got.Metadata != md {
		t.Fatalf("report bob: %+v %v", got, err)
	}
	long := strings.Repeat("x", proto.MaxMetadata+1)
	wantCode(t, "metadata too long", func() error {
		_, err := p.api1.UpdateParticipant(ctx, "r", "bob", proto.UpdateParticipant{Metadata: &long})
		return err
	}(), proto.CodeBadRequest)
	wantCode(t, "update nobody", func() error {
		_, err := p.api1.UpdateParticipant(ctx, "r", "nobody", proto.UpdateParticipant{Metadata: &md})
		return err
	}(), proto.CodeNotFound)

	rmd := "agenda: ship it"
	room, err := p.a2.UpdateRoom(ctx, "r", proto.UpdateRoom{Metadata: &rmd})
	if err != nil {
		t.Fatalf("update room: %v", err)
	}
	if room.Name != "r" || room.Metadata != rmd || room.Participants != 2 || len(room.Nodes) != 2 ||
		room.Nodes[0].ID != "n1" || room.Nodes[1].ID != "n2" || room.Nodes[1].Participants != 1 {
		t.Fatalf("update room answered %+v", room)
	}
	waitHeard(t, "alice", aliceHeard, proto.MethodRoomUpdated, "ship it")
	waitHeard(t, "bob", bobHeard, proto.MethodRoomUpdated, "ship it")
	neg := -1
	wantCode(t, "negative limit", func() error {
		_, err := p.a2.UpdateRoom(ctx, "r", proto.UpdateRoom{MaxParticipants: &neg})
		return err
	}(), proto.CodeBadRequest)
	wantCode(t, "update no room", func() error {
		_, err := p.a2.UpdateRoom(ctx, "nope", proto.UpdateRoom{Metadata: &rmd})
		return err
	}(), proto.CodeNotFound)
}

// TestAPISendDataBothNodes: data sent through n1 reaches the room's participants on both nodes
// as a message from nobody; with identities, only those; a room nobody has is not_found.
func TestAPISendDataBothNodes(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	_, aliceHeard := join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	_, bobHeard := join(t, p.n2, "r", "bob", node.Grant{Subscribe: true})
	_, carolHeard := join(t, p.n2, "r", "carol", node.Grant{Subscribe: true})
	seen(t, "r", 3, p.n1, p.n2)

	if err := p.api1.SendData(ctx, "r", proto.SendData{Data: json.RawMessage(`{"poll":"lunch?"}`)}); err != nil {
		t.Fatalf("send to all: %v", err)
	}
	for who, h := range map[string]*heard{"alice": aliceHeard, "bob": bobHeard, "carol": carolHeard} {
		waitHeard(t, who, h, node.EventMessage, `"from":""`, `"identity":""`, `"poll":"lunch?"`)
	}
	if err := p.api1.SendData(ctx, "r", proto.SendData{Data: json.RawMessage(`"just bob"`), Identities: []string{"bob"}}); err != nil {
		t.Fatalf("send to bob: %v", err)
	}
	waitHeard(t, "bob", bobHeard, node.EventMessage, "just bob")
	// Another message to everyone, after: when alice and carol have it, they would have had bob's.
	if err := p.a2.SendData(ctx, "r", proto.SendData{Data: json.RawMessage(`"all again"`)}); err != nil {
		t.Fatalf("send again: %v", err)
	}
	waitHeard(t, "alice", aliceHeard, node.EventMessage, "all again")
	waitHeard(t, "carol", carolHeard, node.EventMessage, "all again")
	if aliceHeard.count(node.EventMessage, "just bob")+carolHeard.count(node.EventMessage, "just bob") != 0 {
		t.Fatalf("a message to bob reached others:\nalice\n%s\ncarol\n%s", aliceHeard, carolHeard)
	}
	wantCode(t, "no room", p.api1.SendData(ctx, "nope", proto.SendData{Data: json.RawMessage(`1`)}), proto.CodeNotFound)
	wantCode(t, "no data", p.api1.SendData(ctx, "r", proto.SendData{}), proto.CodeBadRequest)
	wantCode(t, "null data", p.api1.SendData(ctx, "r", proto.SendData{Data: json.RawMessage(`null`)}), proto.CodeBadRequest)
	wantCode(t, "bad identity", p.api1.SendData(ctx, "r", proto.SendData{Data: json.RawMessage(`1`), Identities: []string{""}}), proto.CodeBadRequest)
}

// TestAPICreateRoomLimitsAcrossNodes: a room created through n1 with maxParticipants 2 opens
// on n1 (201) with its settings; creating it again through n2 finds it (200) and updates it.
// Its limit holds on n2: with one participant on each node, a join on n2 is room_full.
func TestAPICreateRoomLimitsAcrossNodes(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	room, created, err := p.api1.CreateRoom(ctx, proto.CreateRoom{Name: "team", MaxParticipants: 2, Metadata: "v1"})
	if err != nil || !created {
		t.Fatalf("create: %+v %v %v", room, created, err)
	}
	if room.Name != "team" || room.MaxParticipants != 2 || room.Metadata != "v1" || room.EmptyTimeout != 300 ||
		room.Participants != 0 || len(room.Nodes) != 1 || room.Nodes[0].ID != "n1" || room.CreatedAt == 0 {
		t.Fatalf("create answered %+v", room)
	}
	if p.n1.Room("team") == nil || p.n2.Room("team") != nil {
		t.Fatal("the room should be open on n1 only")
	}
	room, created, err = p.a2.CreateRoom(ctx, proto.CreateRoom{Name: "team", Metadata: "v2"})
	if err != nil || created || room.Metadata != "v2" || room.MaxParticipants != 2 || len(room.Nodes) != 1 {
		t.Fatalf("create again through n2: %+v %v %v", room, created, err)
	}
	if s := p.n1.Room("team").Settings(); s.Metadata != "v2" || s.MaxParticipants != 2 {
		t.Fatalf("n1's settings after the second create: %+v", s)
	}

	join(t, p.n1, "team", "alice", node.Grant{Subscribe: true})
	join(t, p.n2, "team", "bob", node.Grant{Subscribe: true})
	seen(t, "team", 2, p.n1, p.n2)
	checkFor(t, 5*time.Second, func() error {
		if s := p.n2.Room("team").Settings(); s.MaxParticipants != 2 || s.Metadata != "v2" {
			return fmt.Errorf("n2 has not adopted the room's settings: %+v", s)
		}
		return nil
	})
	if _, err := p.n2.Join("team", "carol", node.Grant{Subscribe: true}, false, &heard{}); !errors.Is(err, node.ErrRoomFull) {
		t.Fatalf("a third join on n2: %v, want room full", err)
	}
	if _, err := p.n1.Join("team", "carol", node.Grant{Subscribe: true}, false, &heard{}); !errors.Is(err, node.ErrRoomFull) {
		t.Fatalf("a third join on n1: %v, want room full", err)
	}
	room, created, err = p.a2.CreateRoom(ctx, proto.CreateRoom{Name: "team", MaxParticipants: 3})
	if err != nil || created || room.Participants != 2 || len(room.Nodes) != 2 || room.MaxParticipants != 3 {
		t.Fatalf("raise the limit: %+v %v %v", room, created, err)
	}
	join(t, p.n2, "team", "carol", node.Grant{Subscribe: true})

	for _, bad := range []proto.CreateRoom{
		{},
		{Name: strings.Repeat("n", proto.MaxName+1)},
		{Name: "x", MaxParticipants: -1},
		{Name: "x", EmptyTimeout: -5},
		{Name: "x", Metadata: strings.Repeat("m", proto.MaxMetadata+1)},
	} {
		_, _, err := p.api1.CreateRoom(ctx, bad)
		wantCode(t, fmt.Sprintf("create %.40v", bad), err, proto.CodeBadRequest)
	}
}

// TestAPIActionWithNodeUnreachable: while n2 is a member that does not answer, an action that
// finds nothing on n1 is cluster_unavailable (the target may be on n2), not not_found; one
// that finds its target on n1 acts.
func TestAPIActionWithNodeUnreachable(t *testing.T) {
	p := newAPIPair(t)
	ctx := context.Background()
	alice, _ := join(t, p.n1, "r", "alice", node.Grant{Subscribe: true})
	join(t, p.n2, "r", "bob", node.Grant{Subscribe: true})
	seen(t, "r", 2, p.n1, p.n2)
	p.bus2.SetConnected(false)
	wantCode(t, "remove bob with n2 away", p.api1.RemoveParticipant(ctx, "r", "bob"), proto.CodeClusterUnavailable)
	if err := p.api1.RemoveParticipant(ctx, "r", "alice"); err != nil {
		t.Fatalf("remove alice (on n1) with n2 away: %v", err)
	}
	ended(t, "alice", alice)
}
