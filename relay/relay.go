// Package relay carries producers between nodes: one encrypted, authenticated UDP link per pair
// of nodes (SRTP with AES-GCM, keys exchanged over NATS by the cluster layer) multiplexing
// every producer piped between them, each under its own SSRC. A datagram that does not come
// from a known peer, or fails authentication, is dropped and counted.
//
// Each side of a link picks the key it receives with and tells the peer, who sends with it.
// So a node that asks a peer to send (Expect, then the request) can take the peer's first
// packet the moment it arrives, even before the peer's answer does.
package relay

import (
	"crypto/rand"
	"errors"
	"fmt"
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

	wg sync.WaitGroup

	PacketsIn, PacketsOut, BytesIn, BytesOut      atomic.Uint64
	DroppedUnknown, DroppedAuth, DroppedMalformed atomic.Uint64
}

// Listen opens the relay socket on addr (host:port; port 0 picks one) and starts reading.
func Listen(addr string, h Handler, log hclog.Logger) (*Transport, error) {
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
	return newTransport(conn, h, log), nil
}

// newTransport starts a transport on an open socket.
func newTransport(conn packetConn, h Handler, log hclog.Logger) *Transport {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &Transport{conn: conn, log: log.Named("relay"), handler: h, links: make(map[string]*Link)}
	empty := map[netip.AddrPort]*Link{}
	t.byAddr.Store(&empty)
	t.wg.Add(1)
	go t.read()
	return t
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
func (t *Transport) Link(peer string, addr netip.AddrPort, peerKey []byte) (*Link, error) {
	if len(peerKey) != KeyLen {
		return nil, ErrBadKey
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.linkLocked(peer)
	if err != nil {
		return nil, err
	}
	if string(l.txKey) != string(peerKey) {
		tx, err := newContext(peerKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		l.txKey = append([]byte(nil), peerKey...)
		l.mu.Lock()
		l.tx = tx
		l.mu.Unlock()
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
	l := &Link{Peer: peer, t: t, rxKey: NewKey()}
	rx, err := newContext(l.rxKey)
	if err != nil {
		return nil, err
	}
	l.rx = rx
	t.links[peer] = l
	return l, nil
}

func newContext(key []byte) (*srtp.Context, error) {
	return srtp.CreateContext(key[:16], key[16:], profile)
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
		if l.txKey != nil {
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
		if l.txKey != nil {
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
		out, err := l.rx.DecryptRTCP(plain[:0], pkt, nil)
		if err != nil {
			t.DroppedAuth.Add(1)
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
	out, err := l.rx.DecryptRTP(plain[:0], pkt, hdr)
	if err != nil {
		t.DroppedAuth.Add(1)
		return
	}
	t.PacketsIn.Add(1)
	t.BytesIn.Add(uint64(len(pkt)))
	t.handler.HandleRTP(l, hdr.SSRC, out)
}

// isRTCP tells RTCP from RTP on a shared port (RFC 5761): RTCP packet types are 192-223.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// Link is the encrypted path to one peer node. It is a webrtc.TrackLocalWriter, so a
// producer's relay sink writes to it directly.
type Link struct {
	Peer string
	t    *Transport

	addr   atomic.Pointer[netip.AddrPort]
	rxKey  []byte        // set at creation: the key the peer sends with
	rx     *srtp.Context // set at creation; used by the read goroutine only
	txKey  []byte        // under t.mu: the key the peer receives with
	closed atomic.Bool
	heard  atomic.Int64 // Unix nanoseconds of the peer's last authenticated RTCP (0: never)

	// mu guards tx, which is not safe for concurrent use: it is held for the encryption only.
	// The workers' relay sinks marshal, encrypt and send each into a buffer of their own, so
	// they overlap their system calls instead of queueing behind one another's.
	mu   sync.Mutex
	tx   *srtp.Context
	bufs sync.Pool // of *sendBuf
}

// sendBuf is one write's plaintext and ciphertext.
type sendBuf struct {
	plain, out [1600]byte
}

func (l *Link) getBuf() *sendBuf {
	if b, ok := l.bufs.Get().(*sendBuf); ok {
		return b
	}
	return new(sendBuf)
}

// Key is the key this side receives with, for the peer to send with.
func (l *Link) Key() []byte { return l.rxKey }

// WriteRTP encrypts and sends one packet to the peer. Concurrent writers serialise on the
// encryption only, never on the send.
func (l *Link) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	a := l.addr.Load()
	if a == nil || l.closed.Load() {
		return 0, ErrClosed
	}
	b := l.getBuf()
	defer l.bufs.Put(b)
	n, err := h.MarshalTo(b.plain[:])
	if err != nil {
		return 0, err
	}
	if n+len(payload) > 1500 {
		return 0, errors.New("relay: packet too large")
	}
	plain := append(b.plain[:n], payload...)
	l.mu.Lock()
	if l.tx == nil {
		l.mu.Unlock()
		return 0, ErrNotLinked
	}
	out, err := l.tx.EncryptRTP(b.out[:0], plain, h)
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if _, err := l.t.conn.WriteToUDPAddrPort(out, *a); err != nil {
		return 0, err
	}
	l.t.PacketsOut.Add(1)
	l.t.BytesOut.Add(uint64(len(out)))
	return len(out), nil
}

// Write sends a marshaled RTP packet.
func (l *Link) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	return l.WriteRTP(&p.Header, p.Payload)
}

// WriteRTCP encrypts and sends feedback to the peer.
func (l *Link) WriteRTCP(pkts []rtcp.Packet) error {
	a := l.addr.Load()
	if a == nil || l.closed.Load() {
		return ErrClosed
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	b := l.getBuf()
	defer l.bufs.Put(b)
	l.mu.Lock()
	if l.tx == nil {
		l.mu.Unlock()
		return ErrNotLinked
	}
	out, err := l.tx.EncryptRTCP(b.out[:0], raw, nil)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = l.t.conn.WriteToUDPAddrPort(out, *a)
	return err
}
