package packetcache

import (
	"bytes"
	"testing"
)

func TestStoreGet(t *testing.T) {
	c := New(4)
	buf := make([]byte, MaxPacket)
	for seq := uint16(65530); seq != 4; seq++ {
		c.Store(seq, []byte{byte(seq), byte(seq >> 8)})
	}
	// The last four (0..3) are there, across the wrap; older ones are gone.
	for seq := uint16(0); seq < 4; seq++ {
		n := c.Get(seq, buf)
		if n != 2 || !bytes.Equal(buf[:n], []byte{byte(seq), byte(seq >> 8)}) {
			t.Fatalf("seq %d: got %v", seq, buf[:n])
		}
	}
	if n := c.Get(65535, buf); n != 0 {
		t.Fatalf("evicted packet returned (%d bytes)", n)
	}
	if n := c.Get(1000, buf); n != 0 {
		t.Fatalf("never stored packet returned (%d bytes)", n)
	}
}

func TestOversizedAndShortBuffer(t *testing.T) {
	c := New(8)
	c.Store(1, make([]byte, MaxPacket+1))
	if n := c.Get(1, make([]byte, MaxPacket)); n != 0 {
		t.Fatal("oversized packet was cached")
	}
	c.Store(2, make([]byte, 100))
	if n := c.Get(2, make([]byte, 10)); n != 0 {
		t.Fatal("copied into a too-short buffer")
	}
}

func TestSizeRoundsUp(t *testing.T) {
	if got := len(New(500).entries); got != 512 {
		t.Fatalf("size 500 -> %d entries, want 512", got)
	}
}

func BenchmarkStore(b *testing.B) {
	c := New(512)
	pkt := make([]byte, 1200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Store(uint16(i), pkt)
	}
}

func TestNewestTimestamp(t *testing.T) {
	c := New(8)
	if _, ok := c.NewestTimestamp(); ok {
		t.Fatal("empty cache has a newest packet")
	}
	rtpPkt := func(seq uint16, ts uint32) []byte {
		p := make([]byte, 20)
		p[0] = 0x80
		p[2], p[3] = byte(seq>>8), byte(seq)
		p[4], p[5], p[6], p[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		return p
	}
	c.Store(65535, rtpPkt(65535, 1000))
	c.Store(0, rtpPkt(0, 4000)) // across the wrap: newer
	c.Store(65534, rtpPkt(65534, 500))
	if ts, ok := c.NewestTimestamp(); !ok || ts != 4000 {
		t.Fatalf("newest timestamp %d, %v; want 4000 (of seq 0, stored before a late packet)", ts, ok)
	}
}

// TestReset: after a reset nothing is found, not even the newest packet, and storing works again.
func TestReset(t *testing.T) {
	c := New(8)
	pkt := make([]byte, 20)
	pkt[4] = 9 // timestamp
	c.Store(5, pkt)
	c.Reset()
	buf := make([]byte, 100)
	if n := c.Get(5, buf); n != 0 {
		t.Fatalf("got %d bytes after a reset", n)
	}
	if _, ok := c.NewestTimestamp(); ok {
		t.Fatal("a newest timestamp after a reset")
	}
	c.Store(6, pkt)
	if n := c.Get(6, buf); n != len(pkt) {
		t.Fatalf("got %d bytes, want %d", n, len(pkt))
	}
}
