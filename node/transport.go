package node

import (
	"fmt"
	"sync"
	"time"

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
	cc     *ccSender     // a receive transport's bandwidth estimation (bwe.go); nil: none
	done   chan struct{} // closed by close

	// The receive transport's offer/answer state (the node offers), guarded by the
	// participant's mu: an offer waits for its answer, and a change meanwhile offers again.
	offerPending bool
	needOffer    bool

	mu        sync.Mutex
	closed    bool
	connected bool           // ICE connected (or completed)
	selected  int            // the path of the selected candidate pair; -1: none yet
	counted   int            // the worker's path counter this transport is counted in; -1: none
	wg        sync.WaitGroup // the goroutines reading the transport
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
	t := &transport{dir: dir, pc: pc, worker: w, selected: -1, counted: -1, done: make(chan struct{})}
	if dir == TransportRecv {
		pc.OnDataChannel(t.drainDataChannel) // a client's own channel on it carries nothing
	}
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		if p != nil && p.Local != nil {
			t.mu.Lock()
			t.selected = pathOf(p)
			t.recount()
			t.mu.Unlock()
		}
		t.releaseTCP(p) // a UDP pair leaves the ICE-TCP connections unused (icetcp.go)
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		t.mu.Lock()
		t.connected = s == webrtc.ICEConnectionStateConnected || s == webrtc.ICEConnectionStateCompleted
		t.recount()
		t.mu.Unlock()
	})
	return t, nil
}

// recount counts the transport, while it is connected, under the protocol and family of its
// selected candidate pair (UDP or TCP, IPv4 or IPv6) in its worker's counters. t.mu is held.
func (t *transport) recount() {
	want := -1
	if t.connected && !t.closed {
		want = t.selected
	}
	if want == t.counted {
		return
	}
	if t.counted >= 0 {
		t.worker.paths[t.counted].Add(-1)
	}
	if want >= 0 {
		t.worker.paths[want].Add(1)
	}
	t.counted = want
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

// close closes the PeerConnection and waits for the transport's goroutines, at most
// closeTimeout: pion's Close can block for good (a DTLS stop waiting for an SRTCP read loop
// stuck handing a new stream to an undeclared-stream processor that never started), and one
// such transport must not hang the participant's or the node's Close. The caller holds no
// lock those goroutines take. close is idempotent.
func (t *transport) close() {
	t.mu.Lock()
	if !t.closed {
		close(t.done)
	}
	t.closed = true
	t.recount()
	t.mu.Unlock()
	closed := make(chan struct{})
	go func() {
		_ = t.pc.Close()
		t.wg.Wait()
		close(closed)
	}()
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-closed:
	case <-timer.C:
		t.worker.log.Warn("transport close hung in pion, left behind", "dir", t.dir, "after", closeTimeout)
	}
}

// closeTimeout bounds how long close waits for pion to close a PeerConnection.
const closeTimeout = 10 * time.Second
