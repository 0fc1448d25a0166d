package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// needIPv6 skips a test loudly when the machine has no IPv6 loopback (::1), and fails it under
// CI=true: a green CI run means the IPv6 batch path ran.
func needIPv6(t testing.TB) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err == nil {
		c.Close()
		return
	}
	msg := fmt.Sprintf("NO IPv6: cannot bind [::1]: %v", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true makes this a failure)")
	}
	t.Skip("SKIPPED: " + msg)
}

func listenOn(t testing.TB, network, host string) *net.UDPConn {
	t.Helper()
	var ip net.IP
	if host != "" {
		ip = net.ParseIP(host)
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dstOn is the address of a receiver's socket as the fan-out gives it: a netip.AddrPort on
// host (the receiver may be bound to an unspecified address).
func dstOn(c *net.UDPConn, host string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(host), uint16(c.LocalAddr().(*net.UDPAddr).Port))
}

// TestBatchIPv6: an IPv6 socket batches datagrams to IPv6 destinations with sendmmsg: one
// batch of sockaddr_in6, every datagram at its receiver.
func TestBatchIPv6(t *testing.T) {
	needIPv6(t)
	c := New(listenOn(t, "udp6", "::1"), 8, false)
	if !c.v6 {
		t.Fatal("an udp6 socket is not seen as IPv6")
	}
	dst := []*net.UDPConn{listenOn(t, "udp6", "::1"), listenOn(t, "udp6", "::1")}
	c.Begin()
	for i := 0; i < 6; i++ {
		if _, err := c.WriteToAddrPort([]byte(fmt.Sprint("p", i)), dstOn(dst[i%2], "::1")); err != nil {
			t.Fatal(err)
		}
	}
	if sent, _, _ := c.Stats(); sent != 0 {
		t.Fatalf("%d datagrams sent before End: the IPv6 datagrams were not batched", sent)
	}
	c.End()
	for i := 0; i < 6; i++ {
		if got, want := read(t, dst[i%2]), fmt.Sprint("p", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if sent, batches, errs := c.Stats(); sent != 6 || batches != 1 || errs != 0 {
		t.Fatalf("stats: %d sent, %d batches, %d errors; want 6, 1, 0", sent, batches, errs)
	}
}

// TestBatchDualStack: a worker's dual-stack socket ("udp" on the unspecified address) sends a
// batch that mixes IPv4 and IPv6 destinations in one sendmmsg (IPv4 as ::ffff:a.b.c.d), and
// the IPv4 receiver sees the datagram come from an IPv4 address.
func TestBatchDualStack(t *testing.T) {
	needIPv6(t)
	udp := listenOn(t, "udp", "")
	c := New(udp, 8, false)
	if !c.v6 {
		t.Skip("SKIPPED: Go made an IPv4 socket for \"udp\" on the unspecified address (no dual stack here)")
	}
	v4, v6 := listenOn(t, "udp4", "127.0.0.1"), listenOn(t, "udp6", "::1")
	c.Begin()
	_, _ = c.WriteToAddrPort([]byte("to4"), dstOn(v4, "127.0.0.1"))
	_, _ = c.WriteToAddrPort([]byte("to6"), dstOn(v6, "::1"))
	// An IPv4-mapped destination (as a dual-stack read reports it) is the same IPv4 receiver.
	_, _ = c.WriteToAddrPort([]byte("mapped"), dstOn(v4, "::ffff:127.0.0.1"))
	c.End()
	if got := read(t, v4); got != "to4" {
		t.Fatalf("IPv4 receiver got %q", got)
	}
	if got := read(t, v4); got != "mapped" {
		t.Fatalf("IPv4 receiver got %q", got)
	}
	if got := read(t, v6); got != "to6" {
		t.Fatalf("IPv6 receiver got %q", got)
	}
	if sent, batches, errs := c.Stats(); sent != 3 || batches != 1 || errs != 0 {
		t.Fatalf("stats: %d sent, %d batches, %d errors; want 3, 1, 0", sent, batches, errs)
	}
	// Replies reach the dual-stack socket from both families.
	port := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	for _, r := range []struct {
		from *net.UDPConn
		to   string
	}{{v4, "127.0.0.1"}, {v6, "::1"}} {
		if _, err := r.from.WriteToUDPAddrPort([]byte("back"), netip.AddrPortFrom(netip.MustParseAddr(r.to), port)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_ = udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromAddrPort(buf)
		if err != nil || string(buf[:n]) != "back" || from.Addr().Unmap().String() != r.to {
			t.Fatalf("read %q from %v (%v), want back from %s", buf[:n], from, err, r.to)
		}
	}
}

// TestIPv6LoopbackOnly: with loopbackOnly, an IPv6 socket sends to ::1 and drops datagrams to
// other IPv6 addresses.
func TestIPv6LoopbackOnly(t *testing.T) {
	needIPv6(t)
	c := New(listenOn(t, "udp6", "::1"), 8, true)
	dst := listenOn(t, "udp6", "::1")
	c.Begin()
	_, _ = c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("[2001:db8::1]:9"))
	_, _ = c.WriteToAddrPort([]byte("loop"), dstOn(dst, "::1"))
	c.End()
	if got := read(t, dst); got != "loop" {
		t.Fatalf("got %q", got)
	}
	if sent, _, _ := c.Stats(); sent != 1 {
		t.Fatalf("%d datagrams sent, want 1 (the non-loopback one dropped)", sent)
	}
}

// TestBatchIPv6AllocatesNothing pins zero allocations per batched round on an IPv6 socket.
func TestBatchIPv6AllocatesNothing(t *testing.T) {
	needIPv6(t)
	noAllocs(t, New(listenOn(t, "udp6", "::1"), 4, false), dstOn(listenOn(t, "udp6", "::1"), "::1"))
}
