// Package bwe estimates the bandwidth of the path from a sender to one receiver from the
// receiver's transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions): for each
// packet sent, when it was sent and how large it was; for each packet acknowledged, when it
// arrived (or that it was lost).
//
// The estimator is send-side and compact, in the spirit of Google congestion control:
//
//   - delay: packets sent within a burst interval form a group; the trend of the groups' delay
//     variation says whether a queue builds on the path (trend.go);
//   - loss: the share of packets reported lost since the last loss reading (at least
//     lossPackets packets);
//   - rate control: over the bottleneck (a growing queue, or loss above 10 %), the estimate
//     drops to a share of the rate the receiver actually got, at most once per decreaseEvery;
//     while the queue drains it holds. With a steady queue and little loss it grows
//     multiplicatively, but never past a multiple of the received rate (a sender that sends
//     little learns little: the caller probes with padding to climb).
//
// It imports nothing of pion and reads no clock: times are passed in. An Estimator is not safe
// for concurrent use.
package bwe

import "time"

// Defaults of Config.
const (
	DefaultInitial = 1_000_000 // bits/s
	DefaultMin     = 100_000
	DefaultMax     = 20_000_000
)

// Tuning.
const (
	groupSpan     = 5 * time.Millisecond   // packets sent within this span form one group
	rateWindow    = 500 * time.Millisecond // the received rate is measured over this window
	historyWindow = time.Second            // samples kept
	decreaseEvery = 250 * time.Millisecond // at most one decrease per this (about a round trip)
	holdAfterDrop = 500 * time.Millisecond // no increase this long after a decrease
	beta          = 0.85                   // a decrease goes to this share of the received rate
	growth        = 0.45                   // multiplicative increase per second (1.6x/s)
	headroom      = 1.5                    // the estimate grows to at most this times the received rate
	highLoss      = 0.10
	lossPackets   = 20 // packets a loss reading needs
)

// Config sets an estimator's bounds in bits/s; a zero field takes its default.
type Config struct {
	Initial, Min, Max int64
}

// Ack is what the feedback says of one packet: when it was sent (sender's clock), its size, and
// when it arrived (receiver's clock, any epoch) unless it was lost.
type Ack struct {
	Sent    time.Duration
	Arrived time.Duration
	Size    int
	Lost    bool
}

// sample is one group, kept for the received rate.
type sample struct {
	at    time.Duration // arrival of the group's last packet
	bytes int
	n     int // packets
}

// An Estimator is the bandwidth estimate of one path.
type Estimator struct {
	cfg      Config
	estimate float64

	// The open group.
	open             bool
	gFirst, gSent    time.Duration
	gArrived         time.Duration
	gBytes, gPackets int

	delay   detector
	queue   queueGate
	samples []sample // recent groups and losses, oldest first
	lost    int
	lastRx  time.Duration

	// The loss reading: packets and losses since the last one, and its value.
	lossN, lossLost int
	loss            float64

	started      bool
	lastUpdate   time.Duration
	lastDecrease time.Duration
	decreased    bool
	state        State
}

// State is the estimator's reading of the path after the last feedback.
type State uint8

// States.
const (
	Normal    State = iota // no queue building: the estimate may grow
	Hold                   // the queue drains, or some loss: the estimate stays
	Overusing              // over the bottleneck: the estimate dropped
)

// New returns an estimator starting at c.Initial.
func New(c Config) *Estimator {
	if c.Initial == 0 {
		c.Initial = DefaultInitial
	}
	if c.Min == 0 {
		c.Min = DefaultMin
	}
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	return &Estimator{cfg: c, estimate: float64(c.Initial), samples: make([]sample, 0, 256)}
}

// Estimate is the current estimate in bits/s.
func (e *Estimator) Estimate() int64 { return int64(e.estimate) }

// State is the reading of the last Update.
func (e *Estimator) State() State { return e.state }

// Received is the rate the receiver got over the last rateWindow, in bits/s (0: not known yet).
func (e *Estimator) Received() int64 {
	if len(e.samples) == 0 {
		return 0
	}
	end := e.lastRx
	bytes := 0
	first := end
	for i := len(e.samples) - 1; i >= 0; i-- {
		s := e.samples[i]
		if s.at < end-rateWindow {
			break
		}
		bytes += s.bytes
		first = min(first, s.at)
	}
	span := end - first
	if span < rateWindow/2 {
		span = rateWindow / 2 // a short history: do not read a burst as a rate
	}
	return int64(float64(bytes*8) / span.Seconds())
}

