package node

import (
	"net"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node/udpbatch"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discard is a TrackLocalWriter that marshals the header like pion's SRTP writer does (into a
// reused buffer) and drops the packet, so the benchmarks measure Cascade's own per-packet work.
type discard struct{ buf []byte }

func (d *discard) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(d.buf)
	return n + len(payload), err
}

func (d *discard) Write(b []byte) (int, error) { return len(b), nil }

func benchConsumers(n int) (*Worker, *pipe, *packet) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	w := &Worker{conn: udpbatch.New(udp, batchSize, true)}
	pr := &Producer{id: "p", kind: webrtc.RTPCodecTypeVideo}
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	pp := &pipe{worker: w}
	cs := make([]*Consumer, n)
	for i := range cs {
		c := &Consumer{producer: pr, worker: w}
		c.bind.Store(&binding{ssrc: uint32(1000 + i), pt: 96, clock: 90000, writer: &discard{buf: make([]byte, 1500)}})
		cs[i] = c
	}
	pp.consumers.Store(&cs)
	pkt := pr.pool.Get().(*packet)
	pkt.header = rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 1, Timestamp: 3000, SSRC: 42, Marker: true}
	pkt.payload = pkt.buf[12:1200]
	pkt.size = 1200
	return w, pp, pkt
}

// BenchmarkForwardOne is the per-consumer cost of forwarding one packet.
func BenchmarkForwardOne(b *testing.B) {
	_, pp, pkt := benchConsumers(1)
	benchForward(b, pp, pkt)
}

// benchForward times the first consumer of pp forwarding pkt, a new sequence number each time.
func benchForward(b *testing.B, pp *pipe, pkt *packet) {
	c := (*pp.consumers.Load())[0]
	b.ReportAllocs()
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		pkt.header.SequenceNumber = uint16(i)
		c.forward(pkt, now)
	}
}

// BenchmarkFanOut100 is one packet through a worker's fan-out to 100 consumers.
func BenchmarkFanOut100(b *testing.B) {
	w, pp, pkt := benchConsumers(100)
	benchFanOut(b, w, pp, pkt)
}

// benchFanOut times w's fan-out of pkt to pp's consumers, a new sequence number each time.
func benchFanOut(b *testing.B, w *Worker, pp *pipe, pkt *packet) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt.header.SequenceNumber = uint16(i)
		pkt.refs.Store(2) // fanOut releases one
		w.fanOut(job{pipe: pp, pkt: pkt})
	}
}

// TestForwardAllocatesNothing pins the target: zero allocations per forwarded packet.
func TestForwardAllocatesNothing(t *testing.T) {
	w, pp, pkt := benchConsumers(10)
	if allocs := fanOutAllocs(w, pp, pkt); allocs != 0 {
		t.Fatalf("%v allocations per fan-out, want 0", allocs)
	}
}

// fanOutAllocs is the allocations of one fan-out of pkt by w to pp's consumers.
func fanOutAllocs(w *Worker, pp *pipe, pkt *packet) float64 {
	return testing.AllocsPerRun(1000, func() {
		pkt.header.SequenceNumber++
		pkt.refs.Store(2)
		w.fanOut(job{pipe: pp, pkt: pkt})
	})
}

// TestForwardSequenceContinuity: after a pause (mute), the consumer's sequence numbers continue
// without a gap, so the subscriber sees no loss.
func TestForwardSequenceContinuity(t *testing.T) {
	_, pp, pkt := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	var got []uint16
	c.bind.Store(&binding{ssrc: 1, pt: 96, clock: 90000, writer: recorder(func(h *rtp.Header) { got = append(got, h.SequenceNumber) })})
	c.resync.Store(true)
	for _, seq := range []uint16{100, 101, 102} {
		pkt.header.SequenceNumber = seq
		c.forward(pkt, time.Now())
	}
	c.resync.Store(true) // unmute after packets 103..199 were not forwarded
	for _, seq := range []uint16{200, 201, 65535, 0} {
		pkt.header.SequenceNumber = seq
		c.forward(pkt, time.Now())
	}
	want := []uint16{100, 101, 102, 103, 104, 65438, 65439}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

type recorder func(*rtp.Header)

func (r recorder) WriteRTP(h *rtp.Header, p []byte) (int, error) { r(h); return len(p), nil }
func (r recorder) Write(b []byte) (int, error)                   { return len(b), nil }

// TestParseAllocatesNothing: the producer's read loop parses each packet's header into the
// pooled packet without allocating, header extensions included.
func TestParseAllocatesNothing(t *testing.T) {
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 1, SSRC: 2, Extension: true, ExtensionProfile: 0xBEDE}
	_ = h.SetExtension(1, []byte{1, 2, 3})
	_ = h.SetExtension(3, []byte{4, 5})
	raw, err := (&rtp.Packet{Header: h, Payload: make([]byte, 1000)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var pkt packet
	_, _ = pkt.header.Unmarshal(raw) // warm: extension slices get their capacity
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := pkt.header.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse, want 0", allocs)
	}
}

// BenchmarkIngest is a producer's per-packet work before the fan-out: parse, cache, count, post
// to one worker.
func BenchmarkIngest(b *testing.B) { benchIngest(b, payloadOther, make([]byte, 1188)) }

// benchIngest is BenchmarkIngest for a producer of payloads of kind k.
func benchIngest(b *testing.B, k payloadKind, payload []byte) {
	w := &Worker{jobs: make(chan job, 1)}
	pr := &Producer{id: "p", kind: webrtc.RTPCodecTypeVideo, cache: newCache(webrtc.RTPCodecTypeVideo)}
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	pr.pkind.Store(uint32(k))
	pipes := []*pipe{{worker: w}}
	pr.pipesView.Store(&pipes)
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Timestamp: 3000, SSRC: 42}, Payload: payload}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[2], raw[3] = byte(i>>8), byte(i)
		pkt := pr.pool.Get().(*packet)
		pr.ingest(pkt, copy(pkt.buf[:], raw), 0, 0)
		(<-w.jobs).pkt.release()
	}
}
