package node

import (
	"time"

	"github.com/cascade-sfu/cascade/node/bwe"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// The allocator of one subscriber: every allocInterval, and at once when its estimate drops, it
// shares the subscriber's estimate among its consumers: audio first (its rate is taken off the
// top), then every simulcast video consumer its lowest layer, then each in turn the best layer
// that fits what is left and its preference (Consumer.MaxLayer). A video producer without
// layers has nothing to choose, but its rate counts. A consumer goes down at once when its
// layer no longer fits (within keepSlack), and up only when the higher layer fits with
// upHeadroom to spare and the path shows neither a queue nor loss (the estimator reads a
// queue only where one stands, bwe/queue.go: receive-side noise does not hold it).
//
// When a layer is wanted that does not fit, the estimate cannot climb by itself (it grows only
// to a multiple of what the subscriber receives), so the allocator probes: one video consumer
// sends padding (probe.go), ramping what the subscriber receives up from what it is sent, until
// the estimate fits the layer (success), the path overuses (a standing queue or high loss,
// not a hold: the probe stops at once and the next
// waits twice as long, up to maxProbeBackoff: a capped path sees small, rare probes) or
// probeLength passes. Through the band around a rate at which a recent probe failed, a probe
// that must cross it climbs slowly (probeback.go).

// Tuning.
const (
	allocInterval = 250 * time.Millisecond
	upHeadroom    = 1.1              // a higher layer must fit this many times over
	keepSlack     = 1.1              // the current layer stays while it exceeds the estimate by less (a decrease leaves the estimate 15 % under what the path carried)
	rtxReserve    = 0.05             // the share of the estimate kept for retransmissions
	probeStep     = 1.15             // a probe's target grows by this every allocInterval (1.75x/s)
	ceilingFor    = 20 * time.Second // how long a path's measured capacity bounds a probe's start
	probeLength   = 5 * time.Second
	probeGrace    = 2 * time.Second       // after a failed probe, the layer it started from stays
	probeQueue    = 10 * time.Millisecond // a standing queue over this ends a probe (before the queue fills and drops)
	probeLoss     = 20                    // per mille: a loss reading over this ends a probe (a full queue drops before the estimator reads overuse)
)

// allocator is the state of one subscriber's allocation, owned by its goroutine.
type allocator struct {
	p  *Participant
	cc *ccSender
	cs []*Consumer
	ls [][]proto.Layer // the layers of cs's producers (nil: not simulcast, or audio)

	media    map[*Consumer]meter // per consumer: the producer's media counter, for its rate
	sendRate float64             // bits/s the transport sends (all it stamped)

	probing     *Consumer // sending padding, or nil
	probeTarget float64   // bits/s the probe makes the subscriber receive
	probeUntil  time.Time
	ceiling     float64 // bits/s the subscriber received when the path last overused
	ceilingAt   time.Time
	probeFailed time.Time // when the last probe met congestion
	state       bwe.State // at the last allocation
	back        probeBackoff
}

// meter measures a producer's media rate from its counter of payload bytes.
type meter struct {
	bytes uint64
	at    time.Time
	bps   float64
}

func newAllocator(p *Participant, t *transport) *allocator {
	return &allocator{p: p, cc: t.cc, media: make(map[*Consumer]meter), back: newProbeBackoff()}
}

// run allocates until done is closed.
func (a *allocator) run(done <-chan struct{}) {
	tick := time.NewTicker(allocInterval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			a.allocate(now)
		case <-a.cc.dropped: // the estimate fell: move down now, not at the next tick
			a.allocate(time.Now())
		}
	}
}

// allocate shares the estimate once.
func (a *allocator) allocate(now time.Time) {
	a.p.mu.Lock()
	a.cs = a.cs[:0]
	for _, c := range a.p.consumers {
		if !c.paused.Load() {
			a.cs = append(a.cs, c)
		}
	}
	a.p.mu.Unlock()
	a.measure(now)
	a.ls = a.ls[:0]
	for _, c := range a.cs {
		var ls []proto.Layer
		if c.producer.kind == webrtc.RTPCodecTypeVideo {
			ls = c.producer.Layers()
		}
		a.ls = append(a.ls, ls)
	}

	est := float64(a.cc.estimate.Load())
	state := bwe.State(a.cc.state.Load())
	if state == bwe.Overusing && a.state != bwe.Overusing { // an episode starts: the path is full
		a.ceiling, a.ceilingAt = float64(a.cc.received.Load()), now
	}
	a.state = state
	rem := est
	media := 0.0 // what the allocation sends
	// Audio, and video without layers: their rates are taken first. Then every simulcast
	// consumer's lowest layer.
	for i, c := range a.cs {
		if ls := a.ls[i]; len(ls) > 0 {
			rem -= float64(ls[lowestActive(ls)].Bitrate)
		} else {
			rem -= a.media[c].bps
			media += a.media[c].bps
		}
	}
	// Then each simulcast consumer the best layer that fits what is left, in turn: the current
	// layer stays while it fits, a higher one needs headroom (and room for retransmissions)
	// and a path without a queue.
	// The current layer also stays while the subscriber receives it intact: a false alarm of
	// the delay detector, or a decrease while the sender is held to the layer's rate, leaves the
	// estimate just under the layer that the path carries.
	// So does it for probeGrace after a failed probe, while it is under the capacity the path
	// showed: the congestion was the padding's, and the padding stopped.
	rx, intact := float64(a.cc.received.Load()), a.cc.loss.Load() < 20
	probed := now.Sub(a.probeFailed) < probeGrace
	var want *Consumer // a consumer held below the layer it wants
	need := 0.0        // the estimate that would let it have the next layer
	for i, c := range a.cs {
		ls := a.ls[i]
		if len(ls) == 0 {
			continue
		}
		low := lowestActive(ls)
		avail := rem + float64(ls[low].Bitrate)
		cur := c.Layer()
		best, top := low, low
		for l := low; l <= c.MaxLayer() && l < len(ls); l++ {
			if !ls[l].Active {
				continue
			}
			top = l
			bps := float64(ls[l].Bitrate)
			if l <= cur && l > low && (bps <= avail*keepSlack || l == cur && (intact && bps <= rx || probed && bps <= a.ceiling)) || l > cur && state == bwe.Normal && bps*upHeadroom <= avail*(1-rtxReserve) {
				best = l
			}
		}
		c.SetTarget(best)
		paused := -1 // a paused layer above best that would fit: demand it, do not probe past it
		if state != bwe.Overusing {
			paused = pausedFit(c, ls, best, avail)
		}
		c.bw.wants.Store(uint32(layerBit(paused)))
		rem = avail - float64(ls[best].Bitrate)
		media += float64(ls[best].Bitrate)
		if best < top && want == nil && paused < 0 {
			next := best + 1
			for next < top && !ls[next].Active {
				next++
			}
			others := est - rem - float64(ls[best].Bitrate)
			want, need = c, others+float64(ls[next].Bitrate)*upHeadroom/(1-rtxReserve)
		}
	}
	a.probe(now, est, state, want, need, media)
}

