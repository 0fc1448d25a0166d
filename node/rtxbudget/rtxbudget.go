// Package rtxbudget decides which NACKed packets a sender resends to one receiver, so that a
// receiver on a congested path (or one that pretends to be) cannot make the sender multiply the
// congestion:
//
//   - a token bucket refilled at a share of the media bytes forwarded to that receiver, holding
//     at most that share of one window's media plus one packet;
//   - a packet is resent at most once per round-trip estimate;
//   - no resend of a packet past its useful life;
//   - at most MaxPerNack sequence numbers handled per NACK;
//   - when the bucket runs empty, or when the packets NACKed in a window exceed a share of the
//     window's media (the path itself is congested), resending stops for a hold-off and the
//     receiver is better served by one keyframe: Keyframe reports when to ask for one (at most
//     one request per hold-off). NACKs refused during the hold-off still count as losses: while
//     they say the path is congested, the hold-off goes on, and the keyframe that lets the
//     receiver start over is asked for when it ends.
//
// It imports nothing of pion and reads no clock: the caller passes the time, looks packets up
// and sends them. A Budget is not safe for concurrent use.
package rtxbudget

import "time"

// Defaults of Config.
const (
	DefaultShare         = 0.25 // retransmitted bytes per forwarded media byte
	DefaultWindow        = time.Second
	DefaultMaxAge        = time.Second
	DefaultMaxPerNack    = 64
	DefaultCongestedLoss = 0.2
	DefaultHoldoff       = time.Second
	DefaultRTT           = 100 * time.Millisecond
)

// Round-trip samples are clamped to [MinRTT, MaxRTT].
const (
	MinRTT = 10 * time.Millisecond
	MaxRTT = time.Second
)

// Burst is the bucket's allowance on top of the share of a window's media: one packet of the
// largest size, so a low-rate stream can always resend one packet.
const Burst = 1500

// minLossPackets is how many packets a window must have had NACKed before its losses can say
// the path is congested (a few losses on a low-rate stream are not congestion).
const minLossPackets = 4

// ringSize is how many sequence numbers the budget remembers (when each was last resent).
const ringSize = 512

// Config sets a budget's limits. A zero field takes its default; a negative Share allows no
// retransmission at all (every NACK is refused and turns into a keyframe request).
type Config struct {
	// Share is the bucket's refill: retransmitted bytes allowed per media byte forwarded.
	Share float64
	// Window is the period over which the bucket's size and the loss share are measured.
	Window time.Duration
	// MaxAge is a packet's useful life: older packets (by RTP time behind the newest) are not
	// resent.
	MaxAge time.Duration
	// MaxPerNack bounds the sequence numbers handled per NACK; the rest are refused.
	MaxPerNack int
	// CongestedLoss: when the bytes first NACKed in a window exceed this share of the window's
	// media, the path is congested and resending holds off.
	CongestedLoss float64
	// Holdoff is how long resending stops once the bucket ran empty or the path is congested.
	Holdoff time.Duration
	// DefaultRTT is the round-trip estimate until the receiver's reports give one.
	DefaultRTT time.Duration
}