// Queue is how late, in ms, the least delayed group of the last 150 ms arrived against the
// path's base delay: the standing queue (scheduling noise at the receiver does not raise it).
func (e *Estimator) Queue() float64 { return e.queue.queue() }

// Loss is the last loss reading: the share of packets lost among at least lossPackets.
func (e *Estimator) Loss() float64 { return e.loss }

// Trend is the delay detector's last slope of the queueing delay (ms per ms) and threshold.
func (e *Estimator) Trend() (float64, float64) { return e.delay.trend, e.delay.threshold }

// Update takes one feedback's acks (in send order) at now (sender's clock) and returns the new
// estimate in bits/s.
func (e *Estimator) Update(now time.Duration, acks []Ack) int64 {
	for _, a := range acks {
		e.lossN++
		if a.Lost {
			e.lossLost++
			continue
		}
		if e.open && a.Sent-e.gFirst > groupSpan {
			e.closeGroup()
		}
		if !e.open {
			e.open, e.gFirst, e.gBytes, e.gPackets = true, a.Sent, 0, 0
		}
		e.gSent, e.gBytes, e.gPackets = a.Sent, e.gBytes+a.Size, e.gPackets+1
		if a.Arrived > e.gArrived || e.gPackets == 1 {
			e.gArrived = a.Arrived
		}
	}
	e.trim()
	e.control(now)
	return int64(e.estimate)
}

// closeGroup hands the open group to the delay detector and records its bytes.
func (e *Estimator) closeGroup() {
	e.open = false
	e.delay.group(float64(e.gSent)/float64(time.Millisecond), float64(e.gArrived)/float64(time.Millisecond))
	e.queue.add(e.gSent, e.gArrived)
	if e.gArrived > e.lastRx {
		e.lastRx = e.gArrived
	}
	e.add(sample{at: e.gArrived, bytes: e.gBytes, n: e.gPackets})
}

func (e *Estimator) add(s sample) {
	e.samples = append(e.samples, s)
}

// trim forgets the samples older than historyWindow (the rate window is shorter).
func (e *Estimator) trim() {
	drop := 0
	for drop < len(e.samples) && e.samples[drop].at < e.lastRx-historyWindow {
		drop++
	}
	if drop > 0 {
		e.samples = append(e.samples[:0], e.samples[drop:]...)
	}
}

// control moves the estimate by the delay and loss signals.
func (e *Estimator) control(now time.Duration) {
	if !e.started {
		e.started, e.lastUpdate = true, now
		return
	}
	dt := (now - e.lastUpdate).Seconds()
	e.lastUpdate = now
	if dt <= 0 {
		return
	}
	rx := float64(e.Received())
	fresh := e.lossN >= lossPackets // a new loss reading
	if fresh {
		e.loss, e.lossN, e.lossLost = float64(e.lossLost)/float64(e.lossN), 0, 0
	}
	loss := e.loss
	// The detector's reading counts only while a queue stands (queue.go): scheduling noise at
	// the receiver makes slopes, not a queue, and a decrease on it spirals down (each one
	// lowers what is sent, so what is received, so the next decrease's target).
	sig, q := e.delay.sig, e.queue.queue()
	if sig == sigOver && q < queueMin || sig == sigUnder && q < queueMin/2 {
		sig = sigNormal
	}
	switch {
	case sig == sigOver || loss > highLoss && fresh:
		e.state = Overusing
		if e.decreased && now-e.lastDecrease < decreaseEvery {
			break
		}
		// What the receiver got is what the path carries now: go under it so the queue drains
		// (a full drop-tail queue has a constant delay: only its losses tell).
		target := beta * rx
		if rx == 0 {
			target = e.estimate * (1 - 0.5*loss)
		}
		if target < e.estimate {
			e.estimate = target
		}
		e.decreased, e.lastDecrease = true, now
	case sig == sigUnder || loss > 0.02:
		e.state = Hold
	default:
		e.state = Normal
		if e.decreased && now-e.lastDecrease < holdAfterDrop {
			break
		}
		limit := headroom*rx + 50_000
		if e.estimate < limit {
			e.estimate = min(e.estimate*(1+growth*dt), limit)
		}
	}
	e.estimate = max(float64(e.cfg.Min), min(float64(e.cfg.Max), e.estimate))
}
