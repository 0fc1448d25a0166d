// Package relay carries producers between nodes: one encrypted, authenticated UDP link per pair
// of nodes (SRTP with AES-GCM, keys exchanged over NATS by the cluster layer) multiplexing
// every producer piped between them, each under its own SSRC. A datagram that does not come
// from a known peer, fails authentication, was received before (a replay window of
// ReplayWindow packets per stream), or names a key the link does not hold, is dropped and
// counted. Keys rotate on a schedule (keys.go), and no AES-GCM nonce is ever used twice
// (Link).
//
// A simulcast producer's pipe carries each layer as a stream of its own: the edge reserves
// proto.MaxLayers consecutive SSRCs per pipe (Link.NewSSRCs) and asks under the first, saying
// how many it reserved (PipeRequest.Layers: a node that predates layers asks for one, and gets
// layer 0 alone); the parent sends layer l under that SSRC plus l, from one relay sink per layer
// (node.Producer.AttachLayer), so each layer keeps its own sequence numbers, NACKs, replay
// window and keyframe requests (a PLI names the layer's SSRC), and the edge injects each packet
// with the layer its SSRC names. A producer without layers uses the first SSRC alone. Which
// layers a pipe carries is a per-pipe mask (Pipes.SetLayers: a closed layer's sink is gated,
// and costs the fan-out nothing more), for dynacast to set.
//
// Each side of a link picks the key it receives with and tells the peer, who sends with it.
// So a node that asks a peer to send (Expect, then the request) can take the peer's first
// packet the moment it arrives, even before the peer's answer does.
package relay

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// profile protects every relay link.
const profile = srtp.ProtectionProfileAeadAes128Gcm

// KeyLen is the length of a link key: SRTP master key and salt.
const KeyLen = 16 + 12

// Errors.
var (
	ErrBadKey    = errors.New("relay: bad link key")
	ErrClosed    = errors.New("relay: transport closed")
	ErrNotLinked = errors.New("relay: the peer's key is not known yet")
)

// Handler receives what arrives on the links, on the transport's read goroutine.
type Handler interface {
	// HandleRTP is a decrypted media packet of the producer piped under ssrc on link l.
	HandleRTP(l *Link, ssrc uint32, pkt []byte)
	// HandleRTCP is decrypted feedback from l's peer about producers piped to it.
	HandleRTCP(l *Link, pkts []rtcp.Packet)
}

// Drop reasons.
const (
	DropUnknownSource = "unknown_source"
	DropAuth          = "auth"
	DropMalformed     = "malformed"
	DropReplay        = "replay" // a packet already received, or too far behind to tell
	DropKey           = "key"    // under an unknown epoch's key, or one past its grace
)

// packetConn is the relay socket: a *net.UDPConn (tests wrap it to slow its writes down).
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// Transport is a node's relay endpoint: one UDP socket and the links to its peers.
type Transport struct {
	conn    packetConn
	log     hclog.Logger
	handler Handler

	mu     sync.Mutex
	links  map[string]*Link // by peer node id
	byAddr atomic.Pointer[map[netip.AddrPort]*Link]
	closed bool

	keying Keying
	now    func() time.Time // the clock (tests move it)
	stop   chan struct{}
	wg     sync.WaitGroup

	PacketsIn, PacketsOut, BytesIn, BytesOut      atomic.Uint64
	DroppedUnknown, DroppedAuth, DroppedMalformed atomic.Uint64
	DroppedReplay, DroppedKey                     atomic.Uint64
	// RefusedResend counts packets not sent because their (SSRC, index) was used before with
	// other bytes, or under an SSRC whose pipe ended (ErrIndexReused, ErrSSRCRetired).
	RefusedResend atomic.Uint64
}

// Drops reports the dropped datagrams by reason.
func (t *Transport) Drops() map[string]uint64 {
	return map[string]uint64{DropUnknownSource: t.DroppedUnknown.Load(), DropAuth: t.DroppedAuth.Load(),
		DropMalformed: t.DroppedMalformed.Load(), DropReplay: t.DroppedReplay.Load(), DropKey: t.DroppedKey.Load()}
}

// Listen opens the relay socket on addr (host:port; port 0 picks one) and starts reading,
// with the default key schedule.
func Listen(addr string, h Handler, log hclog.Logger) (*Transport, error) {
	return ListenKeyed(addr, h, log, Keying{})
}

