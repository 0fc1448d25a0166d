package signal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// rawFrom is a raw WebSocket whose request says, in X-Forwarded-For, that it comes from addr.
func (e *env) rawFrom(addr string) *rawConn {
	e.t.Helper()
	h := http.Header{}
	h.Set("X-Forwarded-For", addr)
	c, _, err := websocket.Dial(context.Background(), e.ws, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	e.t.Cleanup(func() { _ = c.CloseNow() })
	return &rawConn{e.t, c}
}

// postFrom is post with X-Forwarded-For (when addr is set); it returns the response.
func (e *env) postFrom(addr, path, token, body string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func joinFrame(token string) string {
	return fmt.Sprintf(`{"id":1,"method":"join","data":{"token":%q}}`, token)
}

// stillConnected fails the test if any of the clients has lost its session.
func stillConnected(t *testing.T, ps ...*peer) {
	t.Helper()
	for _, p := range ps {
		select {
		case <-p.Done():
			t.Fatal("a neighbour's session ended")
		default:
		}
	}
}

// TestJoinRateLimitPerAddress: past its burst, a client address gets rate_limited on /ws and
// 429 with Retry-After on WHIP; a client behind the same trusted proxy with another address
// joins as before, and the sessions already joined are untouched.
func TestJoinRateLimitPerAddress(t *testing.T) {
	proxies, err := signal.ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := startNode(t, node.Options{Workers: 1}, nil, func(o *signal.Options) {
		o.Joins = signal.JoinLimits{Rate: 0.01, Burst: 3, TrustedProxies: proxies}
	})
	var joined []*peer
	for i := 0; i < 3; i++ {
		joined = append(joined, e.join("r", fmt.Sprint("p", i), true, true))
	}
	_, err = e.dial("r", "one-too-many", true, true, false)
	if codeOf(err) != proto.CodeRateLimited {
		t.Fatalf("the fourth join from one address: %v, want %s", err, proto.CodeRateLimited)
	}
	resp := e.postFrom("", "/whip/r", e.token("r", "enc", true, false), "v=0\r\n")
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || ra < 1 {
		t.Fatalf("WHIP from the limited address: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	// Another client behind the proxy: its own bucket.
	other := e.rawFrom("198.51.100.7")
	other.expectOK(joinFrame(e.token("r", "other", false, true)))
	if resp := e.postFrom("203.0.113.9", "/whip/r", e.token("r", "enc2", true, false), "v=0\r\n"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("WHIP from another address: %s, want 400 for its bad offer (past the limit)", resp.Status)
	}
	stillConnected(t, joined...)
	if n := len(e.node.Room("r").Participants()); n != 4 {
		t.Fatalf("%d participants in the room, want 4", n)
	}
}

// expectOK sends a request and fails unless it succeeds.
func (r *rawConn) expectOK(frame string) {
	r.t.Helper()
	r.send(frame)
	got, err := r.next()
	if err != nil || !strings.Contains(got, `"ok":true`) {
		r.t.Fatalf("%.60s: got %s, %v", frame, got, err)
	}
}

// TestJoinRoomFull: a room at its cap refuses one more participant with room_full (WHEP:
// 403); its participants stay, a new session of one of their identities still replaces the old
// one, and other rooms take joins.
func TestJoinRoomFull(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1, Limits: node.Limits{RoomParticipants: 2}}, nil)
	pub, res := publishVideo(t, e, "r", "a", true)
	b := e.join("r", "b", false, true)
	waitPackets(t, b, producerIDs(res)...)
	if _, err := e.dial("r", "c", false, true, false); codeOf(err) != proto.CodeRoomFull {
		t.Fatalf("a third participant: %v, want %s", err, proto.CodeRoomFull)
	}
	if resp := e.postFrom("", "/whep/r", e.token("r", "player", false, true), "v=0\r\n"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("WHEP into the full room: %s, want 403", resp.Status)
	}
	before := b.received(res.Producers[0].ID)
	checkFor(t, 5*time.Second, func() error {
		if b.received(res.Producers[0].ID) < before+20 {
			return fmt.Errorf("b's media stalled")
		}
		return nil
	})
	stillConnected(t, pub, b)
	b2 := e.join("r", "b", false, true) // b reconnects: replaces, not counted twice
	checkFor(t, 5*time.Second, func() error {
		select {
		case <-b.Done():
			return nil
		default:
			return fmt.Errorf("the replaced session is still open")
		}
	})
	e.join("s", "c", false, true)
	stillConnected(t, pub, b2)
}

// TestJoinTooManyRooms: a node at its cap of rooms refuses a join that would open one more
// with too_many_rooms (WHIP: 503), serves joins of the rooms it has, and takes a new room once
// one has closed.
func TestJoinTooManyRooms(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1, Limits: node.Limits{Rooms: 2}}, nil)
	a := e.join("r1", "a", true, true)
	b := e.join("r2", "b", true, true)
	if _, err := e.dial("r3", "c", true, true, false); codeOf(err) != proto.CodeTooManyRooms {
		t.Fatalf("a third room: %v, want %s", err, proto.CodeTooManyRooms)
	}
	if resp := e.postFrom("", "/whip/r3", e.token("r3", "enc", true, false), "v=0\r\n"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("WHIP opening a third room: %s, want 503", resp.Status)
	}
	e.join("r1", "d", true, true)
	stillConnected(t, a, b)
	_ = b.Close()
	checkFor(t, 5*time.Second, func() error {
		if _, err := e.dial("r3", "c", true, true, false); err != nil {
			return fmt.Errorf("r3 after r2 closed: %v", err)
		}
		return nil
	})
}

