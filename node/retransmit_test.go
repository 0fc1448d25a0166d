package node

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type countingUpstream struct{ n atomic.Int64 }

func (u *countingUpstream) RequestKeyframe() { u.n.Add(1) }

// wire counts what a consumer writes: RTP bytes, and how often each sequence number went out.
type wire struct {
	bytes int
	sent  map[uint16]int
}

func (w *wire) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.bytes += h.MarshalSize() + len(payload)
	w.sent[h.SequenceNumber]++
	return h.MarshalSize() + len(payload), nil
}

func (w *wire) Write(b []byte) (int, error) { return len(b), nil }

// relayRig is a remote producer with a relay sink attached (the parent's side of a relay link),
// fed with synthetic media at 100 packets/s on an injected clock.
type relayRig struct {
	t    *testing.T
	p    *Producer
	c    *Consumer
	w    *Worker
	out  *wire
	up   *countingUpstream
	seq  uint16
	now  time.Time
	pkt  packet
	raw  []byte
	sent int // media bytes written
}

func newRelayRig(t *testing.T, budget int) *relayRig {
	n := &Node{rtx: rtxbudget.Config{Share: float64(budget) / 100}.WithDefaults()}
	n.metrics = newMetrics(n)
	w := &Worker{consumers: make(map[*Consumer]struct{})}
	n.workers = []*Worker{w}
	p := &Producer{id: "p", kind: webrtc.RTPCodecTypeVideo, node: n, home: w, cache: newCache(webrtc.RTPCodecTypeVideo),
		kfInterval: 0 /* every request reaches the upstream */, codecCap: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}
	p.pool.New = func() any { return &packet{pool: &p.pool} }
	p.src.Store(&source{origin: "origin"})
	up := &countingUpstream{}
	p.SetUpstream(up)
	out := &wire{sent: make(map[uint16]int)}
	c, err := p.Attach(out, 99)
	if err != nil {
		t.Fatal(err)
	}
	return &relayRig{t: t, p: p, c: c, w: w, out: out, up: up, now: time.Now(), raw: make([]byte, 1012)}
}

// media forwards the next packet (1000 bytes of payload, 10 ms after the last) and returns its
// sequence number.
func (r *relayRig) media() uint16 {
	r.seq++
	r.now = r.now.Add(10 * time.Millisecond)
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: r.seq, Timestamp: uint32(r.seq) * 900, SSRC: 5}
	if _, err := h.MarshalTo(r.raw); err != nil {
		r.t.Fatal(err)
	}
	in := r.p.pool.Get().(*packet)               // through the producer: the cache, the media counter (the
	r.p.ingest(in, copy(in.buf[:], r.raw), 0, 0) // worker has no queue here: the post is dropped)
	if _, err := r.pkt.header.Unmarshal(r.raw); err != nil {
		r.t.Fatal(err)
	}
	r.pkt.payload, r.pkt.size = r.raw[12:], len(r.raw)
	before := r.out.bytes
	if !r.c.forward(&r.pkt, r.now) {
		r.t.Fatal("not forwarded")
	}
	r.sent += r.out.bytes - before
	return r.seq
}

// TestRelayChildNackingEverythingBounded: a relay child that NACKs every packet (a hostile or
// hopelessly congested link) gets at most the budget's share resent; the producer is asked for
// keyframes instead, through the upstream (collapsed per producer).
func TestRelayChildNackingEverythingBounded(t *testing.T) {
	r := newRelayRig(t, DefaultRTXBudget)
	kfBefore := r.up.n.Load()
	for i := 0; i < 1000; i++ { // 10 s
		seq := r.media()
		r.c.nack(r.now, []uint16{seq - 16, seq - 8, seq})
	}
	ratio := float64(r.out.bytes) / float64(r.sent)
	t.Logf("bytes to the child: %.2fx the media; resent %d packets, refused: budget %d, congested %d, duplicate %d; %d keyframe requests",
		ratio, r.w.rtxPackets.Load(), r.w.rtxRefused[rtxbudget.OverBudget].Load(), r.w.rtxRefused[rtxbudget.Congested].Load(),
		r.w.rtxRefused[rtxbudget.Duplicate].Load(), r.w.rtxKeyframes.Load())
	if ratio > 1+float64(DefaultRTXBudget)/100 {
		t.Fatalf("bytes to the child %.2fx the media, want at most %.2fx", ratio, 1+float64(DefaultRTXBudget)/100)
	}
	if r.w.rtxPackets.Load() == 0 || r.w.rtxRefused[rtxbudget.OverBudget].Load()+r.w.rtxRefused[rtxbudget.Congested].Load() == 0 {
		t.Fatal("nothing resent, or nothing refused")
	}
	if r.w.rtxKeyframes.Load() == 0 || r.up.n.Load() == kfBefore {
		t.Fatal("no keyframe request reached the upstream")
	}
	if got := r.w.rtxBytes.Load(); int(got) != r.out.bytes-r.sent {
		t.Fatalf("rtx bytes metric %d, want %d", got, r.out.bytes-r.sent)
	}
}

