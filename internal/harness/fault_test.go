package harness

import (
	"net/netip"
	"testing"
	"time"
)

// lost is how long a check waits before it calls a packet lost: on one machine an answer takes
// well under a millisecond, so this is generous even on a loaded one.
const lost = 300 * time.Millisecond

// TestCutAndBlockPort checks that a cut link passes nothing and a healed one everything, and that
// a blocked port blocks that port only.
func TestCutAndBlockPort(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	echoUDP(t, b, 7001, base)
	serveTCP(t, b, 8000)
	serveTCP(t, b, 8001)
	p := &pinger{conn: listenUDP(t, a, 0), base: base}
	udp := func(port uint16) error {
		_, _, err := p.ping(netip.AddrPortFrom(b.Addr(), port), lost)
		return err
	}
	tcp := func(port uint16) error { return dialTCP(a, netip.AddrPortFrom(b.Addr(), port), lost) }
	all := func() error {
		for _, f := range []func() error{
			func() error { return udp(7000) }, func() error { return udp(7001) },
			func() error { return tcp(8000) }, func() error { return tcp(8001) },
		} {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
	Eventually(t, 5*time.Second, all)

	a.Cut()
	for _, port := range []uint16{7000, 7001} {
		if err := blocked(udp(port)); err != nil {
			t.Fatalf("udp %d while cut: %v", port, err)
		}
	}
	if err := blocked(tcp(8000)); err != nil {
		t.Fatalf("tcp 8000 while cut: %v", err)
	}
	echoUDP(t, a, 7100, base) // the host's own lo still works
	if _, _, err := p.ping(netip.AddrPortFrom(a.Addr(), 7100), lost); err != nil {
		t.Fatalf("a to itself while cut: %v", err)
	}
	a.Heal()
	Eventually(t, 2*time.Second, all)

	heal := b.BlockPort("udp", 7000)
	if err := blocked(udp(7000)); err != nil {
		t.Fatalf("blocked udp 7000: %v", err)
	}
	if err := all7001(udp, tcp); err != nil {
		t.Fatalf("udp 7000 blocked: %v", err)
	}
	heal()
	heal() // a second call does nothing
	Eventually(t, 2*time.Second, all)

	heal = b.BlockPort("tcp", 8000)
	if err := blocked(tcp(8000)); err != nil {
		t.Fatalf("blocked tcp 8000: %v", err)
	}
	if err := all7001(udp, tcp); err != nil {
		t.Fatalf("tcp 8000 blocked: %v", err)
	}
	if err := udp(7000); err != nil {
		t.Fatalf("tcp 8000 blocked: %v", err)
	}
	heal()
	Eventually(t, 2*time.Second, all)
}

// all7001 checks the ports no test blocks.
func all7001(udp, tcp func(uint16) error) error {
	if err := udp(7001); err != nil {
		return err
	}
	return tcp(8001)
}

// TestBlockUDP checks that a host whose UDP is blocked reaches no UDP port, in either direction,
// while its TCP works, and that the heal lets UDP through again.
func TestBlockUDP(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	echoUDP(t, a, 7100, base)
	serveTCP(t, b, 8000)
	toB := &pinger{conn: listenUDP(t, a, 0), base: base}
	toA := &pinger{conn: listenUDP(t, b, 0), base: base}
	udpAB := func() error { _, _, err := toB.ping(netip.AddrPortFrom(b.Addr(), 7000), lost); return err }
	udpBA := func() error { _, _, err := toA.ping(netip.AddrPortFrom(a.Addr(), 7100), lost); return err }
	tcp := func() error { return dialTCP(a, netip.AddrPortFrom(b.Addr(), 8000), lost) }
	Eventually(t, 5*time.Second, func() error {
		for _, f := range []func() error{udpAB, udpBA, tcp} {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})

	heal := a.BlockUDP()
	if err := blocked(udpAB()); err != nil {
		t.Fatalf("udp from a while a's UDP is blocked: %v", err)
	}
	if err := blocked(udpBA()); err != nil {
		t.Fatalf("udp to a while a's UDP is blocked: %v", err)
	}
	if err := tcp(); err != nil {
		t.Fatalf("tcp while a's UDP is blocked: %v", err)
	}
	heal()
	heal() // a second call does nothing
	Eventually(t, 2*time.Second, func() error {
		if err := udpAB(); err != nil {
			return err
		}
		return udpBA()
	})
}
