package node_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// The paths a client may take to a node besides UDP over IPv4: ICE-TCP (passive candidates on
// the node's one TCP listener) and IPv6, both on loopback, in-process.

// pathAPI is clientAPI restricted to the candidate networks given: a client that can only use
// ICE-TCP (its UDP blocked), or only IPv6.
func pathAPI(t *testing.T, networks ...webrtc.NetworkType) *webrtc.API {
	t.Helper()
	return testAPI(t, networks, loopbackOnly)
}

// needIPv6 skips a test loudly when the machine has no IPv6 loopback, and fails it under CI=true.
func needIPv6(t *testing.T) {
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

// selectedPair is the receive transport's selected candidate pair, as the client sees it.
func selectedPair(t *testing.T, pc *webrtc.PeerConnection) *webrtc.ICECandidatePair {
	t.Helper()
	p, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil {
		t.Fatalf("no selected candidate pair: %v", err)
	}
	return p
}

// receives waits until every subscriber got at least 100 packets (a second of the publisher).
func receives(t *testing.T, subs map[string]*testSubscriber) {
	t.Helper()
	checkFor(t, 15*time.Second, func() error {
		for name, s := range subs {
			if got := s.packets.Load(); got < 100 {
				return fmt.Errorf("%s subscriber: %d packets", name, got)
			}
		}
		return nil
	})
}

// forwarded is the node's forwarded-packet count, from its metrics.
func forwarded(t *testing.T, reg prometheus.Gatherer) float64 {
	return metricSum(t, reg, "cascade_forwarded_packets_total", nil)
}

// TestICETCPSubscriber: a subscriber that can only use ICE-TCP (as one whose UDP is blocked)
// receives a UDP publisher's media through the node's TCP listener, next to a UDP subscriber;
// its selected pair is TCP on both ends, and the node's forwarded-packet counters and its
// transports metric count it.
func TestICETCPSubscriber(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if n.TCPAddr() == nil {
		t.Fatal("no ICE-TCP listener by default")
	}
	publish(t, n, clientAPI(t), "r")
	udp := subscribe(t, n, clientAPI(t), "r", "udp", false)
	tcp := subscribe(t, n, pathAPI(t, webrtc.NetworkTypeTCP4), "r", "tcp", false)
	receives(t, map[string]*testSubscriber{"udp": udp, "tcp": tcp})

	p := selectedPair(t, tcp.pc)
	if p.Local.Protocol != webrtc.ICEProtocolTCP || p.Remote.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("TCP subscriber's selected pair %s", p)
	}
	if got, want := fmt.Sprint(p.Remote.Port), fmt.Sprint(n.TCPAddr().(*net.TCPAddr).Port); got != want {
		t.Fatalf("TCP subscriber's pair ends at port %s, not the node's ICE-TCP port %s", got, want)
	}
	if p := selectedPair(t, udp.pc); p.Local.Protocol != webrtc.ICEProtocolUDP {
		t.Fatalf("UDP subscriber's selected pair %s", p)
	}
	checkFor(t, 5*time.Second, func() error {
		w := n.Stats().Workers[0]
		if w.TCP4 != 1 || w.UDP4 != 2 { // the TCP subscriber; the publisher and the UDP subscriber
			return fmt.Errorf("transports: %d over TCP, %d over UDP; want 1 and 2", w.TCP4, w.UDP4)
		}
		return nil
	})
	if got := metricSum(t, reg, "cascade_transports", map[string]string{"protocol": "tcp", "family": "ipv4"}); got != 1 {
		t.Fatalf("cascade_transports{protocol=tcp} = %v, want 1", got)
	}
	// Every packet to either subscriber is counted as forwarded (the TCP one's too).
	before, tcpBefore, udpBefore := forwarded(t, reg), tcp.packets.Load(), udp.packets.Load()
	time.Sleep(time.Second)
	gotFwd, gotTCP, gotUDP := forwarded(t, reg)-before, tcp.packets.Load()-tcpBefore, udp.packets.Load()-udpBefore
	if gotTCP < 50 || gotFwd < float64(gotTCP+gotUDP)*0.9 {
		t.Fatalf("in a second the TCP subscriber got %d packets and the UDP one %d; the node counted %v forwarded", gotTCP, gotUDP, gotFwd)
	}

	tcp.pc.Close()
	checkFor(t, 15*time.Second, func() error { // the node notices the TCP transport's end
		if w := n.Stats().Workers[0]; w.TCP4 != 0 {
			return fmt.Errorf("%d transports over TCP after the subscriber left", w.TCP4)
		}
		return nil
	})
}

// TestICETCPDisabled: TCPDisabled opens no listener and the node offers no TCP candidate.
func TestICETCPDisabled(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if n.TCPAddr() != nil {
		t.Fatalf("ICE-TCP listener at %v", n.TCPAddr())
	}
	if c := answerCandidates(t, n, clientAPI(t)); strings.Contains(strings.Join(c, "\n"), " tcp ") {
		t.Fatalf("TCP candidates with ICE-TCP off:\n%s", strings.Join(c, "\n"))
	}
}

