package turnsrv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/internal/testca"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
)

// The bad-day tests of the TURN server: a real node process on one host, Go clients as
// processes (this test binary, re-executed) on others, and nftables dropping every UDP datagram
// between the viewer and the node.

var e2eKeys = auth.Keys{Key: "turnkey", Secret: "a-turn-e2e-secret-of-32-bytes!!!"}

// Environment of a helper process (TestHelperClient).
const (
	envRole  = "CASCADE_TURN_HELPER" // "publish" or "subscribe"
	envURL   = "CASCADE_TURN_URL"
	envToken = "CASCADE_TURN_TOKEN"
)

// TestHelperClient is not a test: it is the client process the bad-day tests start on a lab
// host (this test binary, re-executed with CASCADE_TURN_HELPER set). Run directly, it returns.
func TestHelperClient(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	ctx := context.Background()
	switch role {
	case "publish":
		c, err := client.Dial(ctx, os.Getenv(envURL), client.Options{Token: os.Getenv(envToken)})
		if err != nil {
			fmt.Println("FAIL dial:", err)
			os.Exit(1)
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
		if err != nil {
			os.Exit(1)
		}
		if _, err := c.Publish(ctx, tr); err != nil {
			fmt.Println("FAIL publish:", err)
			os.Exit(1)
		}
		fmt.Println("publishing")
		payload := make([]byte, 400)
		payload[0] = 0x10
		for i := uint32(0); ; i++ {
			time.Sleep(20 * time.Millisecond)
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 3000, Marker: true}, Payload: payload})
		}
	case "subscribe":
		var packets atomic.Int64
		c, err := client.Dial(ctx, os.Getenv(envURL), client.Options{Token: os.Getenv(envToken),
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
			OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
					packets.Add(1)
				}
			}})
		if err != nil {
			fmt.Println("FAIL dial:", err)
			os.Exit(1)
		}
		fmt.Printf("iceServers %+v\n", c.Join.ICEServers)
		deadline := time.Now().Add(30 * time.Second)
		for packets.Load() < 50 {
			if time.Now().After(deadline) {
				state := "no receive transport"
				if pc := c.Recv(); pc != nil {
					state = pc.ICEConnectionState().String()
				}
				fmt.Printf("FAIL %d packets in 30 s (ICE %s)\n", packets.Load(), state)
				os.Exit(1)
			}
			time.Sleep(100 * time.Millisecond)
		}
		typ, proto := "", ""
		stats := c.Recv().GetStats()
		for _, s := range stats {
			if cp, ok := s.(webrtc.ICECandidatePairStats); ok && cp.Nominated && cp.State == webrtc.StatsICECandidatePairStateSucceeded {
				if lc, ok := stats[cp.LocalCandidateID].(webrtc.ICECandidateStats); ok {
					typ, proto = lc.CandidateType.String(), lc.RelayProtocol
				}
			}
		}
		fmt.Printf("OK packets=%d candidate=%s relayProtocol=%s\n", packets.Load(), typ, proto)
		_ = c.Close()
		return
	}
	fmt.Println("FAIL unknown role", role)
	os.Exit(2)
}

// turnLab is a node with its TURN server on host "node", and a viewer host whose UDP to and
// from the rest of the lab is dropped.
type turnLab struct {
	node, viewer *harness.Host
	proc         *harness.Process
	caPath       string
}

const (
	turnUDPPort = 3478
	turnTCPPort = 3478
	turnTLSPort = 5349
)