// lowestActive is the lowest active layer (0 when none is).
func lowestActive(ls []proto.Layer) int {
	for i, l := range ls {
		if l.Active {
			return i
		}
	}
	return 0
}

// measure updates the consumers' media rates and the transport's send rate.
func (a *allocator) measure(now time.Time) {
	a.sendRate = float64(a.cc.rate.Load())
	for _, c := range a.cs {
		m, ok := a.media[c]
		b := c.producer.media.Load()
		if ok {
			if dt := now.Sub(m.at).Seconds(); dt > 0 {
				bps := float64(b-m.bytes) * 8 / dt
				m.bps = 0.7*m.bps + 0.3*bps
				if m.bps == 0 || bps > m.bps && m.bps < 1000 {
					m.bps = bps
				}
			}
		}
		m.bytes, m.at = b, now
		a.media[c] = m
	}
	if len(a.media) > len(a.cs) { // forget the consumers that left
		live := make(map[*Consumer]bool, len(a.cs))
		for _, c := range a.cs {
			live[c] = true
		}
		for c := range a.media {
			if !live[c] {
				delete(a.media, c)
			}
		}
	}
}

// probe starts, keeps or stops the padding that lets the estimate climb to need (bits/s) for
// want, the consumer held below the layer it wants (nil: none); media is what the allocation
// sends. A probe starts at probeStep times media and raises its target by probeStep every
// interval while the path shows no queue; it stops when the estimate reaches need (the next
// allocation takes the layer), at the first sign of a queue (the next one waits twice as long,
// up to maxProbeBackoff), or after probeLength.
func (a *allocator) probe(now time.Time, est float64, state bwe.State, want *Consumer, need, media float64) {
	if a.probing != nil {
		switch {
		case want != a.probing || est >= need: // it fits now (or nothing is wanted)
			a.stopProbe(now, false)
		case state == bwe.Overusing || a.cc.loss.Load() > probeLoss || a.cc.queue.Load() > probeQueue.Microseconds():
			// overuse, the padding dropped, or a queue standing (not a hold, not noise: a
			// queue that delays every packet for 150 ms): that is the capacity
			a.stopProbe(now, true)
		case now.After(a.probeUntil):
			a.stopProbe(now, false)
		default:
			a.probeTarget = min(a.back.step(now, a.probeTarget, need), need)
			a.probing.SetPadding(int64(max(0, a.probeTarget-media)))
			return
		}
	}
	if want == nil || state != bwe.Normal || !a.back.ready(now) || media <= 0 {
		return
	}
	// Start from what is sent, or from just under the estimate when the path's capacity was
	// measured lately and the estimate is below it (the estimate just fell: climb back fast);
	// an estimate above what was ever received is only a bound, not a starting point.
	// Either way, no higher than the bottom of a careful band it must cross (probeback.go).
	start := media * probeStep
	if now.Sub(a.ceilingAt) < ceilingFor {
		start = max(start, 0.9*min(est, a.ceiling))
	}
	start = a.back.start(now, start, media*probeStep, need)
	a.probing, a.probeUntil, a.probeTarget = want, now.Add(probeLength), min(start, need)
	want.SetPadding(int64(max(0, a.probeTarget-media)))
}

func (a *allocator) stopProbe(now time.Time, failed bool) {
	a.probing.SetPadding(0)
	a.probing = nil
	if failed {
		a.probeFailed = now
		a.back.failed(now, float64(a.cc.received.Load()), a.probeTarget)
	} else {
		a.back.ended(now)
	}
}

// rtxHeadroom is how many bytes of retransmissions the subscriber's estimate leaves room for
// until the next feedback (about 100 ms of the estimate minus what the transport sends); -1:
// no estimate (no clamp). It runs on the consumer's feedback goroutine.
func (c *Consumer) rtxHeadroom(time.Time) float64 {
	cc := c.bw.cc
	if cc == nil {
		return -1
	}
	return float64(cc.estimate.Load()-cc.rate.Load()) / 8 / 10
}
