package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// TestMetaConstants: the node's closed reasons and metadata cap are the protocol's.
func TestMetaConstants(t *testing.T) {
	if node.ReasonReplaced != proto.ReasonReplaced || node.ReasonRemoved != proto.ReasonRemoved || node.ReasonRoomDeleted != proto.ReasonRoomDeleted {
		t.Fatal("closed reasons differ between node and proto")
	}
	if auth.MaxMetadata != proto.MaxMetadata {
		t.Fatalf("auth.MaxMetadata %d, proto.MaxMetadata %d", auth.MaxMetadata, proto.MaxMetadata)
	}
	if node.EventParticipantUpdated != proto.MethodParticipantUpdated || node.EventRoomUpdated != proto.MethodRoomUpdated ||
		node.EventUnmuteRequested != proto.MethodUnmuteRequested {
		t.Fatal("notification methods differ between node and proto")
	}
}

// rawJoin joins identity to room on a bare WebSocket and returns it once the join succeeded.
func (e *env) rawJoin(room, identity string) *rawConn {
	e.t.Helper()
	r := e.raw()
	r.expectOK(`{"id":1,"method":"join","data":{"token":"` + e.token(room, identity, true, true) + `","autoSubscribe":false}}`)
	return r
}

// closedThenCode reads the connection to its end: it must carry a closed notification with
// reason, then the WebSocket close with code.
func (r *rawConn) closedThenCode(reason string, code websocket.StatusCode) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := fmt.Sprintf(`{"method":"closed","data":{"reason":%q}}`, reason)
	seen := false
	for {
		_, b, err := r.c.Read(ctx)
		if err != nil {
			if !seen {
				r.t.Fatalf("connection ended (%v) before %s", err, want)
			}
			if got := websocket.CloseStatus(err); got != code {
				r.t.Fatalf("close status %d (%v), want %d", got, err, code)
			}
			return
		}
		if string(b) == want {
			seen = true
		} else if seen {
			r.t.Fatalf("%s after the closed notification", b)
		}
	}
}

// TestCloseReasons: a session the room API removes gets closed {removed} then close 4003; one
// of a deleted room closed {room_deleted} then 4004; one replaced by a newer session of its
// identity closed {replaced} then 4001. The others stay.
func TestCloseReasons(t *testing.T) {
	e := newEnv(t, 1, 100)
	removed := e.rawJoin("r", "removed")
	replaced := e.rawJoin("r", "replaced")
	stays := e.join("r", "stays", false, true)
	r := e.node.Room("r")
	if n := r.RemoveParticipant("removed", node.ReasonRemoved); n != 1 {
		t.Fatalf("removed %d sessions", n)
	}
	removed.closedThenCode(proto.ReasonRemoved, proto.CloseRemoved)
	e.rawJoin("r", "replaced")
	replaced.closedThenCode(proto.ReasonReplaced, proto.CloseReplaced)
	select {
	case <-stays.Done():
		t.Fatal("a participant not removed was closed")
	default:
	}
	deleted := e.rawJoin("d", "a")
	if n := e.node.Room("d").Delete(); n != 1 {
		t.Fatalf("room delete closed %d sessions", n)
	}
	deleted.closedThenCode(proto.ReasonRoomDeleted, proto.CloseRoomDeleted)
	if e.node.Room("d") != nil {
		t.Fatal("the deleted room is open")
	}
}

