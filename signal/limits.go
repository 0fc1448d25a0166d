package signal

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// JoinLimits limit the joins of one client IP address (PROTOCOL.md, "Limits"): /ws joins and
// WHIP and WHEP POSTs take from one token bucket per address (per /64 for IPv6).
type JoinLimits struct {
	// Rate is the joins per second of one address; zero means DefaultJoinRate, negative no limit.
	Rate float64
	// Burst is the joins one address may make at once; zero means DefaultJoinBurst.
	Burst int
	// TrustedProxies are the networks whose X-Forwarded-For and X-Real-IP headers are believed:
	// behind them, the client is the nearest address in X-Forwarded-For that is not a trusted
	// proxy. From any other peer the socket's address is the client, whatever the headers say.
	TrustedProxies []netip.Prefix
}

// Defaults of JoinLimits: high, since a town hall can come from one corporate NAT.
const (
	DefaultJoinRate  = 50
	DefaultJoinBurst = 300
)

// maxTrackedIPs bounds the join limiter's memory: past it, idle addresses are forgotten, and
// new ones share one bucket until some are.
const maxTrackedIPs = 1 << 16

// sweepEvery is the shortest time between two sweeps of a full limiter: a flood of new
// addresses costs one pass over the map per interval, not one per join.
const sweepEvery = time.Second

// closeFlooding closes a session that goes on sending chat far past its limit.
const closeFlooding = websocket.StatusCode(4029)

// joinLimiter is the per-address join limit: a bounded map of token buckets.
type joinLimiter struct {
	o    JoinLimits
	idle time.Duration // a bucket untouched this long is full again: forgetting it changes nothing

	mu        sync.Mutex
	ips       map[netip.Addr]*ipBucket
	overflow  *rate.Limiter // shared by new addresses while the map is full of active ones
	lastSweep time.Time
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newJoinLimiter(o JoinLimits) *joinLimiter {
	if o.Rate == 0 {
		o.Rate = DefaultJoinRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultJoinBurst
	}
	j := &joinLimiter{o: o, ips: make(map[netip.Addr]*ipBucket)}
	if o.Rate > 0 {
		j.idle = time.Duration(float64(o.Burst) / o.Rate * float64(time.Second))
		j.overflow = rate.NewLimiter(rate.Limit(o.Rate), o.Burst)
	}
	return j
}

// allow takes one join of client at now; refused, it tells when the next one would pass.
func (j *joinLimiter) allow(client netip.Addr, now time.Time) (bool, time.Duration) {
	if j.o.Rate < 0 {
		return true, 0
	}
	key := client
	if client.Is6() {
		key = netip.PrefixFrom(client, 64).Masked().Addr()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.ips[key]
	if b == nil {
		if since := now.Sub(j.lastSweep); since > j.idle || len(j.ips) >= maxTrackedIPs && since > sweepEvery {
			j.sweep(now)
		}
		if len(j.ips) < maxTrackedIPs {
			b = &ipBucket{lim: rate.NewLimiter(rate.Limit(j.o.Rate), j.o.Burst)}
			j.ips[key] = b
		}
	}
	lim := j.overflow
	if b != nil {
		b.seen, lim = now, b.lim
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Duration((1 - lim.TokensAt(now)) / j.o.Rate * float64(time.Second))
	return false, wait
}

// sweep forgets the buckets idle long enough to be full again. The caller holds mu.
func (j *joinLimiter) sweep(now time.Time) {
	j.lastSweep = now
	for k, b := range j.ips {
		if now.Sub(b.seen) > j.idle {
			delete(j.ips, k)
		}
	}
}

// tracked is the number of addresses the limiter remembers.
func (j *joinLimiter) tracked() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.ips)
}

// clientIP is the address a request comes from: the socket's peer, or, when the peer is a
// trusted proxy, the nearest untrusted address of X-Forwarded-For (else X-Real-IP).
func (o JoinLimits) clientIP(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !o.trusted(peer) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := netip.Addr{}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a garbled hop: trust nothing before it
		}
		client = a.Unmap()
		if !o.trusted(client) {
			return client
		}
	}
	if client.IsValid() {
		return client // every hop is a trusted proxy: the first one is the client
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap()
	}
	return peer
}

func (o JoinLimits) trusted(a netip.Addr) bool {
	for _, p := range o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses a socket address ("host:port"), the unspecified address if it cannot.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap()
	}
	return netip.IPv6Unspecified()
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or addresses (an address is its
// own /32 or /128).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither a CIDR nor an IP address", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// admitJoin takes one join of the request's client: false when refused, and then it has
// answered 429 with Retry-After (WHIP and WHEP).
func (s *Server) admitJoin(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.joins.allow(s.o.Joins.clientIP(r), time.Now())
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait.Seconds(), 1)))))
		http.Error(w, proto.CodeRateLimited+": too many joins from this address", http.StatusTooManyRequests)
	}
	return ok
}

// admitSessionJoin takes one join of a WebSocket session's client.
func (s *session) admitJoin() error {
	if ok, wait := s.srv.joins.allow(s.ip, time.Now()); !ok {
		return errorf(proto.CodeRateLimited, fmt.Sprintf("too many joins from this address: retry in %v", wait.Round(time.Millisecond)))
	}
	return nil
}

// limitCode is the wire code of a limit's error ("" for any other error).
func limitCode(err error) string {
	switch {
	case errors.Is(err, node.ErrTooManyRooms):
		return proto.CodeTooManyRooms
	case errors.Is(err, node.ErrRoomFull):
		return proto.CodeRoomFull
	case errors.Is(err, node.ErrTooManyTracks):
		return proto.CodeTooManyTracks
	case errors.Is(err, node.ErrRateLimited):
		return proto.CodeRateLimited
	}
	return ""
}

// limitStatus is the HTTP status of a limit's code (0 for any other code).
func limitStatus(code string) int {
	switch code {
	case proto.CodeTooManyRooms:
		return http.StatusServiceUnavailable
	case proto.CodeRoomFull, proto.CodeTooManyTracks:
		return http.StatusForbidden
	case proto.CodeRateLimited:
		return http.StatusTooManyRequests
	}
	return 0
}
