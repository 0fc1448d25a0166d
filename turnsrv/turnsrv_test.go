package turnsrv_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sfu/cascade/turnsrv"
)

const secret = "0123456789abcdef-turn-test"

// udp opens a UDP socket on ip (a fake media socket, or a service the relay must not reach).
func udp(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// start runs a server on loopback relaying to media, and returns it and its metrics.
func start(t *testing.T, o turnsrv.Options) (*turnsrv.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if o.Secret == "" {
		o.Secret = secret
	}
	o.UDP, o.Host, o.RelayIPs, o.RelayBind, o.Registerer = "127.0.0.1:0", "127.0.0.1", []net.IP{net.IPv4(127, 0, 0, 1)}, "127.0.0.1", reg
	s, err := turnsrv.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

// metric reads one series of the registry (labels as name=value pairs); 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// client is a TURN client over UDP with credentials for user.
func turnClient(t *testing.T, s *turnsrv.Server, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: s.UDPAddr().String(), STUNServerAddr: s.UDPAddr().String(),
		Username: user, Password: pass, Realm: turnsrv.Realm, Conn: conn, LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}

func credentials(t *testing.T, s *turnsrv.Server, user string) (string, string) {
	t.Helper()
	ice, err := s.ICEServer(user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return ice.Username, ice.Credential
}

// allocate is a TURN client of user "viewer" and its allocation, closed with the test.
func allocate(t *testing.T, s *turnsrv.Server) (*turn.Client, net.PacketConn) {
	t.Helper()
	user, pass := credentials(t, s, "viewer")
	c := turnClient(t, s, user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	return c, relay
}

// read reads one datagram within d; ok is false on a timeout.
func read(t *testing.T, c net.PacketConn, d time.Duration) ([]byte, net.Addr, bool) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, false
		}
		t.Fatal(err)
	}
	return buf[:n], from, true
}

// TestRelayReachesOnlyMedia: a TURN client cannot relay to an address other than the node's
// media sockets (another IP, cloud metadata, another port of the media IP): the permission is
// refused or the datagram dropped, and nothing reaches those listeners; relaying to the media
// socket works both ways.
func TestRelayReachesOnlyMedia(t *testing.T) {
	media := udp(t, "127.0.0.1")
	otherPort := udp(t, "127.0.0.1") // same IP as the media socket, another port: a local service
	otherIP := udp(t, "127.0.0.2")   // another address of the network the node runs in
	s, reg := start(t, turnsrv.Options{Media: []turnsrv.Media{{Addr: addrPort(media)}}})
	c, relay := allocate(t, s)

	for _, peer := range []net.Addr{otherIP.LocalAddr(), &net.UDPAddr{IP: net.IPv4(169, 254, 169, 254), Port: 80}} {
		if err := c.CreatePermission(peer); err == nil {
			t.Errorf("CreatePermission(%v) succeeded, want refused", peer)
		}
	}
	if got := metric(t, reg, "cascade_turn_permissions_refused_total"); got < 2 {
		t.Errorf("cascade_turn_permissions_refused_total = %v, want at least 2", got)
	}
	// Sending makes the client create the permission (and then bind a channel): refused too.
	_, _ = relay.WriteTo([]byte("to another ip"), otherIP.LocalAddr())
	// The media IP is permitted, but only the media socket's port is reached.
	if _, err := relay.WriteTo([]byte("to another port"), otherPort.LocalAddr()); err != nil {
		t.Fatalf("write to the media IP's other port: %v", err)
	}

	// The media socket gets what the client relays, and the client gets its answer from it.
	var from net.Addr
	deadline := time.Now().Add(5 * time.Second)
	for from == nil {
		if time.Now().After(deadline) {
			t.Fatal("nothing relayed to the media socket")
		}
		if _, err := relay.WriteTo([]byte("media"), media.LocalAddr()); err != nil {
			t.Fatalf("write to media: %v", err)
		}
		if b, f, ok := read(t, media, 200*time.Millisecond); ok && string(b) == "media" {
			from = f
		}
	}
	if _, err := media.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	b, f, ok := read(t, relay, 5*time.Second)
	if !ok || string(b) != "answer" || f.String() != media.LocalAddr().String() {
		t.Fatalf("client got %q from %v (ok %v), want \"answer\" from %v", b, f, ok, media.LocalAddr())
	}
	// A local service writing to the relay address does not reach the client either.
	if _, err := otherPort.WriteTo([]byte("from another port"), from); err != nil {
		t.Fatal(err)
	}
	if _, err := media.WriteTo([]byte("second answer"), from); err != nil {
		t.Fatal(err)
	}
	if b, _, ok := read(t, relay, 5*time.Second); !ok || string(b) != "second answer" {
		t.Fatalf("client got %q (ok %v), want only \"second answer\"", b, ok)
	}

	// Nothing reached the other listeners (the media socket's datagrams went first, on the
	// same path, and arrived).
	for _, l := range []*net.UDPConn{otherIP, otherPort} {
		if b, f, ok := read(t, l, 300*time.Millisecond); ok {
			t.Errorf("%v received %q from %v through the relay", l.LocalAddr(), b, f)
		}
	}
	if got := metric(t, reg, "cascade_turn_dropped_packets_total"); got < 2 {
		t.Errorf("cascade_turn_dropped_packets_total = %v, want at least 2 (to and from the other port)", got)
	}
	if got := metric(t, reg, "cascade_turn_relayed_packets_total", "direction", "to_node"); got < 1 {
		t.Errorf("relayed to_node packets = %v", got)
	}
	if got := metric(t, reg, "cascade_turn_relayed_bytes_total", "direction", "to_client"); got < float64(len("answer")) {
		t.Errorf("relayed to_client bytes = %v", got)
	}
	if got := metric(t, reg, "cascade_turn_allocations"); got != 1 {
		t.Errorf("cascade_turn_allocations = %v, want 1", got)
	}
}

// TestRelayToPublicAddressDeliversLocally: a media address the host does not hold (a public
// IP behind 1:1 NAT) is delivered to the media socket's local address, and answers come back
// under the public address the client knows.
func TestRelayToPublicAddressDeliversLocally(t *testing.T) {
	media := udp(t, "127.0.0.1")
	public := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), addrPort(media).Port())
	s, _ := start(t, turnsrv.Options{Media: []turnsrv.Media{{Addr: public, Local: addrPort(media)}}})
	_, relay := allocate(t, s)
	if _, err := relay.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(public)); err != nil {
		t.Fatal(err)
	}
	b, from, ok := read(t, media, 5*time.Second)
	if !ok || string(b) != "hello" {
		t.Fatalf("media socket got %q (ok %v)", b, ok)
	}
	if _, err := media.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	b, f, ok := read(t, relay, 5*time.Second)
	if !ok || string(b) != "answer" || f.String() != public.String() {
		t.Fatalf("client got %q from %v (ok %v), want \"answer\" from %v", b, f, ok, public)
	}
}

