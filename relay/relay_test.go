package relay

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

type recorder struct {
	mu   sync.Mutex
	rtp  []string
	rtcp int
}

func (r *recorder) HandleRTP(l *Link, ssrc uint32, pkt []byte) {
	var p rtp.Packet
	if p.Unmarshal(pkt) != nil {
		return
	}
	r.mu.Lock()
	r.rtp = append(r.rtp, fmt.Sprintf("%s/%d/%d/%s", l.Peer, ssrc, p.SequenceNumber, p.Payload))
	r.mu.Unlock()
}

func (r *recorder) HandleRTCP(*Link, []rtcp.Packet) {
	r.mu.Lock()
	r.rtcp++
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rtp...), r.rtcp
}

func pair(t *testing.T) (*Transport, *Transport, *recorder, *recorder, *Link, *Link) {
	t.Helper()
	ra, rb := &recorder{}, &recorder{}
	a, err := Listen("127.0.0.1:0", ra, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Listen("127.0.0.1:0", rb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	// The exchange the cluster layer does over NATS: a's receiving key in the request, b's in
	// the reply.
	la, err := a.Expect("B", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Link("A", a.Addr(), la.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Link("B", b.Addr(), lb.Key()); err != nil {
		t.Fatal(err)
	}
	return a, b, ra, rb, la, lb
}

func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(err)
}

func TestLinkCarriesRTPAndRTCP(t *testing.T) {
	_, b, ra, rb, la, lb := pair(t)
	for i := 0; i < 3; i++ {
		for _, ssrc := range []uint32{11, 22} { // two producers multiplexed on one link
			if _, err := la.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: ssrc}, []byte("media")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := lb.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 11}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		got, _ := rb.snapshot()
		_, fb := ra.snapshot()
		if len(got) != 6 || fb != 1 {
			return fmt.Errorf("b got %v, a got %d rtcp", got, fb)
		}
		return nil
	})
	got, _ := rb.snapshot()
	if got[0] != "A/11/0/media" || got[5] != "A/22/2/media" {
		t.Fatalf("got %v", got)
	}
	if b.PacketsIn.Load() != 6 {
		t.Fatalf("packets in %d", b.PacketsIn.Load())
	}
}

// TestForgedPacketsDropped: a datagram from a stranger, and one from the peer's address with a
// wrong key, are dropped and counted; the link keeps working.
func TestForgedPacketsDropped(t *testing.T) {
	a, b, _, rb, la, _ := pair(t)
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 11}, Payload: []byte("evil")}).Marshal()
	if _, err := stranger.WriteToUDPAddrPort(raw, b.Addr()); err != nil {
		t.Fatal(err)
	}
	// Forged under a's address: a's own socket sends a packet encrypted with a wrong key.
	forger := &Link{Peer: "B", t: a, seed: maphash.MakeSeed()}
	forger.tx, _ = newTx(PeerKey{Key: NewKey(), SSRC: 1}, time.Now())
	addr := b.Addr()
	forger.addr.Store(&addr)
	if _, err := forger.WriteRTP(&rtp.Header{Version: 2, SSRC: 11, PayloadType: 96}, []byte("evil")); err != nil {
		t.Fatal(err)
	}
	// Plain RTP (no auth tag) from the peer's address.
	if _, err := a.conn.WriteToUDPAddrPort(raw, b.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := la.WriteRTP(&rtp.Header{Version: 2, SSRC: 11, PayloadType: 96}, []byte("good")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if b.DroppedUnknown.Load() != 1 || b.DroppedAuth.Load() != 2 {
			return fmt.Errorf("dropped: unknown %d, auth %d", b.DroppedUnknown.Load(), b.DroppedAuth.Load())
		}
		got, _ := rb.snapshot()
		if len(got) != 1 || got[0] != "A/11/0/good" {
			return fmt.Errorf("delivered %v", got)
		}
		return nil
	})
}