// ListenKeyed is Listen with a key schedule.
func ListenKeyed(addr string, h Handler, log hclog.Logger, k Keying) (*Transport, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return nil, fmt.Errorf("relay listen %s: %w", addr, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	return newTransport(conn, h, log, k, time.Now), nil
}

// newTransport starts a transport on an open socket.
func newTransport(conn packetConn, h Handler, log hclog.Logger, k Keying, now func() time.Time) *Transport {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &Transport{conn: conn, log: log.Named("relay"), handler: h, links: make(map[string]*Link),
		keying: k.withDefaults(), now: now, stop: make(chan struct{})}
	empty := map[netip.AddrPort]*Link{}
	t.byAddr.Store(&empty)
	t.wg.Add(2)
	go t.read()
	go t.maintain()
	return t
}

// maintain rotates the links' sending keys on schedule and retires receiving keys past their
// grace period.
func (t *Transport) maintain() {
	defer t.wg.Done()
	every := min(t.keying.Rotation, t.keying.Grace) / 4
	every = max(min(every, time.Second), 5*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.rotate()
		}
	}
}

// rotate is one round of maintain.
func (t *Transport) rotate() {
	t.mu.Lock()
	links := make([]*Link, 0, len(t.links))
	for _, l := range t.links {
		links = append(links, l)
	}
	t.mu.Unlock()
	now := t.now()
	for _, l := range links {
		l.rotate(now)
	}
}

// Addr is the socket's address.
func (t *Transport) Addr() netip.AddrPort { return t.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// NewKey makes a random link key.
func NewKey() []byte {
	k := make([]byte, KeyLen)
	_, _ = rand.Read(k)
	return k
}

// Expect readies the link to peer to receive before this side asks the peer to send: from now
// on datagrams from addr (the peer's relay address) are the peer's, decrypted with the link's
// receiving key (Key), which the caller hands to the peer. The link sends once Link gives it
// the peer's key.
func (t *Transport) Expect(peer string, addr netip.AddrPort) (*Link, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.linkLocked(peer)
	if err != nil {
		return nil, err
	}
	if a := l.addr.Load(); a == nil || *a != addr {
		l.addr.Store(&addr)
		t.indexLocked()
	}
	return l, nil
}

// Link returns the link to peer, creating it (with a fresh receiving key) if needed. addr is
// the peer's relay address and peerKey the key the peer receives with, so this side sends with
// it; both replace what the link had (the peer may have restarted).
//
// A key of the chain the link already sends on (a later or an earlier epoch: a request that
// crossed a rotation) keeps the sending context, so no (SSRC, index) is ever sealed twice
// under one key; a key of another chain (the peer reset its side) starts a new one.
func (t *Transport) Link(peer string, addr netip.AddrPort, pk PeerKey) (*Link, error) {
	if len(pk.Key) != KeyLen || pk.SSRC == 0 {
		return nil, ErrBadKey
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.linkLocked(peer)
	if err != nil {
		return nil, err
	}
	if err := l.setPeerKey(pk, t.now()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if a := l.addr.Load(); a == nil || *a != addr {
		l.addr.Store(&addr)
		t.indexLocked()
	}
	return l, nil
}

// linkLocked returns the link to peer, creating it with a fresh receiving key if needed.
func (t *Transport) linkLocked(peer string) (*Link, error) {
	if t.closed {
		return nil, ErrClosed
	}
	if l := t.links[peer]; l != nil {
		return l, nil
	}
	rx, err := newRx(NewKey(), &t.DroppedReplay)
	if err != nil {
		return nil, err
	}
	l := &Link{Peer: peer, t: t, rx: rx, seed: maphash.MakeSeed()}
	t.links[peer] = l
	return l, nil
}

// RemoveLink forgets the link to peer (the peer left the cluster).
func (t *Transport) RemoveLink(peer string) {
	t.mu.Lock()
	if l := t.links[peer]; l != nil {
		l.closed.Store(true)
		delete(t.links, peer)
		t.indexLocked()
	}
	t.mu.Unlock()
}

// Links lists the peers with a link that sends (the peer's key is known).
func (t *Transport) Links() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.links))
	for p, l := range t.links {
		if l.linked {
			out = append(out, p)
		}
	}
	return out
}