// dialToken joins with a token of the caller's; the peer records its notifications.
func (e *env) dialToken(tok string) *peer {
	e.t.Helper()
	p := &peer{packets: make(map[string]*atomic.Int64), ssrc: make(map[string]uint32), lastSeq: make(map[string]uint16)}
	c, err := client.Dial(context.Background(), e.ws, client.Options{Token: tok, LoopbackOnly: true,
		OnNotification: func(m string, d json.RawMessage) {
			p.mu.Lock()
			p.notes = append(p.notes, note{m, d})
			p.mu.Unlock()
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Client = c
	e.t.Cleanup(func() { _ = c.Close() })
	return p
}

func waitNote(t *testing.T, p *peer, method, contains string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		if !p.hasNote(method, contains) {
			return fmt.Errorf("no %s with %s", method, contains)
		}
		return nil
	})
}

// TestTokenMetadata: the token's metadata claim is the participant's metadata, seen by the
// others (participantJoined, the join response's list) and updated by the room API
// (participantUpdated); the join response carries the room's metadata.
func TestTokenMetadata(t *testing.T) {
	e := newEnv(t, 1, 100)
	if _, _, err := e.node.OpenRoom("r", node.RoomSettings{Metadata: "the agenda"}); err != nil {
		t.Fatal(err)
	}
	bob := e.join("r", "bob", false, true)
	if bob.Join.RoomMetadata != "the agenda" {
		t.Fatalf("join response roomMetadata %q", bob.Join.RoomMetadata)
	}
	tok, err := testKeys.Mint(auth.Grant{Room: "r", Identity: "alice", Publish: true, Metadata: `{"hand":"up"}`}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	alice := e.dialToken(tok)
	if alice.Join.Participant.Metadata != `{"hand":"up"}` {
		t.Fatalf("alice's own metadata %+v", alice.Join.Participant)
	}
	waitNote(t, bob, proto.MethodParticipantJoined, `"metadata":"{\"hand\":\"up\"}"`)
	carol := e.join("r", "carol", false, true)
	found := false
	for _, p := range carol.Join.Participants {
		found = found || (p.Identity == "alice" && p.Metadata == `{"hand":"up"}`)
	}
	if !found {
		t.Fatalf("the join response lists alice without her metadata: %+v", carol.Join.Participants)
	}
	if _, ok := e.node.Room("r").SetParticipantMetadata("alice", "down"); !ok {
		t.Fatal("alice not here")
	}
	for _, p := range []*peer{alice, bob, carol} {
		waitNote(t, p, proto.MethodParticipantUpdated, `"metadata":"down"`)
	}
	m := "new agenda"
	e.node.Room("r").UpdateSettings(node.SettingsUpdate{Metadata: &m})
	waitNote(t, carol, proto.MethodRoomUpdated, `{"metadata":"new agenda"}`)

}

// TestMuteLock: the room API's mute reaches the publisher and the subscriber (byServer); the
// publisher's own unmute is refused with forbidden "muted by a moderator" until the room API
// asks it to unmute (unmuteRequested), after which its unmute works.
func TestMuteLock(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub := e.join("r", "pub", true, false)
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	id := res.Producers[0].ID
	sub := e.join("r", "sub", false, true)
	waitPackets(t, sub, id)
	if _, err := e.node.Room("r").MuteByServer("pub", id, true); err != nil {
		t.Fatal(err)
	}
	muted := fmt.Sprintf(`{"byServer":true,"id":%q,"muted":true}`, id)
	for _, p := range []*peer{pub, sub} {
		waitNote(t, p, proto.MethodProducerMuted, muted)
	}
	ctx := context.Background()
	err = pub.Request(ctx, proto.MethodMute, proto.MuteData{Producer: id, Muted: false}, nil)
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != proto.CodeForbidden || pe.Message != "muted by a moderator" {
		t.Fatalf("the publisher's unmute while locked: %v", err)
	}
	if _, err := e.node.Room("r").MuteByServer("pub", id, false); err != nil {
		t.Fatal(err)
	}
	waitNote(t, pub, proto.MethodUnmuteRequested, fmt.Sprintf(`{"producer":%q}`, id))
	if sub.hasNote(proto.MethodUnmuteRequested, "") {
		t.Fatal("the subscriber got the publisher's unmute request")
	}
	if err := pub.Request(ctx, proto.MethodMute, proto.MuteData{Producer: id, Muted: false}, nil); err != nil {
		t.Fatalf("the publisher's unmute after the request: %v", err)
	}
	waitNote(t, sub, proto.MethodProducerMuted, fmt.Sprintf(`{"id":%q,"muted":false}`, id))
}
