// Package udpbatch is a UDP net.PacketConn that can hold the datagrams written during a batch
// and send them together with sendmmsg: a worker's fan-out writes one packet to many consumers
// in a row, and one system call for the lot costs far less than one per datagram.
//
// Both address families batch: on an IPv4 socket, IPv4 destinations; on an IPv6 socket
// (IPv6 only, or dual-stack), IPv6 destinations and IPv4 ones, as IPv4-mapped addresses.
package udpbatch

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDatagram is the largest datagram a batch holds; larger ones are sent at once.
const MaxDatagram = 1500

// Conn wraps a UDP socket. Outside a batch, writes go straight to the socket; between Begin
// and End they are copied into the batch and sent by End (or when the batch is full). It
// implements net.PacketConn and the netip.AddrPort read/write methods of pion's ICE UDP mux.
type Conn struct {
	udp          *net.UDPConn
	loopbackOnly bool
	v6           bool // an AF_INET6 socket: IPv6 (and, dual-stack, IPv4) destinations batch

	// mu guards depth, n, busy and the slots. It is never held across a system call: a batch
	// is sent by whoever closes or fills it, after marking it busy and unlocking, and while it
	// is busy every other write goes straight to the socket. So a fan-out's sendmmsg and a
	// DTLS or STUN write never wait for each other.
	mu    sync.Mutex
	depth int
	n     int
	busy  bool // slots[:n] are being sent, outside mu
	slots []slot
	sys   sender // the platform's batch send (sendmmsg on Linux); used by the busy holder only

	sent, batches, errors atomic.Uint64
}

type slot struct {
	buf  [MaxDatagram]byte
	n    int
	addr netip.AddrPort
}

// sender sends datagrams in slots; it returns how many it sent (at least 1 unless err is
// set: the first datagram was refused).
type sender interface {
	send(slots []slot) (int, error)
}

// New wraps udp with batches of up to size datagrams. With loopbackOnly, datagrams from and
// to non-loopback addresses are dropped.
func New(udp *net.UDPConn, size int, loopbackOnly bool) *Conn {
	if size < 1 {
		size = 1
	}
	c := &Conn{udp: udp, loopbackOnly: loopbackOnly, slots: make([]slot, size)}
	c.sys, c.v6 = newSender(udp, c.slots)
	return c
}

// Begin starts a batch (batches nest: the outermost End sends).
func (c *Conn) Begin() {
	c.mu.Lock()
	c.depth++
	c.mu.Unlock()
}

// End ends a batch and sends what it holds. If another write is sending the batch (it
// filled up), End leaves the rest to that write: nothing is held while the batch is busy.
func (c *Conn) End() {
	c.mu.Lock()
	c.depth--
	if c.depth > 0 || c.busy || c.n == 0 {
		c.mu.Unlock()
		return
	}
	c.flushLocked()
	c.mu.Unlock()
}

// flushLocked sends the batch; called with mu held, it returns with mu held, and holds it
// only to mark the batch busy and then empty.
func (c *Conn) flushLocked() {
	c.busy = true
	n := c.n
	c.mu.Unlock()
	c.flush(n)
	c.mu.Lock()
	c.n, c.busy = 0, false
}

// flush sends slots[:n]; the caller marked the batch busy, so it has the slots to itself
// and holds no lock. A datagram the kernel refuses is dropped and counted, as a lost UDP
// datagram would be.
func (c *Conn) flush(n int) {
	for off := 0; off < n; {
		k, err := c.sys.send(c.slots[off:n])
		if err != nil {
			c.errors.Add(1)
			k = 1
		} else {
			c.sent.Add(uint64(k))
		}
		off += k
	}
	c.batches.Add(1)
}

// WriteToAddrPort writes (or, in a batch, holds) one datagram. Outside a batch, or while the
// batch is being sent, it goes straight to the socket (a UDP socket takes concurrent writes).
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	addr := to.Addr().Unmap()
	if c.loopbackOnly && !addr.IsLoopback() {
		return len(b), nil
	}
	if len(b) > MaxDatagram || !c.batchable(addr) {
		return c.udp.WriteToUDPAddrPort(b, to)
	}
	c.mu.Lock()
	if c.depth == 0 || c.busy {
		c.mu.Unlock()
		return c.udp.WriteToUDPAddrPort(b, to)
	}
	if c.n == len(c.slots) { // full: send it, then hold b in the emptied batch
		c.flushLocked()
		if c.depth == 0 { // End came meanwhile and left the batch to us: it is over
			c.mu.Unlock()
			return c.udp.WriteToUDPAddrPort(b, to)
		}
	}
	s := &c.slots[c.n]
	s.n = copy(s.buf[:], b)
	s.addr = netip.AddrPortFrom(addr, to.Port())
	c.n++
	c.mu.Unlock()
	return len(b), nil
}

// batchable tells whether a datagram to addr (unmapped) can wait in the batch: IPv4 addresses
// on any socket, IPv6 ones on an IPv6 socket unless they need a zone (link-local), which the
// batch's sockaddr_in6 does not carry.
func (c *Conn) batchable(addr netip.Addr) bool {
	if addr.Is4() {
		return true
	}
	return c.v6 && addr.Zone() == ""
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// ReadFromAddrPort reads one datagram (skipping non-loopback senders with loopbackOnly).
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(b)
		if err != nil || !c.loopbackOnly || from.Addr().Unmap().IsLoopback() {
			return n, from, err
		}
	}
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Stats reports datagrams sent through batches, batches sent, and refused datagrams.
func (c *Conn) Stats() (sent, batches, errors uint64) {
	return c.sent.Load(), c.batches.Load(), c.errors.Load()
}

// Close closes the socket.
func (c *Conn) Close() error { return c.udp.Close() }

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *Conn) SetDeadline(t time.Time) error { return c.udp.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }
