package rtxbudget

import (
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// nack runs one NACK of seqs (each a packet of size bytes, age behind the newest) through b at
// time at, and returns the verdicts.
func nack(b *Budget, at time.Duration, media uint64, size int, age time.Duration, seqs ...uint16) []Verdict {
	b.Begin(t0.Add(at), media)
	out := make([]Verdict, 0, len(seqs))
	for _, s := range seqs {
		v := b.Admit(s)
		if v == Resend {
			v = b.Spend(s, size, age)
		}
		out = append(out, v)
	}
	return out
}

func count(vs []Verdict, want Verdict) int {
	n := 0
	for _, v := range vs {
		if v == want {
			n++
		}
	}
	return n
}

// TestBucketShareOfMedia: the bucket refills at Share of the media bytes and holds at most
// Share of one window's media plus Burst; running it empty holds resending off and asks for a
// keyframe.
func TestBucketShareOfMedia(t *testing.T) {
	b := New(Config{}, t0, 0)
	// 20 000 media bytes: 1500 + 0.25 * 20000 = 6500 bytes of tokens.
	vs := nack(b, 100*time.Millisecond, 20000, 1000, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	if got := count(vs, Resend); got != 6 {
		t.Fatalf("verdicts %v: %d resent, want 6", vs, got)
	}
	if vs[6] != OverBudget || vs[7] != OverBudget {
		t.Fatalf("verdicts %v: want budget refusals once the bucket is empty", vs)
	}
	if !b.Holding() || !b.Keyframe() {
		t.Fatal("an empty bucket did not hold resending off with a keyframe request")
	}
	if b.Keyframe() {
		t.Fatal("Keyframe reported twice for one hold-off")
	}
}

// TestBucketCapacity: tokens do not pile up beyond one window's share: a receiver that NACKs
// nothing for a long time cannot then draw a large burst.
func TestBucketCapacity(t *testing.T) {
	b := New(Config{}, t0, 0)
	var media uint64
	for i := 1; i <= 20; i++ { // 20 s at 100 kB/s, a feedback packet every second, no NACKs
		media += 100000
		b.Begin(t0.Add(time.Duration(i)*time.Second), media)
	}
	if got, want := b.Tokens(), 0.25*100000+Burst; got != want {
		t.Fatalf("tokens %v after 20 quiet windows, want %v", got, want)
	}
}

// TestHoldoffEnds: during the hold-off every NACK is refused for the hold-off's cause; after it
// resending resumes and, since NACKs were refused meanwhile, a keyframe is asked for again.
func TestHoldoffEnds(t *testing.T) {
	b := New(Config{}, t0, 0)
	nack(b, 0, 0, 1000, 0, 1, 2) // 1500 tokens: one resend, then empty
	if !b.Holding() || !b.Keyframe() {
		t.Fatal("not holding off")
	}
	if vs := nack(b, 500*time.Millisecond, 50000, 1000, 0, 3); vs[0] != OverBudget {
		t.Fatalf("during the hold-off: %v, want budget", vs)
	}
	if b.Keyframe() {
		t.Fatal("keyframe during the hold-off")
	}
	vs := nack(b, DefaultHoldoff+time.Millisecond, 60000, 1000, 0, 4)
	if b.Holding() || vs[0] != Resend {
		t.Fatalf("after the hold-off: holding %v, %v", b.Holding(), vs)
	}
	if !b.Keyframe() {
		t.Fatal("no keyframe after a hold-off that refused NACKs")
	}
}

// TestHoldoffWithoutRefusalsNoSecondKeyframe: a hold-off that refused nothing ends quietly.
func TestHoldoffWithoutRefusalsNoSecondKeyframe(t *testing.T) {
	b := New(Config{}, t0, 0)
	nack(b, 0, 0, 1000, 0, 1, 2)
	b.Keyframe()
	b.Begin(t0.Add(2*DefaultHoldoff), 10000)
	if b.Holding() || b.Keyframe() {
		t.Fatal("a quiet hold-off asked for a second keyframe")
	}
}

// TestDuplicateWithinRTT: a packet is resent at most once per round trip; the estimate is the
// default until reports give one.
func TestDuplicateWithinRTT(t *testing.T) {
	b := New(Config{}, t0, 0)
	media := uint64(1 << 20)
	if vs := nack(b, 0, media, 100, 0, 7); vs[0] != Resend {
		t.Fatal(vs)
	}
	if vs := nack(b, DefaultRTT-time.Millisecond, media, 100, 0, 7); vs[0] != Duplicate {
		t.Fatalf("within the default RTT: %v, want duplicate", vs)
	}
	if vs := nack(b, DefaultRTT+time.Millisecond, media, 100, 0, 7); vs[0] != Resend {
		t.Fatalf("after the default RTT: %v, want resend", vs)
	}
	b.ObserveRTT(30 * time.Millisecond)
	if got := b.RTT(); got != 30*time.Millisecond {
		t.Fatalf("RTT %v after the first sample, want 30ms", got)
	}
	start := DefaultRTT + time.Millisecond
	if vs := nack(b, start+20*time.Millisecond, media, 100, 0, 7); vs[0] != Duplicate {
		t.Fatalf("20 ms later with RTT 30 ms: %v", vs)
	}
	if vs := nack(b, start+31*time.Millisecond, media, 100, 0, 7); vs[0] != Resend {
		t.Fatalf("31 ms later with RTT 30 ms: %v", vs)
	}
}

func TestRTTSmoothedAndClamped(t *testing.T) {
	b := New(Config{}, t0, 0)
	b.ObserveRTT(time.Microsecond)
	if got := b.RTT(); got != MinRTT {
		t.Fatalf("RTT %v, want the minimum %v", got, MinRTT)
	}
	b.ObserveRTT(time.Hour)
	if got, want := b.RTT(), (7*MinRTT+MaxRTT)/8; got != want {
		t.Fatalf("RTT %v, want %v (smoothed, clamped sample)", got, want)
	}
}

// TestTooOld: packets past their useful life, and packets no longer cached, are not resent and
// cost no tokens.
func TestTooOld(t *testing.T) {
	b := New(Config{}, t0, 0)
	vs := nack(b, 0, 0, 1000, DefaultMaxAge+time.Millisecond, 1)
	vs = append(vs, nack(b, 0, 0, 0, 0, 2)...)
	if vs[0] != TooOld || vs[1] != TooOld {
		t.Fatalf("%v, want too_old twice", vs)
	}
	if vs := nack(b, 0, 0, 1000, DefaultMaxAge, 3); vs[0] != Resend {
		t.Fatalf("a packet exactly MaxAge old: %v, want resend", vs)
	}
}

// TestRangeBounded: at most MaxPerNack sequence numbers of one NACK are handled.
func TestRangeBounded(t *testing.T) {
	b := New(Config{MaxPerNack: 3}, t0, 0)
	vs := nack(b, 0, 1<<20, 10, 0, 1, 2, 3, 4, 5)
	if count(vs, Resend) != 3 || vs[3] != OutOfRange || vs[4] != OutOfRange {
		t.Fatalf("%v, want 3 resent and 2 refused by range", vs)
	}
	if vs := nack(b, time.Millisecond, 1<<20, 10, 0, 6); vs[0] != Resend {
		t.Fatalf("the next NACK: %v", vs)
	}
}

// TestCongestedPath: when the bytes NACKed in a window exceed CongestedLoss of its media, the
// path is congested: resending holds off and a keyframe is asked for, even with tokens left.
func TestCongestedPath(t *testing.T) {
	b := New(Config{Share: 1}, t0, 0)
	// 10 000 media bytes in the first window; 5 packets of 500 NACKed = 25 %.
	if vs := nack(b, 500*time.Millisecond, 10000, 500, 0, 1, 2, 3, 4, 5); count(vs, Resend) != 5 {
		t.Fatal(vs)
	}
	vs := nack(b, DefaultWindow, 10000, 500, 0, 6)
	if !b.Holding() || vs[0] != Congested || !b.Keyframe() {
		t.Fatalf("after a window with 25%% loss: holding %v, %v", b.Holding(), vs)
	}
}

// TestCongestionHoldsUntilItEnds: while half the packets are lost, resending stays off (NACKs
// refused during the hold-off still count as losses) and no further keyframe is asked for; once
// the losses stop, the hold-off ends within a window and a hold-off, with one keyframe request
// so the receiver starts over, and resending resumes.
func TestCongestionHoldsUntilItEnds(t *testing.T) {
	b := New(Config{}, t0, 0)
	const size = 1000
	var media uint64
	seq := uint16(0)
	resentLate, keyframes := 0, 0
	var endedAt time.Duration
	for ms := 10; ms <= 10000; ms += 10 { // a packet every 10 ms; half lost for 5 s, then none
		seq++
		media += size
		at := time.Duration(ms) * time.Millisecond
		b.Begin(t0.Add(at), media)
		if at <= 5*time.Second && seq%2 == 0 {
			if b.Admit(seq) == Resend && b.Spend(seq, size, 0) == Resend && at > 2*time.Second {
				resentLate++
			}
		}
		if b.Keyframe() {
			keyframes++
			if at > 5*time.Second && endedAt == 0 {
				endedAt = at
			}
		}
	}
	if resentLate != 0 {
		t.Errorf("%d packets resent after 2 s of 50%% loss", resentLate)
	}
	if keyframes != 2 || endedAt == 0 || endedAt > 5*time.Second+DefaultWindow+DefaultHoldoff {
		t.Errorf("%d keyframe requests, the last at %v: want one when the hold-off began and one when it ended, by %v",
			keyframes, endedAt, 5*time.Second+DefaultWindow+DefaultHoldoff)
	}
	if b.Holding() {
		t.Fatal("still holding off 5 s after the losses stopped")
	}
	b.Begin(t0.Add(10*time.Second+time.Millisecond), media)
	if v := b.Admit(seq - 1); v != Resend || b.Spend(seq-1, size, 0) != Resend {
		t.Fatalf("after the congestion: %v", v)
	}
}

// TestLossCountsFirstNACKOnly: NACKing the same packets again (a receiver retrying) is not
// more loss, and a few losses on a low-rate stream are not congestion.
func TestLossCountsFirstNACKOnly(t *testing.T) {
	b := New(Config{Share: 10}, t0, 0) // tokens to spare: only the loss share matters here
	for i := 0; i < 5; i++ {           // the same 3 packets (30 % of the window) NACKed five times
		nack(b, time.Duration(i)*150*time.Millisecond, 5000, 500, 0, 1, 2, 3)
	}
	nack(b, DefaultWindow, 5000, 500, 0, 9)
	if b.Holding() || b.Keyframe() {
		t.Fatal("three lost packets, NACKed repeatedly, made the path congested")
	}
}

// TestHostileReceiverBounded: a receiver that NACKs every packet it gets, forever, gets at most
// the share of the media resent.
func TestHostileReceiverBounded(t *testing.T) {
	b := New(Config{}, t0, 0)
	const size = 1200
	var media, resent uint64
	seq := uint16(0)
	keyframes := 0
	for ms := 1; ms <= 30000; ms++ { // 30 s, one 1200-byte packet per ms (~9.6 Mbit/s)
		seq++
		media += size
		b.Begin(t0.Add(time.Duration(ms)*time.Millisecond), media)
		// NACK this packet, and re-NACK the one of 50 ms ago.
		for _, s := range []uint16{seq, seq - 50} {
			if b.Admit(s) == Resend && b.Spend(s, size, 50*time.Millisecond) == Resend {
				resent += size
			}
		}
		if b.Keyframe() {
			keyframes++
		}
	}
	ratio := float64(resent) / float64(media)
	t.Logf("resent %.1f%% of the media, %d keyframe requests in 30 s", 100*ratio, keyframes)
	if ratio > DefaultShare {
		t.Fatalf("resent %.1f%% of the media, want at most %.0f%%", 100*ratio, 100*DefaultShare)
	}
	if keyframes == 0 || keyframes > 30 {
		t.Fatalf("%d keyframe requests in 30 s, want some and at most one per hold-off", keyframes)
	}
}

// TestNoRetransmissions: a negative share refuses every NACK and asks for keyframes instead.
func TestNoRetransmissions(t *testing.T) {
	b := New(Config{Share: -1}, t0, 0)
	vs := nack(b, 0, 1<<20, 100, 0, 1, 2)
	if vs[0] != OverBudget || vs[1] != OverBudget || !b.Keyframe() {
		t.Fatalf("%v", vs)
	}
	vs = nack(b, 2*DefaultHoldoff, 1<<21, 100, 0, 3)
	if vs[0] != OverBudget || !b.Keyframe() {
		t.Fatalf("after the hold-off: %v", vs)
	}
}

func TestVerdictNames(t *testing.T) {
	for v := Verdict(0); v < NumVerdicts; v++ {
		if v.String() == "" || v.String() == "unknown" {
			t.Fatalf("verdict %d has no name", v)
		}
	}
	if NumVerdicts.String() != "unknown" {
		t.Fatal("out-of-range verdict named")
	}
}

// TestBudgetAllocatesNothing: after the first resend (which allocates the ring), handling NACKs
// allocates nothing.
func TestBudgetAllocatesNothing(t *testing.T) {
	b := New(Config{}, t0, 0)
	nack(b, 0, 1<<20, 100, 0, 1)
	var i int
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		b.Begin(t0.Add(time.Duration(i)*time.Millisecond), uint64(i)<<12)
		if b.Admit(uint16(i)) == Resend {
			b.Spend(uint16(i), 100, 0)
		}
		b.Keyframe()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per NACK, want 0", allocs)
	}
}

func BenchmarkNack(b *testing.B) {
	bu := New(Config{}, t0, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bu.Begin(t0.Add(time.Duration(i)*time.Millisecond), uint64(i)<<12)
		if bu.Admit(uint16(i)) == Resend {
			bu.Spend(uint16(i), 1200, 0)
		}
	}
}
