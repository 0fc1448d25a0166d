package node

import (
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// stamped makes the consumers of benchConsumers stamp transport-wide sequence numbers, as on a
// subscriber transport with estimation (one ccSender per consumer: one subscriber each).
func stamped(pp *pipe) {
	for _, c := range *pp.consumers.Load() {
		c.bw.cc = newCCSender(time.Now())
		b := *c.bind.Load()
		b.ccID = 3
		c.bind.Store(&b)
	}
}

// BenchmarkFanOut100Stamped is BenchmarkFanOut100 with transport-wide stamping (--bwe): compare
// the two in one run.
func BenchmarkFanOut100Stamped(b *testing.B) {
	w, pp, pkt := benchConsumers(100)
	stamped(pp)
	benchFanOut(b, w, pp, pkt)
}

// TestStampAllocatesNothing: stamping keeps the fan-out free of allocations.
func TestStampAllocatesNothing(t *testing.T) {
	w, pp, pkt := benchConsumers(10)
	stamped(pp)
	if allocs := fanOutAllocs(w, pp, pkt); allocs != 0 {
		t.Fatalf("%v allocations per stamped fan-out, want 0", allocs)
	}
}

// TestStampAndFeedback: forwarded packets carry consecutive transport-wide sequence numbers in
// the negotiated extension (and none without estimation), and pion's own feedback recorder's
// TransportLayerCC about them reaches the estimator with their send times, sizes and losses.
func TestStampAndFeedback(t *testing.T) {
	_, pp, pkt := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	var seqs []uint16
	var exts int
	c.bind.Store(&binding{ssrc: 1, pt: 96, clock: 90000, ccID: 5, writer: recorder(func(h *rtp.Header) {
		if p := h.GetExtension(5); len(p) == 2 {
			seqs = append(seqs, uint16(p[0])<<8|uint16(p[1]))
		}
		exts += len(h.Extensions)
	})})
	c.forward(pkt, time.Now())
	if exts != 0 {
		t.Fatalf("without estimation the packet carried %d extensions", exts)
	}
	start := time.Now()
	c.bw.cc = newCCSender(start)
	for i := 0; i < 40; i++ {
		pkt.header.SequenceNumber++
		c.forward(pkt, start.Add(time.Duration(i)*5*time.Millisecond))
	}
	if len(seqs) != 40 || seqs[0] != 0 || seqs[39] != 39 {
		t.Fatalf("transport-wide sequence numbers %v, want 0..39", seqs)
	}
	rec := twcc.NewRecorder(99)
	for i, s := range seqs {
		if i%10 == 9 {
			continue // lost
		}
		rec.Record(1, s, int64(i*5+20)*1000+1_000_000) // µs
	}
	raw, err := rtcp.Marshal(rec.BuildFeedbackPacket())
	if err != nil {
		t.Fatal(err)
	}
	if tcc, _, ok := scanCompound(raw); !ok || !tcc {
		t.Fatalf("the recorder's feedback does not scan as transport-cc (ok %v)", ok)
	}
	c.bw.cc.feedbackCompound(raw, start.Add(300*time.Millisecond)) // as the worker does
	cc := c.bw.cc
	if len(cc.acks) == 0 {
		t.Fatal("the feedback reached no acks")
	}
	lost := 0
	for _, a := range cc.acks {
		if a.Size != 1188+ccOverhead {
			t.Fatalf("ack size %d, want %d", a.Size, 1188+ccOverhead)
		}
		if a.Lost {
			lost++
		}
	}
	// The recorder reports up to the last packet received: 36 received, 3 lost before it.
	if len(cc.acks) != 39 || lost != 3 {
		t.Fatalf("%d acks, %d lost; want 39 and 3", len(cc.acks), lost)
	}
	if got := cc.est.Received(); got < 1_000_000 {
		t.Fatalf("received rate %d bit/s, want about 1.8 Mbit/s", got)
	}
}

// TestPaddingKeepsSequence: a consumer asked to pad sends padding-only packets after frames,
// with sequence numbers that continue the stream's (no gap, no repeat), and a NACK finds the
// media packet each earlier sequence number carried, not the padding.
func TestPaddingKeepsSequence(t *testing.T) {
	_, pp, pkt := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	type sent struct {
		seq     uint16
		padding bool
		in      uint16
	}
	var got []sent
	var in uint16
	c.bind.Store(&binding{ssrc: 1, pt: 96, clock: 90000, ccID: 5, writer: recorder(func(h *rtp.Header) {
		got = append(got, sent{h.SequenceNumber, h.Padding, in})
	})})
	c.bw.cc = newCCSender(time.Now())
	c.resync.Store(true)
	c.SetPadding(2_000_000)
	now := time.Now()
	in = 1000
	for i := 0; i < 60; i++ {
		pkt.header.SequenceNumber = in
		pkt.header.Marker = i%3 == 2 // frames of three packets
		c.forward(pkt, now)
		now = now.Add(11 * time.Millisecond)
		in++
	}
	pads := 0
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Fatalf("sequence jumps from %d to %d", got[i-1].seq, got[i].seq)
		}
		if got[i].padding {
			pads++
			if r, ok := c.inSeq(got[i].seq); ok {
				t.Fatalf("padding %d maps to producer packet %d", got[i].seq, r)
			}
		} else if r, ok := c.inSeq(got[i].seq); !ok || r != got[i].in {
			t.Fatalf("sent %d carried producer packet %d; NACK maps it to %d (%v)", got[i].seq, got[i].in, r, ok)
		}
	}
	if pads < 40 {
		t.Fatalf("%d padding packets in 660 ms at 2 Mbit/s, want hundreds", pads)
	}
	c.SetPadding(0)
	n := len(got)
	pkt.header.SequenceNumber, pkt.header.Marker = in, true
	c.forward(pkt, now)
	if len(got) != n+1 || got[n].padding {
		t.Fatalf("padding after SetPadding(0)")
	}
}

