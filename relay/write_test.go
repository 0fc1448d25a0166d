package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// sinkLink is a sending link from a fresh transport to a UDP socket nobody reads (the kernel
// drops what overflows), so a benchmark measures the sender only.
func sinkLink(tb testing.TB) *Link {
	tb.Helper()
	a, err := Listen("127.0.0.1:0", &recorder{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(); sink.Close() })
	l, err := a.Link("B", sink.LocalAddr().(*net.UDPAddr).AddrPort(), PeerKey{Key: NewKey(), SSRC: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// BenchmarkLinkWriteRTP is one relay packet: marshal, encrypt, send.
func BenchmarkLinkWriteRTP(b *testing.B) {
	l := sinkLink(b)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
	payload := make([]byte, 1100)
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		h.SequenceNumber = uint16(i)
		if _, err := l.WriteRTP(&h, payload); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkLinkWriteRTPParallel is several workers' relay sinks writing to one link at once,
// each under its own SSRC.
func BenchmarkLinkWriteRTPParallel(b *testing.B) {
	l := sinkLink(b)
	var ssrc atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h := rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc.Add(1)}
		payload := make([]byte, 1100)
		for pb.Next() {
			h.SequenceNumber++
			if _, err := l.WriteRTP(&h, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// stallConn is a relay socket whose first write blocks until released: a send that takes
// its time (a full socket buffer, a slow NIC).
type stallConn struct {
	packetConn
	first   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (c *stallConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if c.first.CompareAndSwap(false, true) {
		close(c.entered)
		<-c.release
	}
	return c.packetConn.WriteToUDPAddrPort(b, a)
}

// TestWritersDoNotWaitForAnotherSend: while one worker's relay sink is stuck in its send,
// other workers' packets and feedback on the same link go out.
func TestWritersDoNotWaitForAnotherSend(t *testing.T) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stall := &stallConn{packetConn: udp, entered: make(chan struct{}), release: make(chan struct{})}
	a := newTransport(stall, &recorder{}, nil, Keying{}, time.Now)
	rb := &recorder{}
	b, err := Listen("127.0.0.1:0", rb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
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

	stuck := make(chan error, 1)
	go func() {
		_, err := la.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SSRC: 1, SequenceNumber: 1}, []byte("stuck"))
		stuck <- err
	}()
	<-stall.entered
	done := make(chan error, 1)
	go func() {
		_, err := la.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SSRC: 2, SequenceNumber: 1}, []byte("free"))
		if err == nil {
			err = la.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 2}})
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		close(stall.release)
		t.Fatal("a write waited for another writer's send")
	}
	close(stall.release)
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if got, rtcps := rb.snapshot(); len(got) != 2 || got[0] != "A/2/1/free" || got[1] != "A/1/1/stuck" || rtcps != 1 {
			return fmt.Errorf("b got %v and %d reports", got, rtcps)
		}
		return nil
	})
}

// TestConcurrentWritersRace writes from several goroutines at once (run with -race) and checks
// that b decrypts every packet: the encryption context is shared safely.
func TestConcurrentWritersRace(t *testing.T) {
	_, _, _, rb, la, _ := pair(t)
	const writers, per = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: uint32(100 + w)}
			for i := 0; i < per; i++ {
				h.SequenceNumber = uint16(i)
				if _, err := la.WriteRTP(&h, []byte("x")); err != nil {
					t.Error(err)
				}
				if i%10 == 0 {
					_ = la.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: h.SSRC}})
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, func() error {
		got, rtcps := rb.snapshot()
		if len(got) != writers*per || rtcps != writers*per/10 {
			return fmt.Errorf("b got %d packets and %d reports", len(got), rtcps)
		}
		return nil
	})
}

// TestLinkWriteAllocatesNothing pins zero allocations per relayed packet.
func TestLinkWriteAllocatesNothing(t *testing.T) {
	l := sinkLink(t)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
	payload := make([]byte, 1100)
	allocs := testing.AllocsPerRun(200, func() {
		h.SequenceNumber++
		_, _ = l.WriteRTP(&h, payload)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet, want 0", allocs)
	}
}
