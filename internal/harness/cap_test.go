package harness

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestCap blasts UDP at 8 Mbit/s from one host to another through a 2 Mbit/s cap on the sender's
// egress, then on the receiver's ingress, then on the ingress of a receiver made WithDelay (a TAP
// link), then with no cap, and measures what arrives.
func TestCap(t *testing.T) {
	const capRate = 2_000_000
	lab := New(t)
	a, b, c := lab.Host("a"), lab.Host("b"), lab.Host("c", WithDelay(0, 0))

	for i, tc := range []struct {
		name   string
		apply  func()
		to     *Host
		capped bool
	}{
		{"a egress", func() { a.Cap(capRate, 0) }, b, true},
		{"b ingress", func() { a.Uncap(); b.Cap(0, capRate) }, b, true},
		{"c ingress", func() { b.Uncap(); c.Cap(0, capRate) }, c, true},
		{"none", func() { c.Uncap(); a.Uncap() }, b, false}, // a has no cap left: Uncap is idempotent
	} {
		tc.apply()
		sent, got := blast(t, a, tc.to, uint16(7000+i), 8_000_000, time.Second)
		t.Logf("cap on %s: sent %.2f Mbit/s, received %.2f Mbit/s", tc.name, sent/1e6, got/1e6)
		if sent < 3*capRate {
			t.Fatalf("cap on %s: the blast reached only %.2f Mbit/s: the machine is too busy to test a cap", tc.name, sent/1e6)
		}
		switch {
		case tc.capped && (got > 1.1*capRate || got < 0.7*capRate):
			t.Errorf("cap on %s: received %.2f Mbit/s of UDP payload, want 1.4..2.2", tc.name, got/1e6)
		case !tc.capped && got < 0.8*sent:
			t.Errorf("no cap: received %.2f of %.2f Mbit/s sent", got/1e6, sent/1e6)
		}
	}
}

// blast sends 1000-byte datagrams from a to port of b at rate bits/s (of payload) for d, and
// returns the rate it sent and the rate b received, first to last arrival.
func blast(t *testing.T, a, b *Host, port uint16, rate float64, d time.Duration) (sent, got float64) {
	t.Helper()
	const size = 1000
	rx := listenUDP(t, b, port)
	tx := listenUDP(t, a, 0)
	var (
		wg          sync.WaitGroup
		bytes       int
		first, last time.Time
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			} else {
				bytes += n
				last = now
			}
		}
	}()

	to := netip.AddrPortFrom(b.Addr(), port)
	msg := make([]byte, size)
	start := time.Now()
	packets := 0
	for time.Since(start) < d {
		// Keep to the schedule, catching up after a stall.
		for due := int(time.Since(start).Seconds() * rate / 8 / size); packets < due; packets++ {
			tx.WriteToUDPAddrPort(msg, to)
		}
		time.Sleep(time.Millisecond)
	}
	sent = float64(packets*size*8) / time.Since(start).Seconds()
	time.Sleep(200 * time.Millisecond) // the cap's queue drains in 50 ms
	rx.SetReadDeadline(time.Now())
	wg.Wait()
	if last.IsZero() {
		t.Fatalf("blast to %v: nothing arrived", to)
	}
	return sent, float64(bytes*8) / last.Sub(first).Seconds()
}
