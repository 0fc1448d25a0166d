package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
)

// TestFaultICETCPWhenUDPBlocked is a viewer on a network that drops all UDP (nftables on its
// link, both directions): a `cascade node` process on one host, `cascade bots` (the Go client,
// one publisher and two subscribers) on another whose UDP is blocked. The bots connect over
// ICE-TCP to the node's --tcp-port and every subscriber receives media; the node counts every
// transport as TCP, none as UDP, and its forwarded-packet counter grows.
func TestFaultICETCPWhenUDPBlocked(t *testing.T) {
	lab := harness.New(t)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	const key, secret = "lab", "lab-secret-0123456789abcdef"
	bin := harness.Cascade(t)
	node := nodeHost.Start(t, "node", bin, "node", "--http", ":7880", "--udp-port", "7882", "--tcp-port", "7882",
		"--public-ip", nodeHost.Addr().String(), "--workers", "1", "--api-key", key, "--api-secret", secret, "--log-level", "warn")
	url := "ws://" + net.JoinHostPort(nodeHost.Addr().String(), "7880")
	stats := func() (nodeStats, error) { return getStats(viewer, nodeHost) }
	harness.Eventually(t, 20*time.Second, func() error {
		if code, err := node.Wait(0); err == nil {
			t.Fatalf("node exited %d:\n%s", code, node.Output())
		}
		_, err := stats()
		return err
	})

	viewer.BlockUDP()
	out := filepath.Join(t.TempDir(), "report.json")
	botsProc := viewer.Start(t, "bots", bin, "bots", "--url", url, "--room", "tcp", "--publishers", "1", "--subscribers", "2",
		"--duration", "4s", "--join-timeout", "20s", "--max-stall", "2s", "--api-key", key, "--api-secret", secret, "--quiet", "--json", out)
	var during nodeStats
	harness.Eventually(t, 30*time.Second, func() error {
		s, err := stats()
		if err != nil {
			return err
		}
		w := s.Workers[0]
		if s.Consumers < 4 || w.Packets == 0 || w.TCP4 < 3 { // 2 subscribers x (video, audio); 1 send + 2 receive transports
			return fmt.Errorf("node: %d consumers, %d packets forwarded, %d transports over TCP", s.Consumers, w.Packets, w.TCP4)
		}
		during = s
		return nil
	})
	if w := during.Workers[0]; w.UDP4 != 0 {
		t.Errorf("node: %d transports over UDP from a viewer whose UDP is blocked", w.UDP4)
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
		t.Fatalf("bots over ICE-TCP: %v; %d of %d tracks, %d packets received", rep.Problems(), rep.TracksReceived, rep.TracksExpected, rep.PacketsReceived)
	}
	after, err := stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("over ICE-TCP: %d tracks, %d packets received by the subscribers (loss %.2f %%); the node forwarded %d packets, %d transports over TCP at most",
		rep.TracksReceived, rep.PacketsReceived, rep.LossPct, after.Workers[0].Packets, during.Workers[0].TCP4)
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

// getStats reads the /stats of the node on host n (HTTP port 7880) over a connection made on from.
func getStats(from, n *harness.Host) (nodeStats, error) {
	var s nodeStats
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = from.Do(func() error { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		}}}
	resp, err := client.Get("http://" + net.JoinHostPort(n.Addr().String(), "7880") + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("/stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, err
	}
	if len(s.Workers) != 1 {
		return s, fmt.Errorf("/stats: %d workers, want 1", len(s.Workers))
	}
	return s, nil
}
