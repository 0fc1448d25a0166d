package node

import (
	"fmt"
	"sync"

	"github.com/pion/webrtc/v4"
)

// A transport is one client connection: a WebRTC PeerConnection that either carries the
// client's producers to the node (the send transport) or the node's consumers to the client
// (the receive transport). It lives on one worker, whose UDP socket carries its ICE and media.
//
// A transport owns the goroutines that read its RTCP: the consumers' feedback readers on a
// receive transport, the receivers' RTCP drains and the producers' read loops on a send
// transport. close closes the PeerConnection, which ends their reads, and waits for them.
type transport struct {
	dir    string // TransportSend or TransportRecv
	pc     *webrtc.PeerConnection
	worker *Worker

	// The receive transport's offer/answer state (the node offers), guarded by the
	// participant's mu: an offer waits for its answer, and a change meanwhile offers again.
	offerPending bool
	needOffer    bool

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // the goroutines reading the transport
}

// newTransport creates a transport's PeerConnection on worker w.
func newTransport(dir string, w *Worker) (*transport, error) {
	api := w.subAPI
	if dir == TransportSend {
		api = w.pubAPI
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		if dir == TransportSend {
			return nil, fmt.Errorf("send transport: %w", err)
		}
		return nil, fmt.Errorf("receive transport: %w", err)
	}
	return &transport{dir: dir, pc: pc, worker: w}, nil
}

// enter counts the calling goroutine among the transport's readers; it reports false once the
// transport is closed (its reads would fail at once). A goroutine that entered calls exit.
func (t *transport) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *transport) exit() { t.wg.Done() }

// goRead runs f on a goroutine owned by the transport, unless the transport is closed. f must
// return once the PeerConnection is closed.
func (t *transport) goRead(f func()) {
	if !t.enter() {
		return
	}
	go func() {
		defer t.exit()
		f()
	}()
}

// drainRTCP reads a send transport's receiver's RTCP, so that its interceptors see the sender
// reports, until the receiver stops.
func (t *transport) drainRTCP(receiver *webrtc.RTPReceiver) {
	t.goRead(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := receiver.Read(buf); err != nil {
				return
			}
		}
	})
}

// close closes the PeerConnection and waits for the transport's goroutines. The caller holds
// no lock those goroutines take. close is idempotent.
func (t *transport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	_ = t.pc.Close()
	t.wg.Wait()
}