// TestHoldPLI: a keyframe request within a round trip of a retransmission is held back once;
// a repeated one goes up, and so does one without a recent retransmission.
func TestHoldPLI(t *testing.T) {
	_, pp, _ := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	c.rtx = rtxbudget.New(rtxbudget.Config{}.WithDefaults(), time.Now(), 0) // round trip: the default 100 ms
	now := time.Now()
	if c.holdPLI(now) {
		t.Fatal("held a keyframe request with nothing resent")
	}
	c.noteResend(now)
	if !c.holdPLI(now.Add(50 * time.Millisecond)) {
		t.Fatal("did not hold a keyframe request 50 ms after a retransmission")
	}
	c.noteResend(now.Add(300 * time.Millisecond))
	if c.holdPLI(now.Add(350 * time.Millisecond)) {
		t.Fatal("held a repeated keyframe request")
	}
	if c.holdPLI(now.Add(2 * time.Second)) {
		t.Fatal("held a keyframe request long after the last retransmission")
	}
	if got := c.worker.heldPLIs.Load(); got != 1 {
		t.Fatalf("%d held requests counted, want 1", got)
	}
}

// TestRetransmissionStamped: a retransmission takes the transport's next sequence number (after
// the media's) and its feedback finds it.
func TestRetransmissionStamped(t *testing.T) {
	_, pp, pkt := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	var seqs []uint16
	b := &binding{ssrc: 1, pt: 96, clock: 90000, ccID: 5, writer: recorder(func(h *rtp.Header) {
		if p := h.GetExtension(5); len(p) == 2 {
			seqs = append(seqs, uint16(p[0])<<8|uint16(p[1]))
		}
	})}
	c.bind.Store(b)
	now := time.Now()
	c.bw.cc = newCCSender(now)
	c.forward(pkt, now)
	var h rtp.Header
	var ext ccExt
	c.stampRTX(&h, b, 900, now.Add(time.Millisecond), &ext)
	if p := h.GetExtension(5); len(p) != 2 || uint16(p[0])<<8|uint16(p[1]) != 1 {
		t.Fatalf("retransmission stamped %v, want sequence number 1", p)
	}
	if len(seqs) != 1 || seqs[0] != 0 {
		t.Fatalf("media stamped %v, want 0", seqs)
	}
	if _, size, ok := c.bw.cc.lookup(1, time.Second); !ok || size != 900+ccOverhead {
		t.Fatalf("retransmission in the ring: %v, size %d", ok, size)
	}
}
