// Package udpbatch is a UDP net.PacketConn that can hold the datagrams written during a batch
// and send them together with sendmmsg: a worker's fan-out writes one packet to many consumers
// in a row, and one system call for the lot costs far less than one per datagram.
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

	mu    sync.Mutex
	depth int
	n     int
	slots []slot
	sys   sender // the platform's batch send (sendmmsg on Linux)

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
	c.sys = newSender(udp, c.slots)
	return c
}

// Begin starts a batch (batches nest: the outermost End sends).
func (c *Conn) Begin() {
	c.mu.Lock()
	c.depth++
	c.mu.Unlock()
}

// End ends a batch and sends what it holds.
func (c *Conn) End() {
	c.mu.Lock()
	c.depth--
	if c.depth == 0 {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// flushLocked sends the held datagrams. A datagram the kernel refuses is dropped and counted,
// as a lost UDP datagram would be.
func (c *Conn) flushLocked() {
	for off := 0; off < c.n; {
		k, err := c.sys.send(c.slots[off:c.n])
		if err != nil {
			c.errors.Add(1)
			k = 1
		} else {
			c.sent.Add(uint64(k))
		}
		off += k
	}
	if c.n > 0 {
		c.batches.Add(1)
	}
	c.n = 0
}

// WriteToAddrPort writes (or, in a batch, holds) one datagram.
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	addr := to.Addr().Unmap()
	if c.loopbackOnly && !addr.IsLoopback() {
		return len(b), nil
	}
	c.mu.Lock()
	if c.depth == 0 || len(b) > MaxDatagram || !addr.Is4() {
		c.mu.Unlock()
		return c.udp.WriteToUDPAddrPort(b, to)
	}
	if c.n == len(c.slots) {
		c.flushLocked()
	}
	s := &c.slots[c.n]
	s.n = copy(s.buf[:], b)
	s.addr = netip.AddrPortFrom(addr, to.Port())
	c.n++
	c.mu.Unlock()
	return len(b), nil
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
