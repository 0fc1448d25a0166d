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

// TestDelayTo gives a host's frames to one host a delay and none to another: pings to b take
// the delay there (IPv4 and IPv6) and none back, pings to c none at all, also right after a burst
// to b (c's frames do not queue behind b's); then b's delay changes.
func TestDelayTo(t *testing.T) {
	lab := New(t)
	a := lab.Host("a", WithDelay(0, 0))
	b, c := lab.Host("b"), lab.Host("c")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	echoUDP(t, c, 7000, base)
	p := &pinger{conn: listenUDPOn(t, a, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)), base: base}
	toB, toB6, toC := netip.AddrPortFrom(b.Addr(), 7000), netip.AddrPortFrom(b.Addr6(), 7000), netip.AddrPortFrom(c.Addr(), 7000)
	for _, to := range []netip.AddrPort{toB, toB6, toC} {
		Eventually(t, 5*time.Second, func() error { _, _, err := p.ping(to, time.Second); return err })
	}

	a.SetDelayTo(b, 40*time.Millisecond)
	for _, c := range []struct {
		name string
		to   netip.AddrPort
		want time.Duration
	}{{"a->b", toB, 40 * time.Millisecond}, {"a->b over IPv6", toB6, 40 * time.Millisecond}, {"a->c", toC, 0}} {
		there, back, _ := medianPing(t, p, c.to, 9)
		t.Logf("%s: median one-way there %v, back %v", c.name, there, back)
		near(t, c.name, there, c.want)
		near(t, c.name+" back", back, 0)
	}

	// A burst to b, still queued for 40 ms, and at once a ping to c.
	for range 50 {
		p.conn.WriteToUDPAddrPort([]byte("burst"), toB)
	}
	there, _, err := p.ping(toC, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "a->c behind a burst to b", there, 0)

	a.SetDelayTo(b, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the burst's echoes arrive, and are skipped as late
	there, _, _ = medianPing(t, p, toB, 9)
	near(t, "a->b at 10 ms", there, 10*time.Millisecond)
}
