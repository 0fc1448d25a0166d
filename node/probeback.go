package node

import "time"

// The probe's memory of failure. A capped path answers every probe the same way: the padding
// ramps up to the cap, the bottleneck's queue fills and drops, and the probe stops. On a path
// with a short queue (a router's, or tbf's 50 ms) the drop comes before the estimator reads the
// queue, and it takes media with it; a probe every few seconds, each ramping past the cap by
// several steps of probeStep, costs the capped subscriber a few percent of its packets.
//
// So the allocator remembers the rate the subscriber received when a probe failed (the path's
// capacity as that probe measured it) and treats the band around it with care: a probe climbs
// at probeStep up to the bottom of the band, then at probeSlowStep through it (the queue grows
// slowly enough for the probe's stop on a standing queue to come before the bottleneck drops),
// and fast again above it: a probe that passed the band without congestion found a path that
// got wider (a cap lifted), and the band is forgotten. A few rates are remembered, not only
// the last: a failure at a low rate that was not the path's (a receiver starved of CPU reads
// its socket late, which looks like a queue) must not make the next probe forget the cap it
// met before and rush into it once past the low band. Consecutive failures double the wait
// before the next probe, up to maxProbeBackoff: still short enough that a lifted cap is found
// within a few seconds.

// Tuning.
const (
	minProbeBackoff = 500 * time.Millisecond
	maxProbeBackoff = 3 * time.Second
	noiseWait       = time.Second      // after a failure well below a remembered rate
	probeSlowStep   = 1.06             // a probe's step per allocInterval within the careful band (1.26x/s)
	carefulBelow    = 0.9              // the careful band starts at this share of the failed rate
	carefulAbove    = 1.15             // and ends at this multiple of it
	failMemory      = 30 * time.Second // a failure's rate is forgotten after this
	maxBands        = 4                // failed rates remembered
	sameBand        = 0.1              // a failure within this share of a remembered rate replaces it
)

// probeBackoff is what the allocator remembers of its probes' failures; owned by the
// allocator's goroutine.
type probeBackoff struct {
	bands []failure     // at most maxBands, oldest first
	wait  time.Duration // before the next probe
	next  time.Time     // no probe starts before this
	fails int           // consecutive failures
}

// failure is a rate a probe failed at: the middle of a careful band.
type failure struct {
	rate float64 // bits/s
	at   time.Time
}

func newProbeBackoff() probeBackoff {
	return probeBackoff{wait: minProbeBackoff, bands: make([]failure, 0, maxBands)}
}

// failed records a probe that met congestion at now, when the subscriber received rx bits/s
// and the probe aimed at target: the capacity it found is the least of the two (rx is 0 while
// unknown). It replaces a remembered rate within sameBand of it, else the oldest when
// maxBands are remembered. The next probe waits twice as long as the last, unless this one
// failed well below a rate remembered: that is more likely noise (a receiver starved of CPU)
// than a path that narrowed, and a long wait would only delay finding a lifted cap, so the
// next waits noiseWait (a narrower path is found by the next probe, which crosses the new
// band with care).
func (b *probeBackoff) failed(now time.Time, rx, target float64) {
	r := target
	if rx > 0 {
		r = min(rx, target)
	}
	b.forget(now, 0)
	below := false
	for _, f := range b.bands {
		below = below || r < carefulBelow*f.rate
	}
	wait := noiseWait
	if !below {
		b.wait = min(2*b.wait, maxProbeBackoff)
		wait = b.wait
	}
	i := 0
	for i < len(b.bands) && (r < (1-sameBand)*b.bands[i].rate || r > (1+sameBand)*b.bands[i].rate) {
		i++
	}
	if i < len(b.bands) {
		b.bands = append(b.bands[:i], b.bands[i+1:]...)
	} else if len(b.bands) == maxBands {
		b.bands = append(b.bands[:0], b.bands[1:]...)
	}
	b.bands = append(b.bands, failure{r, now})
	b.fails++
	b.next = now.Add(wait)
}

// ended records a probe that ended without congestion (it reached its goal, or its time ran
// out, or nothing wants it any more): the next may start after minProbeBackoff.
func (b *probeBackoff) ended(now time.Time) {
	b.fails, b.wait = 0, minProbeBackoff
	b.next = now.Add(b.wait)
}

// ready tells whether a probe may start at now.
func (b *probeBackoff) ready(now time.Time) bool { return !now.Before(b.next) }

// forget drops the rates older than failMemory and those whose band a probe at target passed
// (0: none passed).
func (b *probeBackoff) forget(now time.Time, target float64) {
	keep := b.bands[:0]
	for _, f := range b.bands {
		if now.Sub(f.at) <= failMemory && (target == 0 || target < carefulAbove*f.rate) {
			keep = append(keep, f)
		}
	}
	b.bands = keep
}

// known is the highest remembered failed rate at now (0: none).
func (b *probeBackoff) known(now time.Time) float64 {
	b.forget(now, 0)
	r := 0.0
	for _, f := range b.bands {
		r = max(r, f.rate)
	}
	return r
}

// below is the bottom of the lowest careful band above x that a probe to need must cross (0:
// none).
func (b *probeBackoff) below(x, need float64) float64 {
	r := 0.0
	for _, f := range b.bands {
		if bot := carefulBelow * f.rate; bot > x && carefulAbove*f.rate <= need && (r == 0 || bot < r) {
			r = bot
		}
	}
	return r
}

// start bounds the first target of a probe to need: no higher than the bottom of the lowest
// careful band above floor (what the allocation sends, one step up), and never under floor;
// floor itself when it is within a band.
func (b *probeBackoff) start(now time.Time, start, floor, need float64) float64 {
	if b.careful(now, floor, need) {
		return floor
	}
	if bot := b.below(floor, need); bot > 0 {
		start = min(start, bot)
	}
	return max(start, floor)
}

// careful tells whether the target of a probe to need is within a careful band at now. A
// band the probe need not cross (its goal is inside it) does not count: such a probe is
// short, and it climbs fast to find out whether the estimate reaches its goal before the
// queue stops it.
func (b *probeBackoff) careful(now time.Time, target, need float64) bool {
	b.forget(now, 0)
	for _, f := range b.bands {
		if target >= carefulBelow*f.rate && target < carefulAbove*f.rate && carefulAbove*f.rate <= need {
			return true
		}
	}
	return false
}

// step is the target one allocInterval after target of a probe to need: probeSlowStep within
// a careful band, else probeStep but no further than the bottom of the next band. The bands a
// probe passed are forgotten: the path carries more than it did.
func (b *probeBackoff) step(now time.Time, target, need float64) float64 {
	b.forget(now, target)
	if b.careful(now, target, need) {
		return target * probeSlowStep
	}
	next := target * probeStep
	if bot := b.below(target, need); bot > 0 {
		next = min(next, bot)
	}
	return next
}
