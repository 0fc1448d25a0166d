package relay

import (
	"net/netip"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nopHandler takes what a link delivers and does nothing with it.
type nopHandler struct{}

func (nopHandler) HandleRTP(*Link, uint32, []byte) {}
func (nopHandler) HandleRTCP(*Link, []rtcp.Packet) {}

// BenchmarkTransportReceiveRTP is the receiving half of one relay packet: find the link,
// authenticate and decrypt (replay check included), hand on. The packets are encrypted by the
// peer's link beforehand, in batches outside the timer.
func BenchmarkTransportReceiveRTP(b *testing.B) {
	rx, err := Listen("127.0.0.1:0", nopHandler{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rx.Close)
	tx := sinkLink(b) // the sender: its own transport, sending nowhere
	from := tx.t.Addr()
	lrx, err := rx.Expect("A", from)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.t.Link("B", netip.MustParseAddrPort("127.0.0.1:9"), lrx.Key()); err != nil {
		b.Fatal(err)
	}
	const batch = 4096
	pkts := make([][]byte, batch)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}
	payload := make([]byte, 1100)
	seq := uint16(0)
	fill := func() {
		for i := range pkts {
			pkts[i] = encryptFor(b, tx, &h, payload, seq)
			seq++
		}
	}
	fill()
	buf, plain := make([]byte, 1600), make([]byte, 1600)
	var hdr rtp.Header
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			cpu.pause()
			fill()
			cpu.resume()
			b.StartTimer()
		}
		n := copy(buf, pkts[i%batch]) // as the socket read does: the datagram is in the cache
		rx.receive(buf[:n], from, plain, &hdr)
	}
	cpu.report(b)
	if rx.PacketsIn.Load() == 0 || rx.DroppedAuth.Load() != 0 {
		b.Fatalf("in %d, dropped %d", rx.PacketsIn.Load(), rx.DroppedAuth.Load())
	}
}

// encryptFor encrypts one packet as l would send it.
func encryptFor(tb testing.TB, l *Link, h *rtp.Header, payload []byte, seq uint16) []byte {
	tb.Helper()
	h.SequenceNumber = seq
	raw, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	l.mu.Lock()
	out, err := l.tx.ctx.EncryptRTP(nil, raw, nil)
	l.mu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