// answerCandidates publishes to n from a PeerConnection of api and returns the node's
// candidates in its answer.
func answerCandidates(t *testing.T, n *node.Node, api *webrtc.API) []string {
	t.Helper()
	p, _, _ := publishVP8Answer(t, n, api)
	var cands []string
	for _, l := range strings.Split(p, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "a=candidate:") {
			cands = append(cands, l)
		}
	}
	return cands
}

// publishVP8Answer is publishVP8's answer SDP.
func publishVP8Answer(t *testing.T, n *node.Node, api *webrtc.API) (string, *node.Participant, *webrtc.PeerConnection) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	p, err := n.Join("r", "pub", node.Grant{Publish: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(vp8pub.Offer(t, pc), true)
	if err != nil {
		t.Fatal(err)
	}
	return answer, p, pc
}

// TestPublicIPBothFamilies: with one public IPv4 and one public IPv6 address, the node's host
// candidates carry the public address of their family, on UDP and TCP, and none of its own.
// (pion gathers no ICE-TCP candidate on ::1, so IPv6 is checked on UDP only.)
func TestPublicIPBothFamilies(t *testing.T) {
	needIPv6(t)
	for _, c := range []struct {
		host string
		want []string
	}{
		{"127.0.0.1", []string{" udp 2130706431 203.0.113.7 ", " tcp 1671430143 203.0.113.7 "}},
		{"::1", []string{" udp 2130706431 2001:db8::7 "}},
	} {
		n, err := node.New(node.Options{LoopbackOnly: true, UDPHost: c.host, Workers: 1, PublicIP: "203.0.113.7, 2001:db8::7"})
		if err != nil {
			t.Fatal(err)
		}
		cands := strings.Join(answerCandidates(t, n, pathAPI(t, webrtc.NetworkTypeUDP4)), "\n")
		n.Close()
		for _, want := range c.want {
			if !strings.Contains(cands, want) {
				t.Errorf("bound to %s: no candidate%sin the answer:\n%s", c.host, want, cands)
			}
		}
		if strings.Contains(cands, " "+c.host+" ") {
			t.Errorf("bound to %s: the host address in the answer despite the public IPs:\n%s", c.host, cands)
		}
	}
}

// TestPublicIPValidated: --public-ip takes at most one address of each family.
func TestPublicIPValidated(t *testing.T) {
	for _, s := range []string{"203.0.113.7,198.51.100.1", "2001:db8::1,2001:db8::2", "203.0.113.7,", "0.0.0.0", "fe80::1%eth0", "203.0.113.7;2001:db8::1"} {
		if _, err := node.ParsePublicIPs(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for _, s := range []string{"", "203.0.113.7", "2001:db8::1", "203.0.113.7,2001:db8::1", " 2001:db8::1 , 203.0.113.7 "} {
		if _, err := node.ParsePublicIPs(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// loopback6API is a client API whose one UDP socket is on [::1] (pion gathers no ::1 candidate
// from the interfaces: it takes it for a deprecated IPv4-compatible address).
func loopback6API(t *testing.T) *webrtc.API {
	t.Helper()
	udp, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	mux := udpMux(t, udp)
	return testAPI(t, []webrtc.NetworkType{webrtc.NetworkTypeUDP6}, func(se *webrtc.SettingEngine) {
		se.SetICEUDPMux(mux)
		se.SetIncludeLoopbackCandidate(true)
	})
}

// TestIPv6PublishSubscribe: a node on ::1 only, a publisher and two subscribers on ::1: media
// flows over IPv6 (through the worker's batched sends to IPv6 addresses), and the node counts
// the transports as UDP over IPv6 and the packets as forwarded.
func TestIPv6PublishSubscribe(t *testing.T) {
	needIPv6(t)
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, UDPHost: "::1", Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if a := n.WorkerAddr(0).(*net.UDPAddr); !a.IP.Equal(net.IPv6loopback) {
		t.Fatalf("worker bound to %v, want [::1]", a)
	}
	publish(t, n, loopback6API(t), "r")
	subs := map[string]*testSubscriber{
		"first":  subscribe(t, n, loopback6API(t), "r", "first", false),
		"second": subscribe(t, n, loopback6API(t), "r", "second", false),
	}
	receives(t, subs)
	for name, s := range subs {
		if p := selectedPair(t, s.pc); p.Local.Address != "::1" || p.Remote.Address != "::1" || p.Local.Protocol != webrtc.ICEProtocolUDP {
			t.Fatalf("%s subscriber's selected pair %s", name, p)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		w := n.Stats().Workers[0]
		if w.UDP6 != 3 || w.UDP4+w.TCP4+w.TCP6 != 0 {
			return fmt.Errorf("transports: udp6 %d, udp4 %d, tcp4 %d, tcp6 %d; want 3, 0, 0, 0", w.UDP6, w.UDP4, w.TCP4, w.TCP6)
		}
		return nil
	})
	if got := metricSum(t, reg, "cascade_transports", map[string]string{"protocol": "udp", "family": "ipv6"}); got != 3 {
		t.Fatalf("cascade_transports{udp, ipv6} = %v, want 3", got)
	}
	if got, min := forwarded(t, reg), float64(subs["first"].packets.Load()); got < min {
		t.Fatalf("%v packets counted as forwarded, fewer than one subscriber received (%v)", got, min)
	}
}
