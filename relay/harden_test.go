package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// tapConn records every datagram a transport sends: what an on-path observer sees.
type tapConn struct {
	packetConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *tapConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.packetConn.WriteToUDPAddrPort(b, a)
}

func (c *tapConn) datagrams() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.sent...)
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// listenTapped is a transport on a real UDP socket whose sends are recorded.
func listenTapped(t *testing.T, h Handler, k Keying, now func() time.Time) (*Transport, *tapConn) {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = udp.SetReadBuffer(8 << 20)
	_ = udp.SetWriteBuffer(8 << 20)
	tap := &tapConn{packetConn: udp}
	tr := newTransport(tap, h, nil, k, now)
	t.Cleanup(tr.Close)
	return tr, tap
}

// link makes the exchange the pipe request and reply do: a's key to b, b's key to a.
func link(t *testing.T, a, b *Transport) (la, lb *Link) {
	t.Helper()
	la, err := a.Expect("B", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if lb, err = b.Link("A", a.Addr(), la.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Link("B", b.Addr(), lb.Key()); err != nil {
		t.Fatal(err)
	}
	return la, lb
}

func media(l *Link, ssrc uint32, seq uint16, payload string) error {
	if seq%128 == 0 { // paced, so the receiving socket's buffer does not overflow on a busy machine
		time.Sleep(2 * time.Millisecond)
	}
	_, err := l.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc, SequenceNumber: seq}, []byte(payload))
	return err
}

// sendWith encrypts a packet with a sending context of the test's own and sends it from tr's
// socket to addr: a peer's socket under a key the test chooses.
func sendWith(t *testing.T, tr *Transport, tx *txKeys, addr netip.AddrPort, ssrc uint32, seq uint16, payload string) {
	t.Helper()
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc, SequenceNumber: seq}, Payload: []byte(payload)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tx.ctx.EncryptRTP(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.conn.WriteToUDPAddrPort(out, addr); err != nil {
		t.Fatal(err)
	}
}

func waitCount(t *testing.T, r *recorder, n int, tr *Transport) {
	t.Helper()
	eventually(t, func() error {
		if got, _ := r.snapshot(); len(got) != n {
			return fmt.Errorf("delivered %d, want %d (drops %v)", len(got), n, tr.Drops())
		}
		return nil
	})
}

// TestReplayDroppedLateRetransmissionPasses: a packet replayed from the wire is dropped and
// counted; a packet the receiver never got passes 900 packets behind the newest (a late NACK
// retransmission), but not once it is further behind than the window; SRTCP too.
func TestReplayDroppedLateRetransmissionPasses(t *testing.T) {
	rb := &recorder{}
	a, tapA := listenTapped(t, &recorder{}, Keying{}, time.Now)
	b, _ := listenTapped(t, rb, Keying{}, time.Now)
	la, _ := link(t, a, b)
	sent := 0
	for seq := 0; seq <= 1000; seq++ {
		if seq == 100 { // lost before the link
			continue
		}
		if err := media(la, 11, uint16(seq), fmt.Sprint(seq)); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	waitCount(t, rb, sent, b)
	var seq500 []byte
	for _, d := range tapA.datagrams() {
		if !isRTCP(d) && binary.BigEndian.Uint16(d[2:]) == 500 {
			seq500 = d
		}
	}
	if _, err := a.conn.WriteToUDPAddrPort(seq500, b.Addr()); err != nil { // replayed from a's own address
		t.Fatal(err)
	}
	eventually(t, func() error {
		if b.DroppedReplay.Load() != 1 {
			return fmt.Errorf("drops %v, want one replay", b.Drops())
		}
		return nil
	})
	if err := media(la, 11, 100, "100"); err != nil { // the late retransmission: 900 behind
		t.Fatal(err)
	}
	waitCount(t, rb, sent+1, b)
	if got, _ := rb.snapshot(); got[len(got)-1] != "A/11/100/100" {
		t.Fatalf("last delivered %q", got[len(got)-1])
	}
	all := tapA.datagrams()
	if _, err := a.conn.WriteToUDPAddrPort(all[len(all)-1], b.Addr()); err != nil { // and replayed
		t.Fatal(err)
	}
	// Out of the window: a packet never received, 1101 behind (sent with the link's own context:
	// the sending side would refuse it, see TestResendSendsIdenticalBytes).
	for seq := 1001; seq <= 1200; seq++ {
		if err := media(la, 11, uint16(seq), fmt.Sprint(seq)); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, rb, sent+1+200, b)
	sendWith(t, a, la.tx, b.Addr(), 11, 99, "ancient") // 1101 behind the newest
	// SRTCP: feedback replayed.
	if err := la.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 11}}); err != nil {
		t.Fatal(err)
	}
	all = tapA.datagrams()
	if _, err := a.conn.WriteToUDPAddrPort(all[len(all)-1], b.Addr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if _, fb := rb.snapshot(); b.DroppedReplay.Load() != 4 || fb != 1 {
			return fmt.Errorf("drops %v, feedback %d: want 4 replays, 1 feedback", b.Drops(), fb)
		}
		return nil
	})
	if got, _ := rb.snapshot(); len(got) != sent+1+200 || b.DroppedAuth.Load()+b.DroppedKey.Load() != 0 {
		t.Fatalf("delivered %d, drops %v", len(got), b.Drops())
	}
}

// TestResendSendsIdenticalBytes: a packet sent again under its (SSRC, index) goes out
// byte for byte as the first time; other bytes under a used index, an index too old to check,
// or an SSRC whose pipe ended are refused, never sealed.
func TestResendSendsIdenticalBytes(t *testing.T) {
	rb := &recorder{}
	a, tapA := listenTapped(t, &recorder{}, Keying{}, time.Now)
	b, _ := listenTapped(t, rb, Keying{}, time.Now)
	la, _ := link(t, a, b)
	for seq := 0; seq < 10; seq++ {
		if err := media(la, 11, uint16(seq), fmt.Sprint("p", seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := media(la, 11, 5, "p5"); err != nil { // the retransmission
		t.Fatal(err)
	}
	d := tapA.datagrams()
	if !bytes.Equal(d[5], d[10]) {
		t.Fatalf("the retransmission differs on the wire:\n%x\n%x", d[5], d[10])
	}
	if err := media(la, 11, 5, "other"); !errors.Is(err, ErrIndexReused) {
		t.Fatalf("other bytes under a used index: %v, want ErrIndexReused", err)
	}
	for seq := 10; seq < 10+sentWindow+5; seq++ {
		if err := media(la, 11, uint16(seq), fmt.Sprint("p", seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := media(la, 11, 5, "p5"); !errors.Is(err, ErrIndexReused) {
		t.Fatalf("a resend past the sent window: %v, want ErrIndexReused", err)
	}
	la.Retire(11)
	if err := media(la, 11, 2000, "late"); !errors.Is(err, ErrSSRCRetired) {
		t.Fatalf("a packet of an ended pipe: %v, want ErrSSRCRetired", err)
	}
	if a.RefusedResend.Load() != 3 || len(tapA.datagrams()) != 11+sentWindow+5 {
		t.Fatalf("refused %d, sent %d", a.RefusedResend.Load(), len(tapA.datagrams()))
	}
	waitCount(t, rb, 10+sentWindow+5, b) // the receiver took the first copy, dropped the second
	if b.DroppedReplay.Load() != 1 {
		t.Fatalf("drops %v", b.Drops())
	}
}

// wireID is what names an AES-GCM nonce on the wire: the MKI (the key), the SSRC and the
// sequence number (RTP) or SRTCP index (RTCP).
type wireID struct {
	rtcp      bool
	mki, ssrc uint32
	seq       uint32
}

func idOf(d []byte) wireID {
	m := binary.BigEndian.Uint32(d[len(d)-mkiLen:])
	if isRTCP(d) {
		return wireID{true, m, binary.BigEndian.Uint32(d[4:]), binary.BigEndian.Uint32(d[len(d)-mkiLen-4:]) &^ (1 << 31)}
	}
	return wireID{false, m, binary.BigEndian.Uint32(d[8:]), uint32(binary.BigEndian.Uint16(d[2:]))}
}

// TestRemadePipeNeverRepeatsIndex: a pipe torn down and made again, and a sender that loses its
// side of the link and makes it again from the same key, never seal two packets under one
// (key, SSRC, index): every SSRC comes from the receiver's counter, and so does the SSRC of
// each sending context's feedback. The receiver takes every packet.
func TestRemadePipeNeverRepeatsIndex(t *testing.T) {
	rb := &recorder{}
	a, tapA := listenTapped(t, &recorder{}, Keying{}, time.Now) // a relays to b
	b, _ := listenTapped(t, rb, Keying{}, time.Now)
	lb, err := b.Expect("A", a.Addr()) // b, the child, asks
	if err != nil {
		t.Fatal(err)
	}
	ask := func() (*Link, uint32) { // one pipe request: b hands out its key and a new SSRC
		k := lb.Key()
		ssrc := lb.NewSSRC()
		la, err := a.Link("B", b.Addr(), PeerKey{Key: k.Key, Epoch: k.Epoch, SSRC: ssrc})
		if err != nil {
			t.Fatal(err)
		}
		return la, ssrc
	}
	want := 0
	pipe := func(la *Link, ssrc uint32) { // the producer's packets, as a new relay sink sends them
		for seq := 0; seq < 100; seq++ {
			if err := media(la, ssrc, uint16(seq), fmt.Sprint(ssrc, "/", seq)); err != nil {
				t.Fatal(err)
			}
			want++
		}
		if err := la.WriteRTCP(keepalive); err != nil {
			t.Fatal(err)
		}
	}
	la, s1 := ask()
	pipe(la, s1)
	la.Retire(s1) // the pipe ends...
	la, s2 := ask()
	pipe(la, s2) // ...and is made again
	// a forgets the link (b seemed gone) and is asked again: a new sending context.
	a.RemoveLink("B")
	la, s3 := ask()
	pipe(la, s3)
	if s1 == s2 || s2 == s3 || s1 == s3 {
		t.Fatalf("ssrcs %d %d %d", s1, s2, s3)
	}
	seen := map[wireID][]byte{}
	for _, d := range tapA.datagrams() {
		id := idOf(d)
		if old, ok := seen[id]; ok && !bytes.Equal(old, d) {
			t.Fatalf("%+v sealed twice with other bytes", id)
		}
		seen[id] = d
	}
	if len(seen) != want+3 {
		t.Fatalf("%d distinct nonces, want %d", len(seen), want+3)
	}
	waitCount(t, rb, want, b)
	eventually(t, func() error {
		if _, fb := rb.snapshot(); fb != 3 {
			return fmt.Errorf("feedback %d, drops %v", fb, b.Drops())
		}
		return nil
	})
	if d := b.Drops(); d[DropReplay]+d[DropAuth]+d[DropKey] != 0 {
		t.Fatalf("drops %v", d)
	}
}
