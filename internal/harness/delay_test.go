package harness

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestDelay measures the one-way times of UDP pings between a host made WithDelay and a plain
// one, with the delay on one direction, then the other, then none; both ends are in this process,
// so one clock times each way.
func TestDelay(t *testing.T) {
	lab := New(t)
	a := lab.Host("a", WithDelay(40*time.Millisecond, 0))
	b := lab.Host("b")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	p := &pinger{conn: listenUDP(t, a, 0), base: base}
	to := netip.AddrPortFrom(b.Addr(), 7000)
	Eventually(t, 5*time.Second, func() error { _, _, err := p.ping(to, time.Second); return err })

	for _, c := range []struct{ egress, ingress time.Duration }{
		{40 * time.Millisecond, 0},
		{0, 25 * time.Millisecond},
		{0, 0},
	} {
		a.SetDelay(c.egress, c.ingress)
		there, back, rtt := medianPing(t, p, to, 15)
		t.Logf("delay %v/%v: median one-way a->b %v, b->a %v, round trip %v", c.egress, c.ingress, there, back, rtt)
		near(t, "a->b", there, c.egress)
		near(t, "b->a", back, c.ingress)
		near(t, "round trip", rtt, c.egress+c.ingress)
	}

	a.Cut() // faults work on a delayed host too
	if _, _, err := p.ping(to, lost); blocked(err) != nil {
		t.Fatalf("ping while cut: %v", blocked(err))
	}
	a.Heal()
	Eventually(t, 2*time.Second, func() error { _, _, err := p.ping(to, time.Second); return err })
}

// medianPing returns the median one-way and round-trip times of n pings.
func medianPing(t *testing.T, p *pinger, to netip.AddrPort, n int) (there, back, rtt time.Duration) {
	t.Helper()
	var theres, backs, rtts []time.Duration
	for range n {
		th, b, err := p.ping(to, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		theres, backs, rtts = append(theres, th), append(backs, b), append(rtts, th+b)
		time.Sleep(5 * time.Millisecond)
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	return median(theres), median(backs), median(rtts)
}

// near fails t unless got is want within 10 %, or, for no delay, under 4 ms (on an idle machine
// it is about 0.1 ms).
func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	lo, hi := want-want/10, want+want/10
	if want == 0 {
		hi = 4 * time.Millisecond
	}
	if got < lo || got > hi {
		t.Errorf("%s: median %v, want %v..%v", what, got, lo, hi)
	}
}
