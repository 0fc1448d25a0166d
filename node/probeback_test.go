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
		t = min(b.step(now, t, goal), goal)
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
	if r := b.known(t0); r != 600_000 {
		t.Fatalf("failed rate %.0f, want the received 600000 (less than the target)", r)
	}
	now := t0.Add(2 * time.Second)
	if got := b.start(now, 650_000, 430_000, 1_750_000); got != carefulBelow*600_000 {
		t.Errorf("start %.0f, want the band's bottom %.0f", got, carefulBelow*600_000)
	}
	if got := b.start(now, 650_000, 560_000, 1_750_000); got != 560_000 {
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
		t.Errorf("the failed rate %.0f is still remembered after a probe passed its band", b.known(now))
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
	if r := b.known(now); r != 600_000 {
		t.Errorf("failed rate %.0f without a received rate, want the target 600000", r)
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

// TestProbeBackoffBands: a failure at a low rate that was not the path's (300 kbit/s) after
// one at the cap (600 kbit/s): a probe crosses the low band with care, forgets it, and stops
// short of the cap's band again instead of rushing into it; a failure near a remembered rate
// replaces it; no more than maxBands are kept.
func TestProbeBackoffBands(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newProbeBackoff()
	b.failed(t0, 600_000, 650_000)
	b.failed(t0.Add(time.Second), 300_000, 330_000)
	now := t0.Add(2 * time.Second)
	ts := climb(&b, now, 250_000, 1_750_000, 60)
	var low, high int
	for _, x := range ts {
		switch {
		case x >= carefulBelow*300_000 && x < carefulAbove*300_000:
			low++
		case x >= carefulBelow*600_000 && x < carefulAbove*600_000:
			high++
		}
	}
	if low < 3 || high < 4 {
		t.Errorf("%d allocations in the low band, %d in the cap's band, want at least 3 and 4: %.0f", low, high, ts)
	}
	for i := 1; i < len(ts); i++ {
		if ts[i-1] < carefulBelow*600_000 && ts[i] > carefulBelow*600_000 {
			t.Errorf("step %d went from %.0f past the bottom of the cap's band to %.0f", i, ts[i-1], ts[i])
		}
	}
	if r := b.known(now); r != 0 {
		t.Errorf("%.0f still remembered after a probe passed every band", r)
	}

	b = newProbeBackoff()
	b.failed(t0, 600_000, 700_000)
	b.failed(t0, 630_000, 700_000)
	if len(b.bands) != 1 || b.bands[0].rate != 630_000 {
		t.Errorf("a failure within %v of a remembered rate did not replace it: %v", sameBand, b.bands)
	}
	for i := 0; i < maxBands+2; i++ {
		b.failed(t0, float64(100_000*(i+1)), 2_000_000)
	}
	if len(b.bands) != maxBands {
		t.Errorf("%d rates remembered, want %d", len(b.bands), maxBands)
	}
}

// TestProbeBackoffShortProbe: a probe whose goal is inside a careful band (a layer that fits
// only just, 630 kbit/s after a failure at 600) does not crawl: it climbs at probeStep, to see
// whether the estimate reaches the goal before the queue stops it.
func TestProbeBackoffShortProbe(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newProbeBackoff()
	b.failed(t0, 600_000, 700_000)
	now := t0.Add(time.Second)
	if got := b.start(now, 560_000, 450_000, 630_000); got != 560_000 {
		t.Errorf("start %.0f of a probe to 630 kbit/s, want 560000 (not held under the band)", got)
	}
	ts := climb(&b, now, 450_000, 630_000, 20)
	for i := 1; i < len(ts)-1; i++ {
		if r := ts[i] / ts[i-1]; math.Abs(r-probeStep) > 1e-9 {
			t.Errorf("step %d from %.0f by %.3f, want %.2f: %.0f", i, ts[i-1], r, probeStep, ts)
		}
	}
	if b.known(now) != 600_000 {
		t.Error("a probe that ended inside the band forgot it")
	}
}

// TestProbeBackoffNoiseWait: after a failure well below a remembered rate (noise, or a
// narrower path) the next probe waits noiseWait and the back-off does not grow; after one at
// the remembered rate it grows.
func TestProbeBackoffNoiseWait(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newProbeBackoff()
	b.failed(now, 600_000, 700_000) // 1 s
	b.failed(now, 610_000, 700_000) // 2 s
	if b.wait != 2*time.Second {
		t.Fatalf("wait %v after two failures at the cap, want 2s", b.wait)
	}
	b.failed(now, 400_000, 450_000)
	if b.wait != 2*time.Second || b.ready(now.Add(noiseWait-time.Millisecond)) || !b.ready(now.Add(noiseWait)) {
		t.Errorf("after a failure at 400 kbit/s under a cap of 600: the next probe does not wait %v (and the back-off stays %v, is %v)",
			noiseWait, 2*time.Second, b.wait)
	}
	if len(b.bands) != 2 {
		t.Errorf("%d rates remembered, want the low one too: %v", len(b.bands), b.bands)
	}
	b.failed(now, 590_000, 700_000)
	if want := min(4*time.Second, maxProbeBackoff); b.wait != want {
		t.Errorf("wait %v after another failure at the cap, want %v", b.wait, want)
	}
}
