package harness

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// routes are the per-destination delays of the egress direction of a delay bridge: a frame to
// an address with a route waits that route's delay, in the route's own queue, so a frame to a
// near host never waits behind frames to a far one (one FIFO per destination, as separate
// network paths have). Frames to other addresses, and frames that are not IP (ARP), take the
// direction's own delay. This is how a lab puts hosts in regions: one-way delays between the
// regions, none inside one.
type routes struct {
	l    *delayLink
	to   *os.File
	free chan []byte

	mu     sync.Mutex                            // serializes set
	byAddr atomic.Pointer[map[netip.Addr]*route] // copy on write: the reader looks up without a lock
}

// route is one destination's delay and queue; its writer is the bridge's write.
type route struct {
	delay atomic.Int64 // ns
	queue chan frame
}

// start makes the routes write to to, recycling buffers to free, with l's goroutines.
func (rt *routes) start(l *delayLink, to *os.File, free chan []byte) {
	rt.l, rt.to, rt.free = l, to, free
}

// set gives frames to addrs (the addresses of one host) delay d, making their route (a queue
// and its writer) the first time.
func (rt *routes) set(addrs []netip.Addr, d time.Duration) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	m := map[netip.Addr]*route{}
	if old := rt.byAddr.Load(); old != nil {
		for a, r := range *old {
			m[a] = r
		}
	}
	r := m[addrs[0]]
	if r == nil {
		r = &route{queue: make(chan frame, delayQueue)}
		rt.l.wg.Add(1)
		go rt.l.write(rt.to, r.queue, rt.free)
	}
	r.delay.Store(int64(d))
	for _, a := range addrs {
		m[a] = r
	}
	rt.byAddr.Store(&m)
}

// lookup returns the route of frame f's destination address, or nil (also for nil routes).
func (rt *routes) lookup(f []byte) *route {
	if rt == nil {
		return nil
	}
	m := rt.byAddr.Load()
	if m == nil {
		return nil
	}
	dst, ok := frameDst(f)
	if !ok {
		return nil
	}
	return (*m)[dst]
}

// frameDst is the destination address of an Ethernet frame holding an IPv4 or IPv6 packet.
func frameDst(f []byte) (netip.Addr, bool) {
	const eth = 14
	if len(f) < eth {
		return netip.Addr{}, false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800: // IPv4: destination at offset 16 of the header
		if len(f) >= eth+20 {
			return netip.AddrFrom4([4]byte(f[eth+16 : eth+20])), true
		}
	case 0x86dd: // IPv6: destination at offset 24
		if len(f) >= eth+40 {
			return netip.AddrFrom16([16]byte(f[eth+24 : eth+40])), true
		}
	}
	return netip.Addr{}, false
}

// SetDelayTo sets the one-way delay of the frames the host sends to dst (to either of its
// addresses) to d, instead of the host's egress delay; d may be zero. Frames to dst queue on
// their own, so a far destination never holds up a near one; changing d keeps their order, as
// [Host.SetDelay] does. Only hosts made [WithDelay] have delays. With it a lab models regions:
// give each host made WithDelay(0, 0) the delay to each host of another region.
func (h *Host) SetDelayTo(dst *Host, d time.Duration) {
	h.lab.t.Helper()
	if h.delay == nil {
		h.lab.t.Fatalf("harness: SetDelayTo on host %s, which was not made WithDelay", h.name)
	}
	if d < 0 {
		h.lab.t.Fatalf("harness: SetDelayTo(%s, %v): negative delay", dst.name, d)
	}
	h.delay.routes.set([]netip.Addr{dst.addr, dst.addr6}, d)
}
