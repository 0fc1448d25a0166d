package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2000)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestBatchHoldsUntilEnd(t *testing.T) {
	c := New(listen(t), 4, false)
	dst := []*net.UDPConn{listen(t), listen(t)}
	c.Begin()
	for i := 0; i < 10; i++ { // more than one batch: the full batch is sent on the way
		if _, err := c.WriteTo([]byte(fmt.Sprint("p", i)), dst[i%2].LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	c.End()
	for i := 0; i < 10; i++ {
		if got, want := read(t, dst[i%2]), fmt.Sprint("p", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if sent, batches, errs := c.Stats(); sent != 10 || batches != 3 || errs != 0 {
		t.Fatalf("stats %d %d %d", sent, batches, errs)
	}
	// Outside a batch a write goes out at once.
	if _, err := c.WriteTo([]byte("now"), dst[0].LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dst[0]); got != "now" {
		t.Fatalf("got %q", got)
	}
}

func TestBatchCopiesTheBuffer(t *testing.T) {
	c := New(listen(t), 8, false)
	dst := listen(t)
	buf := []byte("first")
	c.Begin()
	_, _ = c.WriteTo(buf, dst.LocalAddr())
	copy(buf, "xxxxx") // the caller reuses its buffer, as pion's SRTP writer does
	c.End()
	if got := read(t, dst); got != "first" {
		t.Fatalf("got %q", got)
	}
}

func TestLoopbackOnly(t *testing.T) {
	c := New(listen(t), 8, true)
	if n, err := c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("192.0.2.1:9")); err != nil || n != 1 {
		t.Fatalf("write to a non-loopback address: %d %v", n, err)
	}
	if sent, _, _ := c.Stats(); sent != 0 {
		t.Fatal("non-loopback datagram sent")
	}
}

// BenchmarkBatch100 is one fan-out round of 100 datagrams, batched.
func BenchmarkBatch100(b *testing.B) {
	c := New(listen(b), 64, false)
	var dst []net.Addr
	for i := 0; i < 100; i++ {
		r := listen(b)
		go func() {
			buf := make([]byte, 2000)
			for {
				if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
		dst = append(dst, r.LocalAddr())
	}
	pkt := make([]byte, 1200)
	b.ReportAllocs()
	for b.Loop() {
		c.Begin()
		for _, d := range dst {
			_, _ = c.WriteTo(pkt, d)
		}
		c.End()
	}
}
