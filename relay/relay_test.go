package relay

import (
	"fmt"
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
	// The exchange the cluster layer does over NATS: a's key in the request, b's in the reply.
	ka := a.LinkKey("B")
	lb, err := b.Link("A", a.Addr(), ka)
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.Link("B", b.Addr(), lb.Key())
	if err != nil {
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
	forger := &Link{Peer: "B", t: a, txKey: NewKey()}
	forger.tx, _ = newContext(forger.txKey)
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

func TestBadKeyRefused(t *testing.T) {
	a, err := Listen("127.0.0.1:0", &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Link("B", a.Addr(), []byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}
