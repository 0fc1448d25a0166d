package bwe

import (
	"testing"
	"time"
)

// stalls is a receiver's read loop under CPU load: every 20-150 ms it stalls for 5-30 ms, and
// the packets that reached the socket meanwhile are timestamped when it runs again, all at once.
type stalls struct {
	rng        uint32
	start, end time.Duration // the current or next stall
}

func (s *stalls) rand(lo, hi time.Duration) time.Duration { // a small deterministic PRNG
	s.rng = s.rng*1664525 + 1013904223
	return lo + time.Duration(s.rng>>16)*(hi-lo)/65536
}

// observe is when a packet that arrived at arr (in order) is timestamped.
func (s *stalls) observe(arr time.Duration) time.Duration {
	for arr >= s.end {
		s.start = s.end + s.rand(20*time.Millisecond, 150*time.Millisecond)
		s.end = s.start + s.rand(5*time.Millisecond, 30*time.Millisecond)
	}
	if arr >= s.start {
		return s.end
	}
	return arr
}

// TestSchedulingNoiseOnBottleneck: on a 600 kbit/s bottleneck (50 ms of queue, 20 ms each way),
// a receiver whose timestamps carry heavy scheduling noise (stalls of 5-30 ms every 20-150 ms)
// does not drive the estimate down a spiral: from 5 s on it never falls under 400 kbit/s and averages
// at least 450 kbit/s, with under 2 % of packets dropped (the real queue is still seen).
func TestSchedulingNoiseOnBottleneck(t *testing.T) {
	const capRate = 600_000.0
	for _, seed := range []uint32{1, 7, 42, 1234} {
		e := New(Config{Initial: 1_500_000})
		s := &stalls{rng: seed}
		l := &link{maxQueue: 50 * time.Millisecond, prop: 20 * time.Millisecond, from: 5 * time.Second, observe: s.observe}
		est := simulate(e, l, time.Second, 30*time.Second, func(time.Duration) float64 { return capRate })
		settled := est[40:] // 5..31 s
		lowest := settled[0]
		for _, x := range settled {
			lowest = min(lowest, x)
		}
		loss := float64(l.dropped) / float64(l.sent)
		t.Logf("seed %d: mean estimate %.0f, lowest %d, %.2f %% dropped", seed, mean(settled), lowest, 100*loss)
		if m := mean(settled); m < 450_000 || m > 1.1*capRate {
			t.Errorf("seed %d: mean estimate %.0f, want 450 kbit/s to 110 %% of the cap", seed, m)
		}
		if lowest < 400_000 {
			t.Errorf("seed %d: the estimate fell to %d, want never under 400 kbit/s", seed, lowest)
		}
		if loss > 0.02 {
			t.Errorf("seed %d: %.1f %% dropped, want under 2 %%", seed, 100*loss)
		}
	}
}
