// Package packetcache keeps the most recent RTP packets of one stream, indexed by sequence
// number, so that NACKs from any number of consumers are answered from one copy per producer.
package packetcache

import "sync"

// MaxPacket is the largest packet the cache stores; longer packets are not cached.
const MaxPacket = 1500

type entry struct {
	seq   uint16
	n     uint16
	valid bool
	buf   [MaxPacket]byte
}

// Cache is a ring of the last Size packets. It is safe for concurrent use: one writer (the
// producer's read loop) and many readers (NACK handlers).
type Cache struct {
	mu      sync.Mutex
	entries []entry
	mask    uint16
	newest  uint16 // the highest sequence number stored (RFC 1982 order)
	stored  bool
}

// New returns a cache holding size packets; size is rounded up to a power of two (at most 32768).
func New(size int) *Cache {
	n := 1
	for n < size && n < 1<<15 {
		n <<= 1
	}
	return &Cache{entries: make([]entry, n), mask: uint16(n - 1)}
}

// Store copies pkt, the packet with sequence number seq, into the cache.
func (c *Cache) Store(seq uint16, pkt []byte) {
	if len(pkt) > MaxPacket {
		return
	}
	c.mu.Lock()
	e := &c.entries[seq&c.mask]
	e.seq = seq
	e.n = uint16(copy(e.buf[:], pkt))
	e.valid = true
	if !c.stored || int16(seq-c.newest) > 0 {
		c.newest, c.stored = seq, true
	}
	c.mu.Unlock()
}

// Get copies the packet with sequence number seq into dst and returns its length, or 0 when the
// packet is not (or no longer) in the cache or dst is too short.
func (c *Cache) Get(seq uint16, dst []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.entries[seq&c.mask]
	if !e.valid || e.seq != seq || int(e.n) > len(dst) {
		return 0
	}
	return copy(dst, e.buf[:e.n])
}

// NewestTimestamp is the RTP timestamp of the newest packet stored (false: none, or not RTP),
// so that a packet's age is the RTP time it lags behind.
func (c *Cache) NewestTimestamp() (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.entries[c.newest&c.mask]
	if !c.stored || !e.valid || e.seq != c.newest || e.n < 12 {
		return 0, false
	}
	return uint32(e.buf[4])<<24 | uint32(e.buf[5])<<16 | uint32(e.buf[6])<<8 | uint32(e.buf[7]), true
}

// Reset forgets every packet (the stream restarted with other sequence numbers).
func (c *Cache) Reset() {
	c.mu.Lock()
	for i := range c.entries {
		c.entries[i].valid = false
	}
	c.stored = false
	c.mu.Unlock()
}