// TestPeerSendsBeforeItsAnswerArrives: the peer asked to send starts right away, before its
// answer (and key) reaches the asker; its first packets are taken, not dropped as a stranger's.
func TestPeerSendsBeforeItsAnswerArrives(t *testing.T) {
	ra := &recorder{}
	a, err := Listen("127.0.0.1:0", ra, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen("127.0.0.1:0", &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	la, err := a.Expect("B", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := la.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 11}}); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("sending before b's key is known: %v, want ErrNotLinked", err)
	}
	lb, err := b.Link("A", a.Addr(), la.Key()) // b serves the request...
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // ...and sends at once, while its answer is on the way
		if _, err := lb.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 11}, []byte("first")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() error {
		if got, _ := ra.snapshot(); len(got) != 3 || got[0] != "B/11/0/first" {
			return fmt.Errorf("a got %v (dropped: unknown %d, auth %d)", got, a.DroppedUnknown.Load(), a.DroppedAuth.Load())
		}
		return nil
	})
	if a.DroppedUnknown.Load() != 0 || a.DroppedAuth.Load() != 0 || a.DroppedMalformed.Load() != 0 {
		t.Fatalf("dropped: unknown %d, auth %d, malformed %d", a.DroppedUnknown.Load(), a.DroppedAuth.Load(), a.DroppedMalformed.Load())
	}
	if got := a.Links(); len(got) != 0 {
		t.Fatalf("links %v before b's key is known", got)
	}
	if _, err := a.Link("B", b.Addr(), lb.Key()); err != nil { // the answer arrives
		t.Fatal(err)
	}
	if err := la.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 11}}); err != nil {
		t.Fatal(err)
	}
	if got := a.Links(); len(got) != 1 || got[0] != "B" {
		t.Fatalf("links %v", got)
	}
}

// TestPeerRestartRekeys: a peer that comes back with a new receiving key is sent to with it.
func TestPeerRestartRekeys(t *testing.T) {
	a, _, _, rb, la, _ := pair(t)
	b2, err := Listen("127.0.0.1:0", rb, nil) // b again, new socket and keys
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	lb2, err := b2.Link("A", a.Addr(), la.Key())
	if err != nil {
		t.Fatal(err)
	}
	if l, err := a.Link("B", b2.Addr(), lb2.Key()); err != nil || l != la {
		t.Fatalf("relink: %v %v", l, err)
	}
	if _, err := la.WriteRTP(&rtp.Header{Version: 2, SSRC: 11, PayloadType: 96}, []byte("again")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if got, _ := rb.snapshot(); len(got) != 1 || got[0] != "A/11/0/again" {
			return fmt.Errorf("b2 got %v (dropped: auth %d)", got, b2.DroppedAuth.Load())
		}
		return nil
	})
}

func TestBadKeyRefused(t *testing.T) {
	a, err := Listen("127.0.0.1:0", &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Link("B", a.Addr(), PeerKey{Key: []byte("short"), SSRC: 1}); err == nil {
		t.Fatal("short key accepted")
	}
}

// TestKeepalive: each side's keepalives reach the other, authenticated, and say when the
// peer was last heard; the handler sees no producer in them. A forged keepalive proves
// nothing.
func TestKeepalive(t *testing.T) {
	a, b, ra, _, _, _ := pair(t)
	if len(a.Heard()) != 0 || len(b.Heard()) != 0 {
		t.Fatalf("heard before any keepalive: %v %v", a.Heard(), b.Heard())
	}
	before := time.Now()
	a.Keepalive()
	b.Keepalive()
	eventually(t, func() error {
		if at, ok := b.Heard()["A"]; !ok || at.Before(before) {
			return fmt.Errorf("b heard a at %v", at)
		}
		if at, ok := a.Heard()["B"]; !ok || at.Before(before) {
			return fmt.Errorf("a heard b at %v", at)
		}
		return nil
	})
	// A datagram from b's address that is no keepalive of b's: dropped, heard stays.
	heard := a.Heard()["B"]
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(a.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x80, 201, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if a.DroppedUnknown.Load()+a.DroppedAuth.Load() == 0 {
			return errors.New("the forged keepalive was not dropped")
		}
		return nil
	})
	if !a.Heard()["B"].Equal(heard) {
		t.Fatal("a forged keepalive counted as the peer heard")
	}
	if _, n := ra.snapshot(); n != 1 {
		t.Fatalf("a's handler saw %d RTCP packets, want the keepalive only", n)
	}
}
