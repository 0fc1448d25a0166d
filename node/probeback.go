package node

import "time"

// The probe's memory of failure. A capped path answers every probe the same way: the padding
// ramps up to the cap, the bottleneck's queue fills and drops, and the probe stops. On a path
// with a short queue (a router's, or tbf's 50 ms) the drop comes before the estimator reads the
// queue, and it takes media with it; a probe every few seconds, each ramping past the cap by
// several steps of probeStep, costs the capped subscriber a few percent of its packets.
//
// So the allocator remembers the rate the subscriber received when the last probe failed (the
// path's capacity as that probe measured it) and treats the band around it with care: a probe
// climbs at probeStep up to the bottom of the band, then at probeSlowStep through it (the
// queue grows slowly enough to be seen before it drops), stopping at the first sign of one (a
// hold, a standing queue over carefulQueue, a little loss: before the estimator cuts, on a
// trend or more loss, since a cut leaves the subscriber an estimate below what the path
// carries, and its layer may follow), and fast again above it: a probe that passed the band without congestion found a path that got wider (a cap
// lifted), and the remembered rate is forgotten. Consecutive failures double the wait before
// the next probe, up to maxProbeBackoff: still short enough that a lifted cap is found within
// a few seconds.

// Tuning.
const (
	minProbeBackoff = 500 * time.Millisecond
	maxProbeBackoff = 4 * time.Second
	probeSlowStep   = 1.06                 // a probe's step per allocInterval within the careful band (1.26x/s)
	carefulBelow    = 0.9                  // the careful band starts at this share of the failed rate
	carefulAbove    = 1.15                 // and ends at this multiple of it
	failMemory      = 30 * time.Second     // a failure's rate is forgotten after this
	carefulQueue    = 4 * time.Millisecond // in the band, a standing queue over this ends a probe
	carefulLoss     = 10                   // per mille: in the band, a loss reading over this ends a probe
)

// probeBackoff is what the allocator remembers of its probes' failures; owned by the
// allocator's goroutine.
type probeBackoff struct {
	rate  float64       // bits/s received when the last probe failed (0: none remembered)
	at    time.Time     // when it failed
	wait  time.Duration // before the next probe
	next  time.Time     // no probe starts before this
	fails int           // consecutive failures
}

func newProbeBackoff() probeBackoff { return probeBackoff{wait: minProbeBackoff} }

// failed records a probe that met congestion at now, when the subscriber received rx bits/s
// and the probe aimed at target: the capacity it found is the least of the two (rx is 0 while
// unknown). The next probe waits twice as long as the last.
func (b *probeBackoff) failed(now time.Time, rx, target float64) {
	b.rate, b.at = target, now
	if rx > 0 {
		b.rate = min(rx, target)
	}
	b.fails++
	b.wait = min(2*b.wait, maxProbeBackoff)
	b.next = now.Add(b.wait)
}

// ended records a probe that ended without congestion (it reached its goal, or its time ran
// out, or nothing wants it any more): the next may start after minProbeBackoff.
func (b *probeBackoff) ended(now time.Time) {
	b.fails, b.wait = 0, minProbeBackoff
	b.next = now.Add(b.wait)
}

// ready tells whether a probe may start at now.
func (b *probeBackoff) ready(now time.Time) bool { return !now.Before(b.next) }

// known is the remembered failed rate at now (0: none, or forgotten).
func (b *probeBackoff) known(now time.Time) float64 {
	if b.rate > 0 && now.Sub(b.at) > failMemory {
		b.rate = 0
	}
	return b.rate
}

// start bounds a probe's first target: no higher than the bottom of the careful band, unless
// floor (what the allocation sends, one step up) is already above it.
func (b *probeBackoff) start(now time.Time, start, floor float64) float64 {
	if f := b.known(now); f > 0 {
		start = min(start, carefulBelow*f)
	}
	return max(start, floor)
}

// careful tells whether a probe's target is within the careful band at now.
func (b *probeBackoff) careful(now time.Time, target float64) bool {
	f := b.known(now)
	return f > 0 && target >= carefulBelow*f && target < carefulAbove*f
}

// step is a probe's target one allocInterval after target: probeStep up to the careful band,
// probeSlowStep within it, probeStep above it (and the failed rate is forgotten: the path
// carries more than it did).
func (b *probeBackoff) step(now time.Time, target float64) float64 {
	f := b.known(now)
	switch {
	case f == 0:
		return target * probeStep
	case target >= carefulAbove*f:
		b.rate = 0
		return target * probeStep
	case target < carefulBelow*f:
		return min(target*probeStep, carefulBelow*f)
	}
	return target * probeSlowStep
}
