package node

import (
	"math"
	"testing"
	"time"
)

// climb runs a probe from start with b's steps until it reaches goal or n steps pass; it
// returns the targets, one per allocInterval.
func climb(b *probeBackoff, now time.Time, start, goal float64, n int) []float64 {
	out := []float64{start}
	for t := start; t < goal && len(out) < n; {
		now = now.Add(allocInterval)
		t = min(b.step(now, t), goal)
		out = append(out, t)
	}
	return out
}

// TestProbeBackoffCarefulBand: after a probe failed at 600 kbit/s, the next one starts no
// higher than the bottom of the band around it, climbs through the band at probeSlowStep (at
// least three allocations between 540 and 690 kbit/s, where a fresh probe takes one or two),
// and at probeStep above it; having passed the band it forgets the failed rate.
func TestProbeBackoffCarefulBand(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newProbeBackoff()
	b.failed(t0, 600_000, 700_000)
	if b.rate != 600_000 {
		t.Fatalf("failed rate %.0f, want the received 600000 (less than the target)", b.rate)
	}
	now := t0.Add(2 * time.Second)
	if got := b.start(now, 650_000, 430_000); got != carefulBelow*600_000 {
		t.Errorf("start %.0f, want the band's bottom %.0f", got, carefulBelow*600_000)
	}
	if got := b.start(now, 650_000, 560_000); got != 560_000 {
		t.Errorf("start %.0f, want the floor 560000 (what is sent already)", got)
	}
	inBand := func(ts []float64) int {
		n := 0
		for _, x := range ts {
			if x >= carefulBelow*600_000 && x < carefulAbove*600_000 {
				n++
			}
		}
		return n
	}
	ts := climb(&b, now, 430_000, 1_750_000, 40)
	if n := inBand(ts); n < 4 {
		t.Errorf("%d allocations in the careful band, want at least 4: %.0f", n, ts)
	}
	for i := 1; i < len(ts); i++ {
		r := ts[i] / ts[i-1]
		switch x := ts[i-1]; {
		case x >= carefulBelow*600_000 && x < carefulAbove*600_000:
			if math.Abs(r-probeSlowStep) > 1e-9 {
				t.Errorf("step %d from %.0f (in the band) by %.3f, want %.2f", i, x, r, probeSlowStep)
			}
		case ts[i] < 1_750_000 && ts[i] != carefulBelow*600_000:
			if math.Abs(r-probeStep) > 1e-9 {
				t.Errorf("step %d from %.0f (outside the band) by %.3f, want %.2f", i, x, r, probeStep)
			}
		}
	}
	if ts[len(ts)-1] != 1_750_000 {
		t.Errorf("the probe did not reach its goal in %d allocations: %.0f", len(ts), ts)
	}
	// The whole climb stays within a probe's length: a lifted cap is found by one probe.
	if d := time.Duration(len(ts)-1) * allocInterval; d > probeLength {
		t.Errorf("the climb from 430 kbit/s to 1.75 Mbit/s takes %v, longer than a probe (%v)", d, probeLength)
	}
	if b.known(now) != 0 {
		t.Errorf("the failed rate %.0f is still remembered after a probe passed its band", b.rate)
	}
	fresh := newProbeBackoff()
	if n := inBand(climb(&fresh, now, 430_000, 1_750_000, 40)); n >= 3 {
		t.Errorf("a probe without a failure behind it spent %d allocations in the band, want it fast", n)
	}
}

// TestProbeBackoffWaits: each consecutive failure doubles the wait before the next probe, up
// to maxProbeBackoff; a probe that ends without congestion resets it; a failed rate is
// forgotten after failMemory.
func TestProbeBackoffWaits(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newProbeBackoff()
	if !b.ready(now) {
		t.Fatal("a new allocator may not probe")
	}
	want := minProbeBackoff
	for i := 0; i < 6; i++ {
		b.failed(now, 0, 600_000)
		want = min(2*want, maxProbeBackoff)
		if b.ready(now.Add(want - time.Millisecond)) {
			t.Errorf("failure %d: ready before %v", i+1, want)
		}
		if !b.ready(now.Add(want)) {
			t.Errorf("failure %d: not ready after %v", i+1, want)
		}
		now = now.Add(want)
	}
	if b.rate != 600_000 {
		t.Errorf("failed rate %.0f without a received rate, want the target 600000", b.rate)
	}
	b.ended(now)
	if b.ready(now.Add(minProbeBackoff-time.Millisecond)) || !b.ready(now.Add(minProbeBackoff)) {
		t.Errorf("after a probe without congestion the wait is not %v", minProbeBackoff)
	}
	if b.known(now) == 0 {
		t.Error("a probe that ended without passing the band forgot the failed rate")
	}
	if b.known(now.Add(failMemory+time.Second)) != 0 {
		t.Errorf("the failed rate is remembered after %v", failMemory)
	}
}