// TestCredentialsAndQuota: bad or expired credentials get no allocation; a user holds at most
// MaxAllocations; TCP relaying is refused.
func TestCredentialsAndQuota(t *testing.T) {
	media := udp(t, "127.0.0.1")
	s, reg := start(t, turnsrv.Options{Media: []turnsrv.Media{{Addr: addrPort(media)}}, MaxAllocations: 2})

	user, pass := credentials(t, s, "alice")
	if _, err := turnClient(t, s, user, pass+"x").Allocate(); err == nil {
		t.Error("allocation with a wrong password succeeded")
	}
	other, err := turnsrv.New(turnsrv.Options{Secret: "another secret of the same length", UDP: "127.0.0.1:0", Host: "127.0.0.1",
		RelayIPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Media: []turnsrv.Media{{Addr: addrPort(media)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ou, op := credentials(t, other, "alice")
	if _, err := turnClient(t, s, ou, op).Allocate(); err == nil {
		t.Error("allocation with another server's credentials succeeded")
	}
	pastUser, pastPass, err := turn.GenerateLongTermTURNRESTCredentials(secret, "alice", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := turnClient(t, s, pastUser, pastPass).Allocate(); err == nil {
		t.Error("allocation with an expired username succeeded")
	}
	if metric(t, reg, "cascade_turn_auth_failures_total") == 0 {
		t.Error("cascade_turn_auth_failures_total did not count the failures")
	}

	for i := range 2 {
		if _, err := turnClient(t, s, user, pass).Allocate(); err != nil {
			t.Fatalf("allocation %d of 2: %v", i+1, err)
		}
	}
	if _, err := turnClient(t, s, user, pass).Allocate(); err == nil {
		t.Error("a third allocation of one user succeeded, want quota reached")
	}
	bu, bp := credentials(t, s, "bob")
	if _, err := turnClient(t, s, bu, bp).Allocate(); err != nil {
		t.Errorf("another user's allocation: %v", err)
	}
	if got := metric(t, reg, "cascade_turn_allocations_refused_total"); got != 1 {
		t.Errorf("cascade_turn_allocations_refused_total = %v, want 1", got)
	}
	if _, err := turnClient(t, s, bu, bp).AllocateTCP(); err == nil {
		t.Error("a TCP allocation (RFC 6062) succeeded")
	}
}

// TestURLs: the URLs name every listener, with the TLS host (and port) when given.
func TestURLs(t *testing.T) {
	media := udp(t, "127.0.0.1")
	o := turnsrv.Options{Secret: secret, UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Host: "127.0.0.1",
		RelayIPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Media: []turnsrv.Media{{Addr: addrPort(media)}}}
	s, err := turnsrv.New(o)
	if err != nil {
		t.Fatal(err)
	}
	urls := s.URLs()
	s.Close()
	if len(urls) != 2 || !strings.HasPrefix(urls[0], "turn:127.0.0.1:") || !strings.HasSuffix(urls[0], "?transport=udp") ||
		!strings.HasSuffix(urls[1], "?transport=tcp") {
		t.Fatalf("URLs %q", urls)
	}
	if _, err := turnsrv.New(turnsrv.Options{Secret: "short", UDP: ":0", Host: "x", RelayIPs: o.RelayIPs, Media: o.Media}); !errors.Is(err, turnsrv.ErrBadOptions) {
		t.Errorf("short secret: %v, want ErrBadOptions", err)
	}
}
