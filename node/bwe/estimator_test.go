package bwe

import (
	"testing"
	"time"
)

// link is a simulated bottleneck in virtual time: a FIFO drained at rate bits/s that holds at
// most maxQueue of backlog (drop tail, as tbf's latency), then a fixed propagation delay.
type link struct {
	rate     float64
	maxQueue time.Duration
	prop     time.Duration
	free     time.Duration // when the queue is next empty
	from     time.Duration // count packets sent from this time on
	sent     int
	dropped  int
	sent0    int // sent and dropped before the cap lifted
	dropped0 int
	// observe, when set, is when the receiver timestamps a packet that arrived at its socket
	// at the given time (scheduling noise; arrivals are passed in order).
	observe func(time.Duration) time.Duration
}

// send returns when a packet of size bytes sent at t arrives, or false if it was dropped.
func (l *link) send(t time.Duration, size int) (time.Duration, bool) {
	start := max(t, l.free)
	if t >= l.from {
		l.sent++
	}
	if start-t > l.maxQueue {
		if t >= l.from {
			l.dropped++
		}
		return 0, false
	}
	l.free = start + time.Duration(float64(size*8)/l.rate*float64(time.Second))
	return l.free + l.prop, true
}

type inflight struct {
	ack      Ack
	feedback time.Duration // when the sender learns of it
}

// simulate runs a sender that sends at its estimate (in 1200-byte packets every 5 ms) through
// l, with the receiver's feedback every 50 ms, one propagation delay back, for d from start;
// rateAt changes the link's rate over time. It returns the estimate every 100 ms.
func simulate(e *Estimator, l *link, start, d time.Duration, rateAt func(time.Duration) float64) []int64 {
	var pending []inflight
	var out []int64
	credit := 0.0
	const tick = 5 * time.Millisecond
	nextFB := start
	for t := start; t < start+d; t += tick {
		l.rate = rateAt(t)
		credit += float64(e.Estimate()) / 8 * tick.Seconds()
		for credit >= 1200 {
			credit -= 1200
			arr, ok := l.send(t, 1200)
			if ok && l.observe != nil {
				arr = l.observe(arr)
			}
			a := Ack{Sent: t, Arrived: arr + 3*time.Hour, Size: 1200, Lost: !ok} // another clock
			fb := arr
			if !ok {
				fb = t + l.prop + 50*time.Millisecond
			}
			pending = append(pending, inflight{ack: a, feedback: fb})
		}
		if t >= nextFB {
			nextFB += 50 * time.Millisecond
			var acks []Ack
			rest := pending[:0]
			for _, p := range pending {
				if p.feedback <= t {
					acks = append(acks, p.ack)
				} else {
					rest = append(rest, p)
				}
			}
			pending = rest
			e.Update(t+l.prop, acks)
		}
		if (t-start)%(100*time.Millisecond) == 0 {
			if trace != nil {
				trace(t, e, l)
			}
			out = append(out, e.Estimate())
		}
	}
	return out
}

// trace, when set (debugging), sees the simulation every 100 ms.
var trace func(time.Duration, *Estimator, *link)

func mean(xs []int64) float64 {
	s := 0.0
	for _, x := range xs {
		s += float64(x)
	}
	return s / float64(len(xs))
}

// TestBottleneck: a sender at its estimate through a 600 kbit/s bottleneck (50 ms of queue,
// 20 ms each way) settles near the cap (between 60 % and 110 % of it over its last 5 s, the
// queue mostly drained, under 2 % of packets dropped from 3 s in), and when the cap lifts to 4 Mbit/s climbs past 2.5 Mbit/s within 10 s.
func TestBottleneck(t *testing.T) {
	const capRate, open = 600_000.0, 4_000_000.0
	e := New(Config{Initial: 1_500_000})
	lift := 20 * time.Second
	l := &link{maxQueue: 50 * time.Millisecond, prop: 20 * time.Millisecond, from: 4 * time.Second}
	rate := func(t time.Duration) float64 {
		if t < lift {
			l.sent0, l.dropped0 = l.sent, l.dropped
			return capRate
		}
		return open
	}
	est := simulate(e, l, time.Second, 30*time.Second, rate)
	capped := est[140:190] // 15..20 s
	if loss := float64(l.dropped0) / float64(l.sent0); loss > 0.02 {
		t.Errorf("capped: %.1f %% of the packets sent from 3 s on were dropped, want under 2 %%", 100*loss)
	} else {
		t.Logf("capped: %.2f %% of packets dropped from 3 s on", 100*loss)
	}
	if m := mean(capped); m < 0.6*capRate || m > 1.1*capRate {
		t.Errorf("capped at %.0f: mean estimate over the last 5 s %.0f, want within 60-110 %% of the cap (%v)", capRate, m, capped)
	}
	climbed := -1
	for i := 190; i < len(est); i++ {
		if est[i] > 2_500_000 {
			climbed = i
			break
		}
	}
	if climbed < 0 || climbed > 290 {
		t.Errorf("after the cap lifted the estimate reached %v, want past 2.5 Mbit/s within 10 s", est[190:])
	} else {
		t.Logf("capped mean %.0f bit/s; past 2.5 Mbit/s %.1f s after the cap lifted", mean(capped), float64(climbed-190)/10)
	}
}

// TestLossWithoutDelay: losses with no queue (a lossy radio link) bring the estimate down
// when they exceed 10 %, and leave it alone when rare.
func TestLossWithoutDelay(t *testing.T) {
	for _, tc := range []struct {
		every int // one loss per every packets
		down  bool
	}{{every: 4, down: true}, {every: 100, down: false}} {
		e := New(Config{Initial: 1_000_000})
		n := 0
		for ms := 0; ms < 5000; ms += 50 {
			var acks []Ack
			for i := 0; i < 5; i++ { // ~1 Mbit/s
				at := time.Duration(ms+i*10) * time.Millisecond
				n++
				acks = append(acks, Ack{Sent: at, Arrived: at + 30*time.Millisecond, Size: 1250, Lost: n%tc.every == 0})
			}
			e.Update(time.Duration(ms+50)*time.Millisecond, acks)
		}
		if got := e.Estimate() < 700_000; got != tc.down {
			t.Errorf("one loss in %d: estimate %d, want down %v", tc.every, e.Estimate(), tc.down)
		}
	}
}

// TestJitterIsNotCongestion: a path with random delay jitter (0-15 ms per packet) but no queue
// that builds is not read as overuse: a sender at 1 Mbit/s keeps an estimate at least 1.3 times
// that.
func TestJitterIsNotCongestion(t *testing.T) {
	e := New(Config{Initial: 1_000_000})
	rng := uint32(1)
	jitter := func() time.Duration { // a small deterministic PRNG
		rng = rng*1664525 + 1013904223
		return time.Duration(rng>>24) * 15 * time.Millisecond / 256
	}
	var acks []Ack
	for ms := 0; ms < 20_000; ms += 10 { // 1250-byte packets every 10 ms: 1 Mbit/s
		at := time.Duration(ms) * time.Millisecond
		acks = append(acks, Ack{Sent: at, Arrived: at + 30*time.Millisecond + jitter(), Size: 1250})
		if ms%100 == 90 {
			e.Update(at+60*time.Millisecond, acks)
			acks = acks[:0]
			if ms > 5000 && e.State() == Overusing {
				t.Fatalf("overuse read at %d ms from jitter alone (estimate %d)", ms, e.Estimate())
			}
		}
	}
	if e.Estimate() < 1_300_000 {
		t.Fatalf("estimate %d under jitter, want at least 1.3 Mbit/s", e.Estimate())
	}
}
