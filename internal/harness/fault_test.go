package harness

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// lost is how long a check waits before it calls a packet lost: on one machine an answer takes
// well under a millisecond, so this is generous even on a loaded one.
const lost = 300 * time.Millisecond

// family is one address family of the lab's hosts.
type family struct {
	name string
	addr func(*Host) netip.Addr
}

// families are both: every fault must hold for IPv4 and IPv6 alike.
var families = []family{{"IPv4", (*Host).Addr}, {"IPv6", (*Host).Addr6}}

// probes checks UDP and TCP from one host to another over both families.
type probes struct {
	from, to *Host
	pingers  []*pinger // per family, a socket on from's address of that family
}

func newProbes(t *testing.T, from, to *Host, base time.Time) *probes {
	p := &probes{from: from, to: to}
	for _, f := range families {
		p.pingers = append(p.pingers, &pinger{conn: listenUDPOn(t, from, netip.AddrPortFrom(f.addr(from), 0)), base: base})
	}
	return p
}

// udp pings port of to over family i.
func (p *probes) udp(i int, port uint16) error {
	_, _, err := p.pingers[i].ping(netip.AddrPortFrom(families[i].addr(p.to), port), lost)
	return err
}

// tcp connects to port of to over family i.
func (p *probes) tcp(i int, port uint16) error {
	return dialTCP(p.from, netip.AddrPortFrom(families[i].addr(p.to), port), lost)
}

// reach checks that every given UDP and TCP port of to answers over both families.
func (p *probes) reach(udp, tcp []uint16) error {
	for i := range families {
		for _, port := range udp {
			if err := p.udp(i, port); err != nil {
				return err
			}
		}
		for _, port := range tcp {
			if err := p.tcp(i, port); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestCutAndBlockPort checks, over IPv4 and IPv6, that a cut link passes nothing and a healed
// one everything, and that a blocked port blocks that port only.
func TestCutAndBlockPort(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	echoUDP(t, b, 7001, base)
	serveTCP(t, b, 8000)
	serveTCP(t, b, 8001)
	p := newProbes(t, a, b, base)
	all := func() error { return p.reach([]uint16{7000, 7001}, []uint16{8000, 8001}) }
	Eventually(t, 5*time.Second, all)

	a.Cut()
	for i, f := range families {
		for _, port := range []uint16{7000, 7001} {
			if err := blocked(p.udp(i, port)); err != nil {
				t.Fatalf("%s udp %d while cut: %v", f.name, port, err)
			}
		}
		if err := blocked(p.tcp(i, 8000)); err != nil {
			t.Fatalf("%s tcp 8000 while cut: %v", f.name, err)
		}
	}
	echoUDP(t, a, 7100, base) // the host's own lo still works
	self := newProbes(t, a, a, base)
	if err := self.reach([]uint16{7100}, nil); err != nil {
		t.Fatalf("a to itself while cut: %v", err)
	}
	a.Heal()
	Eventually(t, 2*time.Second, all)

	heal := b.BlockPort("udp", 7000)
	for i, f := range families {
		if err := blocked(p.udp(i, 7000)); err != nil {
			t.Fatalf("%s: blocked udp 7000: %v", f.name, err)
		}
	}
	if err := p.reach([]uint16{7001}, []uint16{8000, 8001}); err != nil {
		t.Fatalf("udp 7000 blocked: %v", err)
	}
	heal()
	heal() // a second call does nothing
	Eventually(t, 2*time.Second, all)

	heal = b.BlockPort("tcp", 8000)
	for i, f := range families {
		if err := blocked(p.tcp(i, 8000)); err != nil {
			t.Fatalf("%s: blocked tcp 8000: %v", f.name, err)
		}
	}
	if err := p.reach([]uint16{7000, 7001}, []uint16{8001}); err != nil {
		t.Fatalf("tcp 8000 blocked: %v", err)
	}
	heal()
	Eventually(t, 2*time.Second, all)
}

// TestBlockUDP checks that a host whose UDP is blocked reaches no UDP port, in either direction
// and over either family, while its TCP works, and that the heal lets UDP through again.
func TestBlockUDP(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	base := time.Now()
	echoUDP(t, b, 7000, base)
	echoUDP(t, a, 7100, base)
	serveTCP(t, b, 8000)
	ab, ba := newProbes(t, a, b, base), newProbes(t, b, a, base)
	udp := func() error {
		if err := ab.reach([]uint16{7000}, nil); err != nil {
			return err
		}
		return ba.reach([]uint16{7100}, nil)
	}
	tcp := func() error { return ab.reach(nil, []uint16{8000}) }
	Eventually(t, 5*time.Second, func() error {
		if err := udp(); err != nil {
			return err
		}
		return tcp()
	})

	heal := a.BlockUDP()
	for i, f := range families {
		if err := blocked(ab.udp(i, 7000)); err != nil {
			t.Fatalf("%s udp from a while a's UDP is blocked: %v", f.name, err)
		}
		if err := blocked(ba.udp(i, 7100)); err != nil {
			t.Fatalf("%s udp to a while a's UDP is blocked: %v", f.name, err)
		}
	}
	if err := tcp(); err != nil {
		t.Fatalf("tcp while a's UDP is blocked: %v", err)
	}
	heal()
	heal() // a second call does nothing
	Eventually(t, 2*time.Second, udp)
}

// TestAddresses checks each host's addresses, a veth host's and a delayed (TAP) host's: IPv4 as
// before, and an IPv6 one usable at once (not tentative: no duplicate address detection in the
// way), over which the two reach each other.
func TestAddresses(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b", WithDelay(0, 0))
	base := time.Now()
	echoUDP(t, b, 7000, base)
	serveTCP(t, b, 8000)
	p := newProbes(t, a, b, base)
	Eventually(t, 5*time.Second, func() error { return p.reach([]uint16{7000}, []uint16{8000}) })
	for i, h := range []*Host{a, b} {
		if want := netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}); h.Addr() != want {
			t.Errorf("%s: Addr %v, want %v", h.Name(), h.Addr(), want)
		}
		if want := netip.MustParseAddr("fd00:cafe::" + string(rune('1'+i))); h.Addr6() != want {
			t.Errorf("%s: Addr6 %v, want %v", h.Name(), h.Addr6(), want)
		}
		out, err := h.Run(t.Context(), "ip", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{h.Addr().String() + "/15", h.Addr6().String() + "/64"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: eth0 lacks %s:\n%s", h.Name(), want, out)
			}
		}
		if strings.Contains(string(out), "tentative") {
			t.Errorf("%s: an address is tentative (DAD):\n%s", h.Name(), out)
		}
	}
}
