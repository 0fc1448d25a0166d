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

// gate is a sender that blocks in send until released: a sendmmsg that takes its time.
type gate struct {
	next    sender
	entered chan struct{}
	release chan struct{}
}

func (g *gate) send(slots []slot) (int, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.next.send(slots)
}

func gated(c *Conn) *gate {
	g := &gate{next: c.sys, entered: make(chan struct{}, 1), release: make(chan struct{})}
	c.sys = g
	return g
}

// within fails the test unless f returns within a second.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatalf("%s waited for a batch being sent", what)
	}
}

// TestWriteDoesNotWaitForEnd: a write (DTLS, STUN) goes out while a fan-out's End is in its
// sendmmsg; the batch leaves when the send completes.
func TestWriteDoesNotWaitForEnd(t *testing.T) {
	c := New(listen(t), 4, false)
	g := gated(c)
	dst := listen(t)
	c.Begin()
	_, _ = c.WriteTo([]byte("batched"), dst.LocalAddr())
	ended := make(chan struct{})
	go func() { c.End(); close(ended) }()
	<-g.entered
	within(t, "a single write", func() { _, _ = c.WriteTo([]byte("direct"), dst.LocalAddr()) })
	if got := read(t, dst); got != "direct" {
		t.Fatalf("got %q, want the direct write first", got)
	}
	close(g.release)
	<-ended
	if got := read(t, dst); got != "batched" {
		t.Fatalf("got %q", got)
	}
}

// TestWriteDoesNotWaitForFullBatch: while a write that filled the batch sends it, other writes
// (and the batch's End) go on without it; nothing is lost or sent twice.
func TestWriteDoesNotWaitForFullBatch(t *testing.T) {
	c := New(listen(t), 2, false)
	g := gated(c)
	dst := listen(t)
	c.Begin()
	_, _ = c.WriteTo([]byte("p0"), dst.LocalAddr())
	_, _ = c.WriteTo([]byte("p1"), dst.LocalAddr())
	filled := make(chan struct{})
	go func() { _, _ = c.WriteTo([]byte("p2"), dst.LocalAddr()); close(filled) }() // full: sends p0 p1
	<-g.entered
	within(t, "a write during the batch", func() { _, _ = c.WriteTo([]byte("x"), dst.LocalAddr()) })
	within(t, "End", c.End)
	if got := read(t, dst); got != "x" {
		t.Fatalf("got %q, want x first", got)
	}
	close(g.release)
	<-filled
	got := []string{read(t, dst), read(t, dst), read(t, dst)}
	if fmt.Sprint(got) != "[p0 p1 p2]" {
		t.Fatalf("got %v", got)
	}
	if sent, batches, _ := c.Stats(); sent != 2 || batches != 1 {
		t.Fatalf("stats %d %d", sent, batches)
	}
}

// TestConcurrentWritersDuringBatches drives batches and outside writers at once (run with
// -race): every datagram arrives exactly once.
func TestConcurrentWritersDuringBatches(t *testing.T) {
	c := New(listen(t), 3, false)
	dst := listen(t)
	_ = dst.SetReadBuffer(4 << 20)
	const rounds, per, outside = 200, 5, 300
	got := make(chan string, rounds*per+outside)
	go func() { // read as they come, so the socket's buffer does not overflow
		for {
			_ = dst.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 64)
			n, _, err := dst.ReadFrom(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < outside; i++ {
			_, _ = c.WriteTo([]byte(fmt.Sprint("o", i)), dst.LocalAddr())
		}
	}()
	for r := 0; r < rounds; r++ {
		c.Begin()
		for i := 0; i < per; i++ {
			_, _ = c.WriteTo([]byte(fmt.Sprint("b", r, ".", i)), dst.LocalAddr())
		}
		c.End()
	}
	<-done
	seen := map[string]bool{}
	for len(seen) < rounds*per+outside {
		s, ok := <-got
		if !ok {
			t.Fatalf("%d of %d datagrams arrived", len(seen), rounds*per+outside)
		}
		if seen[s] {
			t.Fatalf("%q twice", s)
		}
		seen[s] = true
	}
}

// TestBatchAllocatesNothing pins zero allocations per batched round.
func TestBatchAllocatesNothing(t *testing.T) {
	noAllocs(t, New(listen(t), 4, false), listen(t).LocalAddr().(*net.UDPAddr).AddrPort())
}

// noAllocs fails t unless a round of six datagrams to dst, more than one batch of c, allocates
// nothing.
func noAllocs(t *testing.T, c *Conn, dst netip.AddrPort) {
	t.Helper()
	pkt := make([]byte, 1200)
	allocs := testing.AllocsPerRun(100, func() {
		c.Begin()
		for i := 0; i < 6; i++ {
			_, _ = c.WriteToAddrPort(pkt, dst)
		}
		c.End()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}
