package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// recorder keeps a client's decoded notifications.
type recorder struct {
	mu    sync.Mutex
	notes []any
}

func (r *recorder) on(method string, data json.RawMessage) {
	n, err := client.Decode(method, data)
	if err != nil {
		n = err
	}
	r.mu.Lock()
	r.notes = append(r.notes, n)
	r.mu.Unlock()
}

// wait returns the first notification for which match is true, failing the test after 10 s.
func wait[T any](t *testing.T, r *recorder, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		for _, n := range r.notes {
			if v, ok := n.(T); ok && match(v) {
				r.mu.Unlock()
				return v
			}
		}
		got := append([]any(nil), r.notes...)
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s among %+v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoomAPINotifications: the Go client against a real node whose room is acted on as the
// room API does (node.Room's operations): typed metadata, roomUpdated, a moderator's mute that
// refuses the publisher's own unmute until an unmuteRequested, and the close reasons of a
// removal and of the room's deletion.
func TestRoomAPINotifications(t *testing.T) {
	nd := testNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(identity, metadata string, r *recorder) *client.Client {
		t.Helper()
		tok, err := nd.keys.Mint(auth.Grant{Room: "r", Identity: identity, Publish: true, Subscribe: true, Metadata: metadata}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, nd.URL, client.Options{Token: tok, LoopbackOnly: true, OnNotification: r.on})
		if err != nil {
			t.Fatalf("dial %s: %v", identity, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	var ra, rb recorder
	alice := dial("alice", `{"role":"host"}`, &ra)
	if alice.Join.Participant.Metadata != `{"role":"host"}` {
		t.Errorf("alice's metadata in her join response: %q", alice.Join.Participant.Metadata)
	}
	bob := dial("bob", "", &rb)
	found := false
	for _, p := range bob.Join.Participants {
		found = found || (p.Identity == "alice" && p.Metadata == `{"role":"host"}`)
	}
	if !found {
		t.Errorf("bob's join response lacks alice's metadata: %+v", bob.Join.Participants)
	}

	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Publish(ctx, video); err != nil {
		t.Fatal(err)
	}
	stop := sendVideo(video)
	defer stop()
	producer := wait(t, &rb, "producerAdded", func(p proto.Producer) bool { return p.Participant == alice.Join.Participant.ID }).ID

	room := nd.n.Room("r")
	if room == nil {
		t.Fatal("no room r on the node")
	}
	meta := "weekly sync"
	room.UpdateSettings(node.SettingsUpdate{Metadata: &meta})
	for _, r := range []*recorder{&ra, &rb} {
		wait(t, r, "roomUpdated", func(u proto.RoomUpdated) bool { return u.Metadata == meta })
	}
	if _, ok := room.SetParticipantMetadata("bob", "speaker"); !ok {
		t.Fatal("SetParticipantMetadata: bob not found")
	}
	for _, r := range []*recorder{&ra, &rb} {
		wait(t, r, "participantUpdated", func(p proto.Participant) bool { return p.Identity == "bob" && p.Metadata == "speaker" })
	}

	// A moderator's mute: byServer, and alice's own unmute is refused until the request.
	if _, err := room.MuteByServer("alice", producer, true); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{&ra, &rb} {
		wait(t, r, "producerMuted byServer", func(m proto.ProducerMuted) bool { return m.ID == producer && m.Muted && m.ByServer })
	}
	unmute := proto.MuteData{Producer: producer, Muted: false}
	var perr *proto.Error
	if err := alice.Request(ctx, proto.MethodMute, unmute, nil); !errors.As(err, &perr) || perr.Code != proto.CodeForbidden {
		t.Fatalf("alice's own unmute while locked: %v, want forbidden", err)
	}
	if _, err := room.MuteByServer("alice", producer, false); err != nil {
		t.Fatal(err)
	}
	wait(t, &ra, "unmuteRequested", func(u proto.UnmuteRequested) bool { return u.Producer == producer })
	if err := alice.Request(ctx, proto.MethodMute, unmute, nil); err != nil {
		t.Fatalf("alice's unmute after the request: %v", err)
	}
	wait(t, &rb, "producerMuted false", func(m proto.ProducerMuted) bool { return m.ID == producer && !m.Muted && !m.ByServer })

	// Removed, then the room deleted: each session ends with its reason and close code.
	checkClosed := func(c *client.Client, code int, reason string) {
		t.Helper()
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatalf("the session did not end (%s)", reason)
		}
		var ce *client.CloseError
		if !errors.As(c.Err(), &ce) || ce.Code != code || ce.Reason != reason || !ce.Final() {
			t.Errorf("Err = %v, want code %d reason %s, final", c.Err(), code, reason)
		}
	}
	if room.RemoveParticipant("bob", proto.ReasonRemoved) != 1 {
		t.Fatal("RemoveParticipant: bob not found")
	}
	checkClosed(bob, proto.CloseRemoved, proto.ReasonRemoved)
	wait(t, &rb, "closed removed", func(c proto.Closed) bool { return c.Reason == proto.ReasonRemoved })
	room.Delete()
	checkClosed(alice, proto.CloseRoomDeleted, proto.ReasonRoomDeleted)
}