// WithDefaults fills the zero fields of c with the defaults.
func (c Config) WithDefaults() Config {
	if c.Share == 0 {
		c.Share = DefaultShare
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxPerNack <= 0 {
		c.MaxPerNack = DefaultMaxPerNack
	}
	if c.CongestedLoss <= 0 {
		c.CongestedLoss = DefaultCongestedLoss
	}
	if c.Holdoff <= 0 {
		c.Holdoff = DefaultHoldoff
	}
	if c.DefaultRTT <= 0 {
		c.DefaultRTT = DefaultRTT
	}
	return c
}

// Verdict is what becomes of one NACKed sequence number.
type Verdict uint8

// Verdicts: Resend, or the reason a NACKed packet is not resent.
const (
	Resend     Verdict = iota
	OverBudget         // the bucket is empty, or resending holds off after it ran empty
	Congested          // resending holds off: the window's losses say the path is congested
	Duplicate          // resent less than one round trip ago
	TooOld             // past its useful life, or no longer cached
	OutOfRange         // past the sequence numbers handled per NACK
	NumVerdicts
)

var verdictNames = [NumVerdicts]string{"resend", "budget", "congested", "duplicate", "too_old", "range"}

// String is the verdict's metric label.
func (v Verdict) String() string {
	if v < NumVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

type slot struct {
	seq    uint16
	used   bool          // seq was NACKed (its loss is counted)
	resent bool          // and resent at sentAt
	sentAt time.Duration // since the budget's start
}

// A Budget is one receiver's retransmission budget.
type Budget struct {
	cfg   Config
	start time.Time
	now   time.Duration // of the current NACK, since start

	tokens float64
	media  uint64 // the media counter at the last refill

	winStart    time.Duration
	winMedia    uint64  // the media counter at the window's start
	winLost     int     // bytes first NACKed in the window
	winLostPkts int     // packets first NACKed in the window
	winBytes    float64 // media bytes of the last complete window, scaled to one Window

	holding   bool
	holdUntil time.Duration
	holdCause Verdict
	refused   bool // a NACK was refused during the hold-off
	keyframe  bool // a keyframe request is due
	askedKF   bool
	lastKF    time.Duration // of the last keyframe request reported

	handled int     // sequence numbers of the current NACK
	avgSize float64 // of the packets looked up: the size of a packet NACKed during a hold-off
	rtt     time.Duration
	ring    []slot // allocated on the first resend
}

// New returns a budget that starts at now, with media the receiver's media counter (bytes
// forwarded to it so far). The bucket starts with Burst bytes.
func New(c Config, now time.Time, media uint64) *Budget {
	return &Budget{cfg: c.WithDefaults(), start: now, tokens: Burst, media: media, winMedia: media}
}

// Begin starts handling one NACK (or any feedback from the receiver) at now; media is the
// receiver's media counter. It refills the bucket, closes a finished window and ends an expired
// hold-off.
func (b *Budget) Begin(now time.Time, media uint64) {
	t := now.Sub(b.start)
	if t < b.now {
		t = b.now
	}
	b.now = t
	b.handled = 0
	if media > b.media {
		if b.cfg.Share > 0 {
			b.tokens += b.cfg.Share * float64(media-b.media)
		}
		b.media = media
	}
	if el := t - b.winStart; el >= b.cfg.Window {
		winMedia := media - b.winMedia
		b.winBytes = float64(winMedia) * float64(b.cfg.Window) / float64(el)
		if b.winLostPkts >= minLossPackets && float64(b.winLost) > b.cfg.CongestedLoss*float64(winMedia) {
			if !b.holding {
				b.hold(Congested)
			} else { // still congested: hold off longer; the keyframe waits for the end
				b.holdUntil, b.holdCause = max(b.holdUntil, t+b.cfg.Holdoff), Congested
			}
		}
		b.winStart, b.winMedia, b.winLost, b.winLostPkts = t, media, 0, 0
	}
	if b.holding && t >= b.holdUntil {
		b.holding = false
		if b.refused {
			b.keyframe = true // what was refused during the hold-off is lost: start over
		}
	}
	if c := b.capacity(); b.tokens > c {
		b.tokens = c
	}
}

// capacity is the bucket's size: the share of one window's media, plus Burst.
func (b *Budget) capacity() float64 {
	w := max(b.winBytes, float64(b.media-b.winMedia))
	return max(b.cfg.Share, 0)*w + Burst
}

func (b *Budget) hold(cause Verdict) {
	b.holding, b.holdUntil, b.holdCause, b.refused, b.keyframe = true, b.now+b.cfg.Holdoff, cause, false, true
}

// Admit is the first look at one NACKed sequence number, before the packet is looked up:
// Resend means look it up and call Spend.
func (b *Budget) Admit(seq uint16) Verdict {
	if b.handled >= b.cfg.MaxPerNack {
		return OutOfRange
	}
	b.handled++
	if b.cfg.Share < 0 && !b.holding {
		b.hold(OverBudget)
		return OverBudget
	}
	if b.holding {
		b.refused = true
		if b.ring != nil { // still a loss: it tells whether the path is congested
			if s := &b.ring[seq%ringSize]; !s.used || s.seq != seq {
				*s = slot{seq: seq, used: true}
				b.winLost += int(b.avgSize)
				b.winLostPkts++
			}
		}
		return b.holdCause
	}
	if b.ring != nil {
		s := &b.ring[seq%ringSize]
		if s.used && s.seq == seq && s.resent && b.now-s.sentAt < b.RTT() {
			return Duplicate
		}
	}
	return Resend
}

// Spend decides on an admitted sequence number whose packet has size bytes (0: not cached)
// and is age behind the newest packet: Resend means send it now (the bucket is charged).
func (b *Budget) Spend(seq uint16, size int, age time.Duration) Verdict {
	if size <= 0 || age > b.cfg.MaxAge {
		return TooOld
	}
	if b.ring == nil {
		b.ring = make([]slot, ringSize)
		b.avgSize = float64(size)
	}
	b.avgSize += (float64(size) - b.avgSize) / 8
	s := &b.ring[seq%ringSize]
	if !s.used || s.seq != seq {
		*s = slot{seq: seq, used: true}
		b.winLost += size
		b.winLostPkts++
	}
	if b.tokens < float64(size) {
		b.hold(OverBudget)
		return OverBudget
	}
	b.tokens -= float64(size)
	s.resent, s.sentAt = true, b.now
	return Resend
}

// Keyframe reports, once, that the receiver should get a keyframe instead of retransmissions:
// a hold-off began, or one ended after refusing NACKs. It reports at most one request per
// Holdoff; a request due sooner is reported at the first call after that.
func (b *Budget) Keyframe() bool {
	if !b.keyframe || (b.askedKF && b.now-b.lastKF < b.cfg.Holdoff) {
		return false
	}
	b.keyframe, b.askedKF, b.lastKF = false, true, b.now
	return true
}

// ObserveRTT feeds a round-trip sample (from a receiver report); the estimate is smoothed.
func (b *Budget) ObserveRTT(rtt time.Duration) {
	rtt = min(max(rtt, MinRTT), MaxRTT)
	if b.rtt == 0 {
		b.rtt = rtt
		return
	}
	b.rtt = (7*b.rtt + rtt) / 8
}

// RTT is the round-trip estimate (DefaultRTT until a sample arrived).
func (b *Budget) RTT() time.Duration {
	if b.rtt == 0 {
		return b.cfg.DefaultRTT
	}
	return b.rtt
}

// Holding tells whether resending holds off (as of the last Begin).
func (b *Budget) Holding() bool { return b.holding }

// Tokens is the bucket's content in bytes.
func (b *Budget) Tokens() float64 { return b.tokens }