// keepalive is what Keepalive sends: a receiver report without report blocks, which names no
// producer, so the peer's handler ignores it once the link has authenticated it.
var keepalive = []rtcp.Packet{&rtcp.ReceiverReport{}}

// Keepalive sends one authenticated keepalive to every peer the transport sends to. The
// cluster calls it every heartbeat interval: a link's keepalives are a second proof of life
// beside the NATS heartbeats, one that does not depend on NATS.
func (t *Transport) Keepalive() {
	t.mu.Lock()
	links := make([]*Link, 0, len(t.links))
	for _, l := range t.links {
		if l.linked {
			links = append(links, l)
		}
	}
	t.mu.Unlock()
	for _, l := range links {
		_ = l.WriteRTCP(keepalive)
	}
}

// Heard tells when each peer with a link last sent an authenticated keepalive or feedback
// packet (peers never heard are not listed).
func (t *Transport) Heard() map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]time.Time, len(t.links))
	for p, l := range t.links {
		if ns := l.heard.Load(); ns != 0 {
			out[p] = time.Unix(0, ns)
		}
	}
	return out
}

func (t *Transport) indexLocked() {
	m := make(map[netip.AddrPort]*Link, len(t.links))
	for _, l := range t.links {
		if a := l.addr.Load(); a != nil {
			m[*a] = l
		}
	}
	t.byAddr.Store(&m)
}

// Close stops the transport.
func (t *Transport) Close() {
	t.mu.Lock()
	if !t.closed {
		close(t.stop)
	}
	t.closed = true
	t.mu.Unlock()
	_ = t.conn.Close()
	t.wg.Wait()
}

func (t *Transport) read() {
	defer t.wg.Done()
	buf := make([]byte, 1600)
	plain := make([]byte, 1600)
	var hdr rtp.Header
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t.receive(buf[:n], from, plain, &hdr)
	}
}

// receive authenticates, decrypts and hands on one datagram, or drops and counts it. It runs
// on the read goroutine; plain and hdr are its scratch space.
func (t *Transport) receive(pkt []byte, from netip.AddrPort, plain []byte, hdr *rtp.Header) {
	l := (*t.byAddr.Load())[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]
	if l == nil {
		t.DroppedUnknown.Add(1)
		return
	}
	if len(pkt) < 12 {
		t.DroppedMalformed.Add(1)
		return
	}
	if isRTCP(pkt) {
		replays := t.DroppedReplay.Load()
		l.rxMu.Lock()
		out, err := l.rx.ctx.DecryptRTCP(plain[:0], pkt, nil)
		if err == nil {
			l.rx.authenticated(pkt, t.now, t.keying.Grace)
		}
		l.rxMu.Unlock()
		if err != nil {
			t.dropUndecrypted(err, replays)
			return
		}
		l.heard.Store(time.Now().UnixNano()) // authenticated: the peer is alive
		pkts, err := rtcp.Unmarshal(out)
		if err != nil {
			t.DroppedMalformed.Add(1)
			return
		}
		t.handler.HandleRTCP(l, pkts)
		return
	}
	replays := t.DroppedReplay.Load()
	l.rxMu.Lock()
	out, err := l.rx.ctx.DecryptRTP(plain[:0], pkt, hdr)
	if err == nil {
		l.rx.authenticated(pkt, t.now, t.keying.Grace)
	}
	l.rxMu.Unlock()
	if err != nil {
		t.dropUndecrypted(err, replays)
		return
	}
	t.PacketsIn.Add(1)
	t.BytesIn.Add(uint64(len(pkt)))
	t.handler.HandleRTP(l, hdr.SSRC, out)
}

// dropUndecrypted counts a datagram that did not decrypt, by reason. The replay windows count
// their own rejections (replays is the count before the decryption).
func (t *Transport) dropUndecrypted(err error, replays uint64) {
	switch {
	case t.DroppedReplay.Load() != replays:
	case errors.Is(err, srtp.ErrMKINotFound):
		t.DroppedKey.Add(1)
	default:
		t.DroppedAuth.Add(1)
	}
}

// isRTCP tells RTCP from RTP on a shared port (RFC 5761): RTCP packet types are 192-223.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }
