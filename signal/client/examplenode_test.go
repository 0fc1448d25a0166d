package client_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// exampleNode is a real Cascade node on loopback for the examples, as `cascade node` runs one:
// a media node and its signaling server, with the development key pair.
type exampleNode struct {
	// URL is the node's signaling WebSocket (ws://127.0.0.1:PORT/ws).
	URL  string
	keys auth.Keys
	n    *node.Node
	srv  *signal.Server
	hs   *httptest.Server
}

func startNode() (*exampleNode, error) {
	hs := httptest.NewUnstartedServer(nil)
	n, err := node.New(node.Options{Workers: 1, LoopbackOnly: true, Logger: hclog.NewNullLogger(), HTTPURL: "http://" + hs.Listener.Addr().String()})
	if err != nil {
		hs.Close()
		return nil, err
	}
	keys := auth.DevKeys()
	srv := signal.NewServer(n, signal.Options{Keys: keys, Logger: hclog.NewNullLogger()})
	hs.Config.Handler = srv.Handler()
	hs.Start()
	return &exampleNode{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", keys: keys, n: n, srv: srv, hs: hs}, nil
}

// testNode is startNode for a test: it fails the test if the node does not start, and closes
// the node when the test ends.
func testNode(t *testing.T) *exampleNode {
	t.Helper()
	n, err := startNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// Token mints what an application's token server would: identity may join room, publish and
// subscribe, for a minute.
func (e *exampleNode) Token(room, identity string) string {
	tok, err := e.keys.Mint(auth.Grant{Room: room, Identity: identity, Publish: true, Subscribe: true}, time.Minute)
	if err != nil {
		return "" // the join then fails with "unauthorized"
	}
	return tok
}

func (e *exampleNode) Close() {
	e.srv.Close()
	e.hs.Close()
	e.n.Close()
}

// sendVideo writes a synthetic VP8 packet to track every 20 ms until the returned stop is called
// (a camera would do the same through a codec).
func sendVideo(track *webrtc.TrackLocalStaticRTP) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 400)
		payload[0] = 0x10 // VP8 payload descriptor: start of a partition; a keyframe follows
		for seq := uint16(1); ; seq++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
