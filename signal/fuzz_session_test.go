package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// fuzzRoom holds one publisher (video and audio), so that a fuzzed subscriber is offered
// tracks and a fuzzed WHEP viewer has something to watch.
const fuzzRoom = "fz"

// fuzzNode is a node and its HTTP server for fuzz targets (which get a *testing.F, not the
// *testing.T of startNode), with the publisher in fuzzRoom.
type fuzzNode struct {
	n       *node.Node
	handler http.Handler
	ws      string
	ids     atomic.Int64
}

func newFuzzNode(tb testing.TB) *fuzzNode {
	reg := prometheus.NewRegistry()
	log := hclog.NewNullLogger()
	hs := httptest.NewUnstartedServer(nil)
	n, err := node.New(node.Options{Workers: 1, LoopbackOnly: true, Logger: log, Registerer: reg, HTTPURL: "http://" + hs.Listener.Addr().String()})
	if err != nil {
		tb.Fatal(err)
	}
	srv := signal.NewServer(n, signal.Options{Keys: testKeys, Logger: log, Gatherer: reg,
		Joins:       signal.JoinLimits{Rate: -1}, // the fuzzer joins thousands of times from one address
		ResumeGrace: -1})                         // a dropped session goes at once: the next input must not find it
	hs.Config.Handler = srv.Handler()
	hs.Start()
	tb.Cleanup(func() { srv.Close(); hs.Close(); n.Close() })
	f := &fuzzNode{n: n, handler: srv.Handler(), ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	pub, err := client.Dial(context.Background(), f.ws, client.Options{Token: f.token("publisher", true, false), LoopbackOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pub.Close() })
	var tracks []webrtc.TrackLocal
	for _, c := range []webrtc.RTPCodecCapability{{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}} {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, c.MimeType, "s")
		if err != nil {
			tb.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	if _, err := pub.Publish(context.Background(), tracks...); err != nil {
		tb.Fatal(err)
	}
	return f
}

func (f *fuzzNode) token(identity string, publish, subscribe bool) string {
	tok, err := testKeys.Mint(auth.Grant{Room: fuzzRoom, Identity: identity, Publish: publish, Subscribe: subscribe}, time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

// participants waits until the node holds want participants (the publisher alone, once a
// fuzzed session is gone) and fails the test if it does not within 8 s (under the 10 s after
// which the fuzzer takes an input for a hang), writing a goroutine dump of the test process
// (the node runs in it) to the temporary directory. (A session seen to stay, its reader waiting
// for a frame, was an earlier input's whose client the target had left open.)
func (f *fuzzNode) participants(t *testing.T, want int, what string) {
	deadline := time.Now().Add(8 * time.Second)
	for f.n.Stats().Participants != want {
		if time.Now().After(deadline) {
			var left []string
			for _, r := range f.n.Rooms() {
				for _, p := range r.Participants() {
					left = append(left, r.Name()+"/"+p.Identity)
				}
			}
			dump := filepath.Join(os.TempDir(), fmt.Sprintf("fuzzsession-goroutines-%d.txt", os.Getpid()))
			if fd, err := os.Create(dump); err == nil {
				_ = pprof.Lookup("goroutine").WriteTo(fd, 1)
				fd.Close()
			}
			t.Fatalf("%s: %d participants left on the node, want %d: %v (goroutines: %s)", what, f.n.Stats().Participants, want, left, dump)
		}
		time.Sleep(time.Millisecond)
	}
}

// fuzzSession is a joined WebSocket session, spoken to frame by frame.
type fuzzSession struct {
	t     *testing.T
	c     *websocket.Conn
	ctx   context.Context
	offer string // the node's offer of the room's tracks
}

func (f *fuzzNode) join(t *testing.T) *fuzzSession {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, f.ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	s := &fuzzSession{t: t, c: c, ctx: ctx}
	id := fmt.Sprintf("f%d", f.ids.Add(1))
	join, _ := json.Marshal(map[string]any{"id": 1, "method": "join", "data": map[string]any{"token": f.token(id, true, true)}})
	if r := s.request(join, "1"); !r.OK {
		t.Fatalf("join refused: %+v", r.Error)
	}
	return s
}

// request sends frame and returns the response with id, keeping the node's offer.
func (s *fuzzSession) request(frame []byte, id string) proto.Response {
	if err := s.c.Write(s.ctx, websocket.MessageText, frame); err != nil {
		s.t.Fatal(err)
	}
	return s.response(id)
}

func (s *fuzzSession) response(id string) proto.Response {
	for {
		_, b, err := s.c.Read(s.ctx)
		if err != nil {
			s.t.Fatalf("no response to request %s: %v", id, err)
		}
		var m struct {
			proto.Response
			Method string          `json:"method"`
			Data   json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			s.t.Fatalf("the node sent a frame that is not JSON: %q", b)
		}
		if m.Method == proto.MethodOffer {
			var d proto.SDPData
			_ = json.Unmarshal(m.Data, &d)
			s.offer = d.SDP
		}
		if m.Method == "" && m.ID != nil && m.ID.String() == id {
			m.Response.Data = m.Data
			return m.Response
		}
	}
}

// awaitOffer reads until the node offers the room's tracks.
func (s *fuzzSession) awaitOffer() {
	for s.offer == "" {
		_, b, err := s.c.Read(s.ctx)
		if err != nil {
			s.t.Fatalf("the node offered no tracks to a subscriber: %v", err)
		}
		var n proto.Notification
		var d struct {
			Data proto.SDPData `json:"data"`
		}
		if json.Unmarshal(b, &n) == nil && n.Method == proto.MethodOffer && json.Unmarshal(b, &d) == nil {
			s.offer = d.Data.SDP
		}
	}
}

var errorCode = regexp.MustCompile(`^[a-z][a-z_]*$`)

// checkResponse: an error has a code and a message; a successful publish has an answer that
// parses as SDP.
func checkResponse(t *testing.T, r proto.Response, publish bool) {
	if !r.OK {
		if r.Error == nil || !errorCode.MatchString(r.Error.Code) || r.Error.Message == "" {
			t.Fatalf("malformed error response %+v", r.Error)
		}
		return
	}
	if publish {
		var res proto.PublishResult
		b, _ := json.Marshal(r.Data)
		var desc sdp.SessionDescription
		if json.Unmarshal(b, &res) != nil || desc.UnmarshalString(res.SDP) != nil {
			t.Fatalf("publish accepted, but its answer is not SDP: %s", b)
		}
	}
}

// Session frames: what the fuzzer's string becomes after join.
const (
	sessPublish     = iota // publish {sdp}
	sessAnswer             // answer {sdp} to the node's offer of the room's tracks
	sessTrickleSend        // publish a good offer, then trickle {candidate} on the send transport
	sessTrickleRecv        // answer the node's offer, then trickle {candidate} on the receive transport
	sessRawData            // the string is the raw data of a publish, answer or trickle request
	sessModes
)

// FuzzSession drives a real joined session over a real WebSocket: SDP offers and answers and
// trickle candidates from the fuzzer. Every request gets exactly one response, well-formed;
// a publish the node accepts has an SDP answer; and once the client goes, the node is back
// to the publisher alone (no participant, transport or room leaks).
func FuzzSession(f *testing.F) {
	offer, answerFor := fuzzSDP(f)
	f.Add(uint8(sessPublish), offer)
	f.Add(uint8(sessPublish), "v=0\r\n")
	f.Add(uint8(sessAnswer), "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
	f.Add(uint8(sessTrickleSend), "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
	f.Add(uint8(sessTrickleRecv), "candidate:1 1 tcp 2130706431 127.0.0.1 9 typ host tcptype passive")
	f.Add(uint8(sessTrickleSend), "")
	f.Add(uint8(sessRawData), `{"sdp":7}`)
	fn := newFuzzNode(f)
	base := fn.n.Stats().Participants
	f.Fuzz(func(t *testing.T, mode uint8, s string) {
		if len(s) > proto.MaxMessage {
			return
		}
		sess := fn.join(t)
		data := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
		id := 1
		req := func(method string, d json.RawMessage) []byte {
			id++
			b, _ := json.Marshal(map[string]any{"id": id, "method": method, "data": d})
			return b
		}
		var r proto.Response
		switch mode % sessModes {
		case sessPublish:
			r = sess.request(req(proto.MethodPublish, data(proto.SDPData{SDP: s})), "2")
			checkResponse(t, r, true)
		case sessAnswer:
			sess.awaitOffer()
			checkResponse(t, sess.request(req(proto.MethodAnswer, data(proto.SDPData{SDP: s})), "2"), false)
		case sessTrickleSend, sessTrickleRecv:
			transport := node.TransportSend
			if mode%sessModes == sessTrickleSend {
				if r := sess.request(req(proto.MethodPublish, data(proto.SDPData{SDP: offer})), "2"); !r.OK {
					t.Fatalf("a good offer refused: %+v", r.Error)
				}
			} else {
				transport = node.TransportRecv
				sess.awaitOffer()
				ans, err := answerFor(sess.offer)
				if err != nil {
					t.Fatal(err)
				}
				if r := sess.request(req(proto.MethodAnswer, data(proto.SDPData{SDP: ans})), "2"); !r.OK {
					t.Fatalf("a good answer refused: %+v", r.Error)
				}
			}
			mid, line := "0", uint16(0)
			td := proto.TrickleData{Transport: transport, Candidate: proto.ICECandidateInit{Candidate: s, SDPMid: &mid, SDPMLineIndex: &line}}
			checkResponse(t, sess.request(req(proto.MethodTrickle, data(td)), "3"), false) // the second request
		case sessRawData:
			method := []string{proto.MethodPublish, proto.MethodAnswer, proto.MethodTrickle}[len(s)%3]
			frame := fmt.Appendf(nil, `{"id":2,"method":%q,"data":%s}`, method, s)
			if !json.Valid(frame) {
				_ = sess.c.CloseNow() // else this session stays for the next input to find
				fn.participants(t, base, "after the session closed")
				return
			}
			checkResponse(t, sess.request(frame, "2"), method == proto.MethodPublish)
		}
		_ = sess.c.Close(websocket.StatusNormalClosure, "")
		fn.participants(t, base, "after the session closed")
	})
}
