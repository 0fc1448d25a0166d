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
)

// TestFaultIPv6 is an IPv6-only viewer: a `cascade node` process on one host advertising both
// of its addresses (--public-ip IPv4,IPv6), `cascade bots` (one publisher, two subscribers) on
// another with --networks udp6, joining the node at its IPv6 address. Every subscriber receives
// media, and the node counts every transport as UDP over IPv6, none over IPv4 or TCP.
//
// The bots offer UDP only: with udp6,tcp6 and UDP open, the client now and then nominates a TCP
// pair whose check finished first (pion nominates the best pair valid at that moment: its host
// acceptance min wait is 0), so "all over UDP" would not hold; TestFaultIPv6ICETCPWhenUDPBlocked
// covers udp6,tcp6.
func TestFaultIPv6(t *testing.T) {
	testIPv6Viewer(t, false)
}

// TestFaultIPv6ICETCPWhenUDPBlocked is TestFaultIPv6 on a network that drops all UDP, with bots
// that offer both protocols over IPv6 (--networks udp6,tcp6): they fall back to ICE-TCP on
// IPv6, and the node counts every transport as TCP over IPv6.
func TestFaultIPv6ICETCPWhenUDPBlocked(t *testing.T) {
	testIPv6Viewer(t, true)
}

func testIPv6Viewer(t *testing.T, noUDP bool) {
	lab := harness.New(t)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	const key, secret = "lab", "lab-secret-0123456789abcdef"
	bin := harness.Cascade(t)
	node := nodeHost.Start(t, "node", bin, "node", "--http", ":7880", "--udp-port", "7882", "--tcp-port", "7882",
		"--public-ip", nodeHost.Addr().String()+","+nodeHost.Addr6().String(), "--workers", "1",
		"--api-key", key, "--api-secret", secret, "--log-level", "warn")
	url := "ws://" + net.JoinHostPort(nodeHost.Addr6().String(), "7880")
	stats := func() (nodeStats, error) { return getStats(viewer, nodeHost) }
	harness.Eventually(t, 20*time.Second, func() error {
		if code, err := node.Wait(0); err == nil {
			t.Fatalf("node exited %d:\n%s", code, node.Output())
		}
		_, err := stats()
		return err
	})

	networks := "udp6"
	if noUDP {
		viewer.BlockUDP()
		networks = "udp6,tcp6"
	}
	out := filepath.Join(t.TempDir(), "report.json")
	botsProc := viewer.Start(t, "bots", bin, "bots", "--url", url, "--networks", networks, "--room", "v6",
		"--publishers", "1", "--subscribers", "2", "--duration", "4s", "--join-timeout", "20s", "--max-stall", "2s",
		"--api-key", key, "--api-secret", secret, "--quiet", "--json", out)
	want := func(w workerStats) int64 { return w.UDP6 }
	if noUDP {
		want = func(w workerStats) int64 { return w.TCP6 }
	}
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
	if other := w.UDP4 + w.UDP6 + w.TCP4 + w.TCP6 - want(w); w.UDP4 != 0 || w.TCP4 != 0 || other != 0 {
		t.Errorf("node: transports udp4 %d udp6 %d tcp4 %d tcp6 %d; want all on %s over IPv6",
			w.UDP4, w.UDP6, w.TCP4, w.TCP6, map[bool]string{false: "UDP", true: "TCP"}[noUDP])
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
		t.Fatalf("bots over IPv6: %v; %d of %d tracks, %d packets received", rep.Problems(), rep.TracksReceived, rep.TracksExpected, rep.PacketsReceived)
	}
	after, err := stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("over IPv6 (UDP blocked: %v): %d tracks, %d packets received by the subscribers (loss %.2f %%); the node forwarded %d packets; transports udp6 %d, tcp6 %d",
		noUDP, rep.TracksReceived, rep.PacketsReceived, rep.LossPct, after.Workers[0].Packets, w.UDP6, w.TCP6)
	if after.Workers[0].Packets < uint64(rep.PacketsReceived) {
		t.Errorf("the node counted %d forwarded packets, fewer than the subscribers received (%d)", after.Workers[0].Packets, rep.PacketsReceived)
	}
}
