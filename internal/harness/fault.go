package harness

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// faultTable is the nftables table of every host: it filters eth0 at the netdev ingress and
// egress hooks, where a drop is silent for the sender (a drop in the IP output hook would fail
// its send with EPERM, which no real network does). Chain cut is empty while the link is up and
// holds one drop while it is cut; the sets hold the blocked ports. No rule names a network layer
// (udp and tcp matches compile to `meta l4proto`), so each holds for IPv4 and IPv6 alike.
const faultTable = `
table netdev harness {
	set tcpports { type inet_service; }
	set udpports { type inet_service; }
	chain cut { }
	chain noudp { }
	chain rx {
		type filter hook ingress device "eth0" priority 0; policy accept;
		jump cut
		jump noudp
		udp sport @udpports drop
		udp dport @udpports drop
		tcp sport @tcpports drop
		tcp dport @tcpports drop
	}
	chain tx {
		type filter hook egress device "eth0" priority 0; policy accept;
		jump cut
		jump noudp
		udp sport @udpports drop
		udp dport @udpports drop
		tcp sport @tcpports drop
		tcp dport @tcpports drop
	}
}
`

// Cut drops every packet in and out of the host's link (IPv4, IPv6, ARP and neighbour
// discovery), silently, until [Host.Heal]. Traffic
// inside the host (on lo) goes on; open sockets stay open and see nothing but silence.
func (h *Host) Cut() {
	h.lab.t.Helper()
	if err := h.nft("flush chain netdev harness cut\nadd rule netdev harness cut drop\n"); err != nil {
		h.lab.t.Fatal(err)
	}
}

// Heal undoes [Host.Cut]. Ports blocked with [Host.BlockPort] stay blocked.
func (h *Host) Heal() {
	h.lab.t.Helper()
	if err := h.nft("flush chain netdev harness cut\n"); err != nil {
		h.lab.t.Fatal(err)
	}
}

// BlockPort drops, silently and in both directions, every packet of protocol proto ("tcp" or
// "udp") on the host's link whose source or destination port is port: the host can neither serve
// on that port nor reach that port elsewhere. The returned func unblocks it (once; later calls do
// nothing). Blocking a blocked port again changes nothing, and either heal unblocks it.
func (h *Host) BlockPort(proto string, port uint16) (heal func()) {
	h.lab.t.Helper()
	if proto != "tcp" && proto != "udp" {
		h.lab.t.Fatalf("harness: BlockPort(%q): want tcp or udp", proto)
	}
	set := fmt.Sprintf("netdev harness %sports { %d }", proto, port)
	if err := h.nft("add element " + set + "\n"); err != nil {
		h.lab.t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.lab.t.Helper()
			if err := h.nft("delete element " + set + "\n"); err != nil {
				h.lab.t.Fatal(err)
			}
		})
	}
}

// BlockUDP drops, silently and in both directions, every UDP packet on the host's link, as a
// network that lets only TCP through (a corporate proxy, a hotel): the host's TCP works, its
// UDP reaches nobody and nobody's reaches it. The returned func lets UDP through again (once;
// later calls do nothing). Ports blocked with [Host.BlockPort] stay blocked.
func (h *Host) BlockUDP() (heal func()) {
	h.lab.t.Helper()
	if err := h.nft("flush chain netdev harness noudp\nadd rule netdev harness noudp meta l4proto udp drop\n"); err != nil {
		h.lab.t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.lab.t.Helper()
			if err := h.nft("flush chain netdev harness noudp\n"); err != nil {
				h.lab.t.Fatal(err)
			}
		})
	}
}

// Cap limits the host's bandwidth to egress bits/s for what it sends and ingress bits/s for what
// it receives, with a tbf qdisc on the sending side of each direction (eth0 for egress, the
// switch-side port for ingress); 0 removes the cap of that direction. The bucket holds 20 ms of
// the rate (at least four full frames), and the queue behind it 50 ms; more is dropped, as by a
// router's full queue.
func (h *Host) Cap(egress, ingress int64) {
	h.lab.t.Helper()
	if egress < 0 || ingress < 0 {
		h.lab.t.Fatalf("harness: Cap(%d, %d): negative rate", egress, ingress)
	}
	for _, c := range []struct {
		ns, dev string
		rate    int64
	}{{h.ns, "eth0", egress}, {h.lab.sw, h.port, ingress}} {
		if err := setTBF(c.ns, c.dev, c.rate); err != nil {
			h.lab.t.Fatal(err)
		}
	}
}

// Uncap removes both caps of [Host.Cap].
func (h *Host) Uncap() { h.Cap(0, 0) }

// setTBF puts a tbf of rate bits/s on dev in namespace ns, or removes the root qdisc for 0.
func setTBF(ns, dev string, rate int64) error {
	if rate == 0 {
		err := run("", "tc", "-n", ns, "qdisc", "del", "dev", dev, "root")
		if err != nil && (strings.Contains(err.Error(), "handle of zero") || strings.Contains(err.Error(), "No such file")) {
			return nil // there was no cap: the device has its default qdisc
		}
		return err
	}
	burst := max(rate/8/50, 4*1514)
	return run("", "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", fmt.Sprintf("%dbit", rate), "burst", fmt.Sprint(burst), "latency", "50ms")
}

// SetDelay sets the one-way delays of the host's link: egress for the frames it sends, ingress
// for the frames it receives. It takes effect for frames from now on, without reordering: after
// a decrease, frames wait behind those already queued. Only hosts made [WithDelay] have a delay.
func (h *Host) SetDelay(egress, ingress time.Duration) {
	h.lab.t.Helper()
	if h.delay == nil {
		h.lab.t.Fatalf("harness: SetDelay on host %s, which was not made WithDelay", h.name)
	}
	if egress < 0 || ingress < 0 {
		h.lab.t.Fatalf("harness: SetDelay(%v, %v): negative delay", egress, ingress)
	}
	h.delay.set(egress, ingress)
}