// TestJoinTooManyTracks: an offer sending more tracks than the cap is refused with
// too_many_tracks (WHIP: 403); the offender stays connected and a neighbour's media flows.
func TestJoinTooManyTracks(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1, Limits: node.Limits{Tracks: 1}}, nil)
	pub, res := publishVideo(t, e, "r", "pub", true) // one track: within the cap
	greedy := e.join("r", "greedy", true, true)
	_, err := greedy.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "g").track,
		newSource(t, webrtc.MimeTypeOpus, "a", "g").track)
	if codeOf(err) != proto.CodeTooManyTracks {
		t.Fatalf("two tracks: %v, want %s", err, proto.CodeTooManyTracks)
	}
	waitPackets(t, greedy, producerIDs(res)...) // still a subscriber in the room
	viewer := e.join("r", "viewer", false, true)
	waitPackets(t, viewer, producerIDs(res)...)
	stillConnected(t, pub, greedy, viewer)

	api := loopbackAPI(t)
	enc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, s := range []*source{newSource(t, webrtc.MimeTypeVP8, "v", "obs"), newSource(t, webrtc.MimeTypeOpus, "a", "obs")} {
		if _, err := enc.AddTransceiverFromTrack(s.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	status, body, _ := e.post("/whip/r", e.token("r", "obs", true, false), "application/sdp", vp8pub.Offer(t, enc))
	if status != http.StatusForbidden || !strings.Contains(body, proto.CodeTooManyTracks) {
		t.Fatalf("WHIP with two tracks: %d %q, want 403 %s", status, body, proto.CodeTooManyTracks)
	}
	if n := len(e.node.Room("r").Producers()); n != 1 {
		t.Fatalf("%d producers in the room, want 1", n)
	}
}

// TestJoinTrustedProxies: the trusted-proxy list parses CIDRs and addresses, and refuses
// anything else.
func TestJoinTrustedProxies(t *testing.T) {
	got, err := signal.ParseTrustedProxies(" 10.0.0.0/8, 2001:db8::/32,192.0.2.1 ,,")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.1/32")}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if _, err := signal.ParseTrustedProxies("10.0.0.0/8,proxy.example"); err == nil {
		t.Fatal("a host name was accepted")
	}
}
