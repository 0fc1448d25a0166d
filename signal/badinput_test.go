package signal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// rawConn is a WebSocket without the Go client, for frames the client would never send.
type rawConn struct {
	t *testing.T
	c *websocket.Conn
}

func (e *env) raw() *rawConn {
	e.t.Helper()
	c, _, err := websocket.Dial(context.Background(), e.ws, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	e.t.Cleanup(func() { _ = c.CloseNow() })
	return &rawConn{e.t, c}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if err := r.c.Write(context.Background(), websocket.MessageText, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// next reads frames until a response arrives and returns it.
func (r *rawConn) next() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := r.c.Read(ctx)
		if err != nil {
			return "", err
		}
		if strings.Contains(string(b), `"ok":`) {
			return string(b), nil
		}
	}
}

func (r *rawConn) expect(frame, code string) {
	r.t.Helper()
	r.send(frame)
	got, err := r.next()
	if err != nil {
		r.t.Fatalf("%s: %v", frame, err)
	}
	if !strings.Contains(got, `"code":"`+code+`"`) {
		r.t.Fatalf("%s: got %s, want code %s", frame, got, code)
	}
}

func codeOf(err error) string {
	var e *proto.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "not a signal error: " + fmt.Sprint(err)
}

// TestBadInput: every malformed or unauthorized request gets its documented code, the
// connection stays usable, and a publisher's media keeps flowing to a bystander meanwhile.
func TestBadInput(t *testing.T) {
	e := newEnv(t, 2, 100)
	_, res := publishVideo(t, e, "r", "pub", true)
	bystander := e.join("r", "bystander", false, true)
	waitPackets(t, bystander, res.Producers[0].ID)

	r := e.raw()
	r.expect(`{not json`, "bad_request")
	r.expect(`[1,2]`, "bad_request")
	r.expect(`{"id":1}`, "bad_request")
	r.expect(`{"id":2,"method":"fly"}`, "unknown_method")
	r.expect(`{"id":3,"method":"publish","data":{"sdp":"x"}}`, "not_joined")
	r.expect(`{"id":4,"method":"join","data":{}}`, "unauthorized")
	r.expect(`{"id":5,"method":"join","data":{"token":"abc.def.ghi"}}`, "unauthorized")
	r.expect(`{"id":6,"method":"join","data":"wrong shape"}`, "bad_request")
	wrongKey, _ := auth.Keys{Key: testKeys.Key, Secret: "another-secret-of-32-characters!"}.Mint(auth.Grant{Room: "r", Identity: "x", Subscribe: true}, time.Minute)
	r.expect(`{"id":7,"method":"join","data":{"token":"`+wrongKey+`"}}`, "unauthorized")
	expired, _ := testKeys.Mint(auth.Grant{Room: "r", Identity: "x", Subscribe: true}, -time.Minute)
	r.expect(`{"id":8,"method":"join","data":{"token":"`+expired+`"}}`, "token_expired")
	// The connection is still usable: a good join works after all that.
	r.send(`{"id":9,"method":"join","data":{"token":"` + e.token("r", "raw", false, true) + `"}}`)
	if got, err := r.next(); err != nil || !strings.Contains(got, `"ok":true`) {
		t.Fatalf("join after bad input: %s %v", got, err)
	}
	r.expect(`{"id":10,"method":"join","data":{"token":"`+e.token("r", "raw2", false, true)+`"}}`, "already_joined")
	r.expect(`{"id":11,"method":"answer","data":{"sdp":"garbage"}}`, "bad_sdp")
	r.expect(`{"id":12,"method":"subscribe","data":{"producer":"nope"}}`, "not_found")
	r.expect(`{"id":13,"method":"trickle","data":{"transport":"sideways","candidate":{"candidate":"x"}}}`, "bad_request")

	ctx := context.Background()
	// Publishing without the grant.
	viewer := e.join("r", "viewer", false, true)
	if _, err := viewer.Publish(ctx, newSource(t, webrtc.MimeTypeVP8, "v2", "s2").track); codeOf(err) != "forbidden" {
		t.Fatalf("publish without grant: %v", err)
	}
	if err := viewer.Request(ctx, "mute", map[string]any{"producer": res.Producers[0].ID, "muted": true}, nil); codeOf(err) != "forbidden" {
		t.Fatalf("mute without grant: %v", err)
	}
	// Muting someone else's producer.
	other := e.join("r", "other", true, true)
	if err := other.Request(ctx, "mute", map[string]any{"producer": res.Producers[0].ID, "muted": true}, nil); codeOf(err) != "not_found" {
		t.Fatalf("mute of another's producer: %v", err)
	}
	// Bad SDP in publish.
	if err := other.Request(ctx, "publish", map[string]string{"sdp": "v=0\r\nthis is not sdp"}, nil); codeOf(err) != "bad_sdp" {
		t.Fatalf("bad sdp: %v", err)
	}
	// An answer with no offer outstanding (the first offer was already answered).
	checkFor(t, 5*time.Second, func() error {
		if other.Recv() == nil || other.Recv().RemoteDescription() == nil {
			return fmt.Errorf("no receive transport yet")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if err := other.Request(ctx, "answer", map[string]string{"sdp": other.Recv().LocalDescription().SDP}, nil); codeOf(err) != "bad_state" {
		t.Fatalf("unsolicited answer: %v", err)
	}

	// The bystander never noticed.
	before := bystander.received(res.Producers[0].ID)
	checkFor(t, 5*time.Second, func() error {
		if n := bystander.received(res.Producers[0].ID); n < before+10 {
			return fmt.Errorf("bystander stalled at %d", n)
		}
		return nil
	})
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	e := newEnv(t, 1, 100)
	r := e.raw()
	r.send(`{"id":1,"method":"message","data":{"data":"` + strings.Repeat("x", proto.MaxMessage) + `"}}`)
	_, err := r.next()
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame: got %v, want close 1009", err)
	}
}

func TestManyMalformedFramesCloseConnection(t *testing.T) {
	e := newEnv(t, 1, 100)
	r := e.raw()
	for i := 0; i < 25; i++ {
		_ = r.c.Write(context.Background(), websocket.MessageText, []byte("nope"))
	}
	var err error
	for err == nil {
		_, err = r.next()
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("got %v, want close 1008", err)
	}
}

// TestVanishingClients: a publisher that drops its socket mid-negotiation and a subscriber
// that vanishes are both cleaned up, and the others keep their media.
func TestVanishingClients(t *testing.T) {
	// A vanished client's participant stays for the resume grace: a short one here.
	e := startNode(t, node.Options{Workers: 2, WorkerConsumers: 100}, nil, func(o *signal.Options) { o.ResumeGrace = 300 * time.Millisecond })
	_, res := publishVideo(t, e, "r", "pub", true)
	stay := e.join("r", "stay", false, true)
	waitPackets(t, stay, res.Producers[0].ID)

	// Vanishes after sending an offer, before the answer could be used.
	ghost, err := client.Dial(context.Background(), e.ws, client.Options{Token: e.token("r", "ghost", true, true), LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = ghost.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "g", "g").track) }()
	time.Sleep(20 * time.Millisecond)
	ghost.Abort()
	// A subscriber that vanishes without leaving.
	gone := e.join("r", "gone", false, true)
	waitPackets(t, gone, res.Producers[0].ID)
	gone.Abort()

	checkFor(t, 10*time.Second, func() error {
		ps := e.node.Room("r").Participants()
		if len(ps) != 2 {
			return fmt.Errorf("%d participants left, want 2: %v", len(ps), ps)
		}
		if c := e.node.Stats().Consumers; c != 1 {
			return fmt.Errorf("%d consumers, want 1", c)
		}
		return nil
	})
	before := stay.received(res.Producers[0].ID)
	checkFor(t, 5*time.Second, func() error {
		if n := stay.received(res.Producers[0].ID); n < before+10 {
			return fmt.Errorf("stay stalled at %d", n)
		}
		return nil
	})
}

// TestSameIdentityReplacesSession: a reconnecting client (same identity) replaces its old
// session, which is told why and closed.
func TestSameIdentityReplacesSession(t *testing.T) {
	e := newEnv(t, 1, 100)
	old := e.join("r", "alice", true, true)
	e.join("r", "alice", true, true)
	select {
	case <-old.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old session not closed")
	}
	if !old.hasNote("closed", "replaced") {
		t.Fatal("old session not told why")
	}
	if n := len(e.node.Room("r").Participants()); n != 1 {
		t.Fatalf("%d participants, want 1", n)
	}
}
