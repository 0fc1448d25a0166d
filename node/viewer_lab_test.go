package node_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// The lab tests of a viewer on a network that allows only some paths to the node: a `cascade
// node` process on one host, `cascade bots` (the Go client, one publisher and two subscribers)
// on another. Every subscriber receives media, and the node counts every transport on the one
// path the viewer has, none on another, while its forwarded-packet counter grows.

// TestFaultICETCPWhenUDPBlocked is a viewer on a network that drops all UDP (nftables on its
// link, both directions): the bots connect over ICE-TCP to the node's --tcp-port, and the node
// counts every transport as TCP, none as UDP.
func TestFaultICETCPWhenUDPBlocked(t *testing.T) {
	testLabViewer(t, false, true)
}

// TestFaultIPv6 is an IPv6-only viewer: the node advertises both of its addresses (--public-ip
// IPv4,IPv6), the bots run with --networks udp6 and join the node at its IPv6 address. The node
// counts every transport as UDP over IPv6, none over IPv4 or TCP.
//
// The bots offer UDP only: with udp6,tcp6 and UDP open, the client now and then nominates a TCP
// pair whose check finished first (pion nominates the best pair valid at that moment: its host
// acceptance min wait is 0), so "all over UDP" would not hold; TestFaultIPv6ICETCPWhenUDPBlocked
// covers udp6,tcp6.
func TestFaultIPv6(t *testing.T) {
	testLabViewer(t, true, false)
}

// TestFaultIPv6ICETCPWhenUDPBlocked is TestFaultIPv6 on a network that drops all UDP, with bots
// that offer both protocols over IPv6 (--networks udp6,tcp6): they fall back to ICE-TCP on
// IPv6, and the node counts every transport as TCP over IPv6.
func TestFaultIPv6ICETCPWhenUDPBlocked(t *testing.T) {
	testLabViewer(t, true, true)
}

// testLabViewer runs the bots on a viewer host against a node: over IPv6 only (v6; else the
// client's default networks, udp4,tcp4, against a node on IPv4 only), with the viewer's UDP
// blocked (noUDP) or not.
func testLabViewer(t *testing.T, v6, noUDP bool) {
	lab := harness.New(t)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	const key, secret = "lab", "lab-secret-0123456789abcdef"
	bin := harness.Cascade(t)
	publicIP, joinAt, family := nodeHost.Addr().String(), nodeHost.Addr(), "IPv4"
	var networks []string // the client's default
	want := func(w workerStats) int64 { return w.UDP4 }
	switch {
	case v6 && noUDP:
		networks, want = []string{"--networks", "udp6,tcp6"}, func(w workerStats) int64 { return w.TCP6 }
	case v6:
		networks, want = []string{"--networks", "udp6"}, func(w workerStats) int64 { return w.UDP6 }
	case noUDP:
		want = func(w workerStats) int64 { return w.TCP4 }
	}
	if v6 {
		publicIP, joinAt, family = publicIP+","+nodeHost.Addr6().String(), nodeHost.Addr6(), "IPv6"
	}
	node := nodeHost.Start(t, "node", bin, "node", "--http", ":7880", "--udp-port", "7882", "--tcp-port", "7882",
		"--public-ip", publicIP, "--workers", "1", "--api-key", key, "--api-secret", secret, "--log-level", "warn")
	url := "ws://" + net.JoinHostPort(joinAt.String(), "7880")
	admin, err := auth.Keys{Key: key, Secret: secret}.Mint(auth.Grant{Admin: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stats := func() (nodeStats, error) { return getStats(viewer, nodeHost, admin) }
	harness.Eventually(t, 20*time.Second, func() error {
		if code, err := node.Wait(0); err == nil {
			t.Fatalf("node exited %d:\n%s", code, node.Output())
		}
		_, err := stats()
		return err
	})

	if noUDP {
		viewer.BlockUDP()
	}
	out := filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"bots", "--url", url}, networks...)
	botsProc := viewer.Start(t, "bots", bin, append(args, "--room", "viewer",
		"--publishers", "1", "--subscribers", "2", "--duration", "4s", "--join-timeout", "20s", "--max-stall", "2s",
		"--api-key", key, "--api-secret", secret, "--quiet", "--json", out)...)
	var during nodeStats
	harness.Eventually(t, 30*time.Second, func() error {
		if code, err := botsProc.Wait(0); err == nil {
			t.Fatalf("cascade bots exited %d before the node saw them all:\n%s", code, botsProc.Output())
		}
		s, err := stats()
		if err != nil {
			return err
		}
		w := s.Workers[0]
		if s.Consumers < 4 || w.Packets == 0 || want(w) < 3 { // 2 subscribers x (video, audio); 1 send + 2 receive transports
			return fmt.Errorf("node: %d consumers, %d packets forwarded, transports udp4 %d udp6 %d tcp4 %d tcp6 %d",
				s.Consumers, w.Packets, w.UDP4, w.UDP6, w.TCP4, w.TCP6)
		}
		during = s
		return nil
	})
	w := during.Workers[0]
	if other := w.UDP4 + w.UDP6 + w.TCP4 + w.TCP6 - want(w); other != 0 {
		t.Errorf("node: transports udp4 %d udp6 %d tcp4 %d tcp6 %d; want all on %s over %s",
			w.UDP4, w.UDP6, w.TCP4, w.TCP6, map[bool]string{false: "UDP", true: "TCP"}[noUDP], family)
	}
	code, err := botsProc.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("cascade bots: exit %d (%v):\n%s", code, err, botsProc.Output())
	}
	var rep bots.Report
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.TracksReceived != rep.TracksExpected || rep.PacketsReceived == 0 {
		t.Fatalf("bots over %s (UDP blocked: %v): %v; %d of %d tracks, %d packets received",
			family, noUDP, rep.Problems(), rep.TracksReceived, rep.TracksExpected, rep.PacketsReceived)
	}
	after, err := stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("over %s (UDP blocked: %v): %d tracks, %d packets received by the subscribers (loss %.2f %%); the node forwarded %d packets; transports udp4 %d udp6 %d tcp4 %d tcp6 %d",
		family, noUDP, rep.TracksReceived, rep.PacketsReceived, rep.LossPct, after.Workers[0].Packets, w.UDP4, w.UDP6, w.TCP4, w.TCP6)
	if after.Workers[0].Packets < uint64(rep.PacketsReceived) {
		t.Errorf("the node counted %d forwarded packets, fewer than the subscribers received (%d)", after.Workers[0].Packets, rep.PacketsReceived)
	}
}

// nodeStats is what the lab tests read of a node's /stats.
type nodeStats struct {
	Consumers int64         `json:"consumers"`
	Workers   []workerStats `json:"workers"`
}

// workerStats is what the lab tests read of a worker's stats.
type workerStats struct {
	Packets uint64 `json:"forwarded_packets"`
	UDP4    int64  `json:"transports_udp4"`
	UDP6    int64  `json:"transports_udp6"`
	TCP4    int64  `json:"transports_tcp4"`
	TCP6    int64  `json:"transports_tcp6"`
}

// getStats reads the /stats of the node on host n (HTTP port 7880, one worker) over a
// connection made on from, with an admin token.
func getStats(from, n *harness.Host, admin string) (nodeStats, error) {
	var s nodeStats
	if err := from.GetJSONAuth("http://"+net.JoinHostPort(n.Addr().String(), "7880")+"/stats", admin, &s); err != nil {
		return s, err
	}
	if len(s.Workers) != 1 {
		return s, fmt.Errorf("/stats: %d workers, want 1", len(s.Workers))
	}
	return s, nil
}
