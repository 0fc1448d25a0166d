package signal

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// TestJoinLimiterBuckets: one bucket per IPv4 address and per IPv6 /64, refilled at the rate;
// a refusal tells when the next join passes.
func TestJoinLimiterBuckets(t *testing.T) {
	j := newJoinLimiter(JoinLimits{Rate: 2, Burst: 3})
	now := time.Unix(1e9, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := 0; i < 3; i++ {
		if ok, _ := j.allow(a, now); !ok {
			t.Fatalf("join %d of a refused within the burst", i)
		}
	}
	ok, wait := j.allow(a, now)
	if ok || wait < 400*time.Millisecond || wait > 500*time.Millisecond {
		t.Fatalf("past the burst: %v, retry in %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := j.allow(b, now); !ok {
		t.Fatal("another address was refused")
	}
	if ok, _ := j.allow(a, now.Add(500*time.Millisecond)); !ok {
		t.Fatal("not refilled at 2/s")
	}
	v6a, v6b, v6c := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9"), netip.MustParseAddr("2001:db8:1:3::1")
	for i := 0; i < 3; i++ {
		j.allow(v6a, now)
	}
	if ok, _ := j.allow(v6b, now); ok {
		t.Fatal("two addresses of one IPv6 /64 have separate buckets")
	}
	if ok, _ := j.allow(v6c, now); !ok {
		t.Fatal("another /64 was refused")
	}
	if ok, _ := newJoinLimiter(JoinLimits{Rate: -1}).allow(a, now); !ok {
		t.Fatal("a negative rate limits")
	}
}

// TestJoinLimiterBounded: the limiter remembers at most maxTrackedIPs addresses; past that, new
// addresses share one bucket, and addresses idle long enough to be full again are forgotten.
func TestJoinLimiterBounded(t *testing.T) {
	j := newJoinLimiter(JoinLimits{Rate: 10, Burst: 20})
	now := time.Unix(1e9, 0)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := 0; i < maxTrackedIPs; i++ {
		if ok, _ := j.allow(addr(i), now); !ok {
			t.Fatalf("address %d refused its first join", i)
		}
	}
	refused := 0
	for i := maxTrackedIPs; i < maxTrackedIPs+100; i++ { // new addresses: the overflow bucket
		if ok, _ := j.allow(addr(i), now); !ok {
			refused++
		}
	}
	if n := j.tracked(); n != maxTrackedIPs || refused != 80 {
		t.Fatalf("%d addresses tracked, %d of 100 overflow joins refused; want %d, 80", n, refused, maxTrackedIPs)
	}
	if j.allow(addr(maxTrackedIPs+150), now.Add(sweepEvery/2)); j.lastSweep != now {
		t.Fatal("a full limiter swept again within sweepEvery")
	}
	later := now.Add(j.idle + time.Second)
	if ok, _ := j.allow(addr(maxTrackedIPs+200), later); !ok {
		t.Fatal("a new address refused once the others were idle")
	}
	if n := j.tracked(); n != 1 {
		t.Fatalf("%d addresses tracked after they all idled, want 1", n)
	}
}

// TestClientIP: headers are believed only from a trusted proxy; behind proxies the client is
// the nearest untrusted hop of X-Forwarded-For.
func TestClientIP(t *testing.T) {
	o := JoinLimits{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	for _, c := range []struct {
		remote, xff, real, want string
	}{
		{"198.51.100.1:4000", "", "", "198.51.100.1"},
		{"198.51.100.1:4000", "203.0.113.5", "203.0.113.6", "198.51.100.1"}, // untrusted peer: headers ignored
		{"10.1.1.1:4000", "", "", "10.1.1.1"},
		{"10.1.1.1:4000", "203.0.113.5", "", "203.0.113.5"},
		{"10.1.1.1:4000", "1.2.3.4, 203.0.113.5, 10.2.2.2", "", "203.0.113.5"}, // a forged first hop is skipped
		{"10.1.1.1:4000", "10.3.3.3, 10.2.2.2", "", "10.3.3.3"},
		{"10.1.1.1:4000", "", "203.0.113.6", "203.0.113.6"},
		{"10.1.1.1:4000", "garbage", "", "10.1.1.1"},
		{"[::1]:4000", "2001:db8::7", "", "2001:db8::7"},
		{"[::ffff:198.51.100.1]:4000", "", "", "198.51.100.1"},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if c.real != "" {
			r.Header.Set("X-Real-IP", c.real)
		}
		if got := o.clientIP(r); got.String() != c.want {
			t.Errorf("%s, X-Forwarded-For %q, X-Real-IP %q: %v, want %s", c.remote, c.xff, c.real, got, c.want)
		}
	}
}

// BenchmarkJoinLimiter: one join's cost in a limiter that tracks many addresses.
func BenchmarkJoinLimiter(b *testing.B) {
	j := newJoinLimiter(JoinLimits{Rate: 1e9, Burst: 1 << 30})
	now := time.Unix(1e9, 0)
	for i := 0; i < 50000; i++ {
		j.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
	}
}
