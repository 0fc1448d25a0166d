package node

import (
	"math"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// A layer paused by dynacast (nobody needed it: every viewer was on the top layer) has no
// bitrate, so the allocator cannot see that it would fit a subscriber whose path just got
// capped, and nobody demands it again: the subscriber falls to the lowest layer and stays
// there, using a third of a path that carries the middle one. So the allocator guesses the
// paused layer's rate from its active neighbours and, when it fits the estimate better than
// the best active layer, the consumer demands it (consumerBWE.wants, read by Consumer.demand):
// dynacast resumes it at once, and the next allocations see its real rate.

// pausedRate guesses the bitrate of layer l of ls, inactive, from the nearest active layers
// below and above it: the rate grows as a power of the picture's area, the power read between
// the two (or 0.75 without an active layer above). 0: no active layer below to go by.
func pausedRate(ls []proto.Layer, l int) float64 {
	lo, hi := -1, -1
	for i := l - 1; i >= 0; i-- {
		if ls[i].Active && ls[i].Bitrate > 0 {
			lo = i
			break
		}
	}
	for i := l + 1; i < len(ls); i++ {
		if ls[i].Active && ls[i].Bitrate > 0 {
			hi = i
			break
		}
	}
	if lo < 0 {
		return 0
	}
	area := func(i int) float64 {
		if a := float64(ls[i].Width * ls[i].Height); a > 0 {
			return a
		}
		return math.Pow(4, float64(i)) // simulcast layers halve each side
	}
	x := math.Log(area(l) / area(lo))
	if hi < 0 {
		return float64(ls[lo].Bitrate) * math.Exp(0.75*x)
	}
	span := math.Log(area(hi) / area(lo))
	if span <= 0 {
		return float64(ls[hi].Bitrate)
	}
	return float64(ls[lo].Bitrate) * math.Pow(float64(ls[hi].Bitrate)/float64(ls[lo].Bitrate), x/span)
}

// pausedFit is the highest paused layer above best, up to c's preference, whose guessed rate
// fits avail (with the headroom of an up-switch), or -1.
func pausedFit(c *Consumer, ls []proto.Layer, best int, avail float64) int {
	fit := -1
	for l := best + 1; l <= c.MaxLayer() && l < len(ls); l++ {
		if ls[l].Active {
			continue
		}
		if r := pausedRate(ls, l); r > 0 && r*upHeadroom <= avail*(1-rtxReserve) {
			fit = l
		}
	}
	return fit
}