// TestRelayChildOrdinaryLossAllResent: 2 % loss, each lost packet NACKed once, is resent in
// full, refused nowhere and costs no keyframe.
func TestRelayChildOrdinaryLossAllResent(t *testing.T) {
	r := newRelayRig(t, DefaultRTXBudget)
	nacked := 0
	for i := 0; i < 1000; i++ {
		seq := r.media()
		if i%50 == 10 {
			r.c.nack(r.now, []uint16{seq - 2})
			nacked++
		}
	}
	refused := uint64(0)
	for v := range r.w.rtxRefused {
		refused += r.w.rtxRefused[v].Load()
	}
	if got := r.w.rtxPackets.Load(); int(got) != nacked || refused != 0 || r.w.rtxKeyframes.Load() != 0 {
		t.Fatalf("resent %d of %d NACKed packets, refused %d, %d keyframe requests", got, nacked, refused, r.w.rtxKeyframes.Load())
	}
}

// TestNackRangeAndAge: sequence numbers past the bound of one NACK, and packets past their
// useful life, are refused and counted by reason.
func TestNackRangeAndAge(t *testing.T) {
	r := newRelayRig(t, 100)
	for i := 0; i < 300; i++ {
		r.media()
	}
	seqs := make([]uint16, 0, 100)
	for s := r.seq - 99; s != r.seq+1; s++ {
		seqs = append(seqs, s)
	}
	r.c.nack(r.now, seqs) // 100 packets, the oldest 1 s behind the newest
	if got := r.w.rtxRefused[rtxbudget.OutOfRange].Load(); got != 100-rtxbudget.DefaultMaxPerNack {
		t.Fatalf("%d refused past the range, want %d", got, 100-rtxbudget.DefaultMaxPerNack)
	}
	r.c.nack(r.now, []uint16{r.seq - 150}) // 1.5 s behind the newest
	if got := r.w.rtxRefused[rtxbudget.TooOld].Load(); got != 1 {
		t.Fatalf("%d refused as too old, want 1", got)
	}
	r.c.nack(r.now, []uint16{r.seq + 100}) // never sent
	if got := r.w.rtxRefused[rtxbudget.TooOld].Load(); got != 2 {
		t.Fatalf("an unknown packet: %d refused as too old, want 2", got)
	}
}

// TestSubscriberNackPairsBounded: a subscriber's NACK listing 170 losses (as a congested
// receiver lists everything it misses) is handled newest first, up to the bound; the rest, the
// oldest, is counted without being looked at.
func TestSubscriberNackPairsBounded(t *testing.T) {
	r := newRelayRig(t, 100)
	for i := 0; i < 300; i++ {
		r.media()
	}
	pairs := make([]rtcp.NackPair, 10) // 10 pairs of 17: r.seq-170 .. r.seq-1, in order
	for i := range pairs {
		pairs[i] = rtcp.NackPair{PacketID: r.seq - 170 + uint16(17*i), LostPackets: 0xffff}
	}
	r.c.beginFeedback(r.now)
	r.c.nackPairs(pairs, make([]byte, 1500))
	if got := r.w.rtxPackets.Load(); got != rtxbudget.DefaultMaxPerNack {
		t.Fatalf("resent %d, want %d", got, rtxbudget.DefaultMaxPerNack)
	}
	for s := r.seq - 170; s != r.seq; s++ {
		newest := int16(r.seq-s) <= rtxbudget.DefaultMaxPerNack
		if resent := r.out.sent[s] == 2; resent != newest {
			t.Fatalf("seq %d (%d behind): resent %v", s, r.seq-s, resent)
		}
	}
	if got := r.w.rtxRefused[rtxbudget.OutOfRange].Load(); got != 170-rtxbudget.DefaultMaxPerNack {
		t.Fatalf("refused past the range %d, want %d", got, 170-rtxbudget.DefaultMaxPerNack)
	}
}

// TestRTTFromReceiverReport: LSR/DLSR of a report block about this consumer give the budget its
// round-trip estimate; blocks about other SSRCs are ignored.
func TestRTTFromReceiverReport(t *testing.T) {
	now := time.Now()
	lsr := uint32(ntpTime(now.Add(-50*time.Millisecond)) >> 16)
	dlsr := uint32(20 * 65536 / 1000) // 20 ms
	rtt, ok := rttFromReport(now, lsr, dlsr)
	if !ok || rtt < 29*time.Millisecond || rtt > 31*time.Millisecond {
		t.Fatalf("rtt %v, %v; want 30 ms", rtt, ok)
	}
	if _, ok := rttFromReport(now, lsr, uint32(65536)); ok {
		t.Fatal("a report held longer than the round trip gave an RTT")
	}
	r := newRelayRig(t, 100)
	r.c.observeRTT([]rtcp.ReceptionReport{{SSRC: 1234, LastSenderReport: lsr, Delay: dlsr}}, now)
	if got := r.c.rtx.RTT(); got != rtxbudget.DefaultRTT {
		t.Fatalf("a block about another SSRC changed the RTT to %v", got)
	}
	r.c.observeRTT([]rtcp.ReceptionReport{{SSRC: 99, LastSenderReport: lsr, Delay: dlsr}}, now)
	if got := r.c.rtx.RTT(); got < 29*time.Millisecond || got > 31*time.Millisecond {
		t.Fatalf("RTT %v after a 30 ms report, want 30 ms", got)
	}
}