func startTURNLab(t *testing.T, extra ...string) *turnLab {
	t.Helper()
	lab := harness.New(t)
	l := &turnLab{node: lab.Host("node"), viewer: lab.Host("viewer")}
	dir := t.TempDir()
	certs := testca.Write(t, dir, net.IP(l.node.Addr().AsSlice()), "turn.cascade.test")
	l.caPath = certs.CA
	args := []string{"node", "--http", ":7880", "--udp-port", "7882", "--public-ip", l.node.Addr().String(), "--workers", "1",
		"--api-key", e2eKeys.Key, "--api-secret", e2eKeys.Secret, "--log-level", "warn",
		"--turn-udp-port", fmt.Sprint(turnUDPPort), "--turn-tcp-port", fmt.Sprint(turnTCPPort),
		"--turn-tls-port", fmt.Sprint(turnTLSPort), "--turn-cert", certs.Cert, "--turn-key", certs.Key}
	l.proc = l.node.Start(t, "node", harness.Cascade(t), append(args, extra...)...)
	harness.Eventually(t, 20*time.Second, func() error {
		if code, err := l.proc.Wait(0); err == nil {
			t.Fatalf("the node exited %d:\n%s", code, l.proc.Output())
		}
		var c net.Conn
		err := l.viewer.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", net.JoinHostPort(l.node.Addr().String(), "7880"), time.Second)
			return err
		})
		if err == nil {
			c.Close()
		}
		return err
	})
	// Every UDP datagram in or out of the viewer's link is dropped, counted.
	if _, err := l.viewer.Run(context.Background(), "nft", "add rule netdev harness cut ip protocol udp counter drop"); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *turnLab) url() string {
	return "ws://" + net.JoinHostPort(l.node.Addr().String(), "7880") + "/ws"
}

// token mints a token for the lab's node.
func token(t *testing.T, room, identity string, publish bool) string {
	t.Helper()
	tok, err := e2eKeys.Mint(auth.Grant{Room: room, Identity: identity, Publish: publish, Subscribe: !publish}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// helper starts this test binary as a client process on h.
func helper(t *testing.T, h *harness.Host, name, role, url, tok string, env ...string) *harness.Process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{envRole + "=" + role, envURL + "=" + url, envToken + "=" + tok}, env...)
	args = append(args, self, "-test.run=^TestHelperClient$", "-test.count=1")
	return h.Start(t, name, "env", args...)
}

// udpDropped reads the viewer's drop counter: UDP datagrams dropped on its link.
func (l *turnLab) udpDropped(t *testing.T) string {
	out, err := l.viewer.Run(context.Background(), "nft", "list chain netdev harness cut")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestRelayOverTCPAndTLSWhenUDPIsBlocked: with all UDP between the viewer and the node dropped,
// a Go client with ICE transport policy "relay" connects through the node's TURN server over
// TCP, and separately over TLS (a certificate of a test CA), and receives media.
func TestRelayOverTCPAndTLSWhenUDPIsBlocked(t *testing.T) {
	l := startTURNLab(t)
	helper(t, l.node, "publisher", "publish", l.url(), token(t, "turn", "pub", true))

	for _, tc := range []struct {
		name, proto string
		env         []string
		block       func() func()
	}{
		// TCP: the TLS listener is blocked, so only turn:...?transport=tcp can work.
		{name: "tcp", proto: "tcp", block: func() func() { return l.viewer.BlockPort("tcp", turnTLSPort) }},
		// TLS: the TCP listener is blocked; the client trusts the test CA (SSL_CERT_FILE).
		{name: "tls", proto: "tls", env: []string{"SSL_CERT_FILE=" + l.caPath}, block: func() func() { return l.viewer.BlockPort("tcp", turnTCPPort) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heal := tc.block()
			defer heal()
			sub := helper(t, l.viewer, "subscriber-"+tc.name, "subscribe", l.url(), token(t, "turn", "viewer-"+tc.name, false), tc.env...)
			code, err := sub.Wait(60 * time.Second)
			out := sub.Output()
			if err != nil || code != 0 {
				t.Fatalf("subscriber over %s: exit %d (%v):\n%s", tc.name, code, err, out)
			}
			want := "candidate=relay relayProtocol=" + tc.proto
			if !strings.Contains(out, want) {
				t.Fatalf("subscriber over %s: want %q in its output:\n%s", tc.name, want, out)
			}
			t.Logf("subscriber over %s: %s", tc.name, out[strings.Index(out, "OK"):])
		})
	}
	// The viewer did try UDP (TURN over UDP, at least), and the lab dropped it.
	if list := l.udpDropped(t); strings.Contains(list, "counter packets 0 ") {
		t.Errorf("no UDP datagram was dropped: the test did not block anything:\n%s", list)
	}
}
