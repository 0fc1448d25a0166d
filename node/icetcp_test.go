package node_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// tcpStates counts the sockets of this host whose local port is port (the node's ICE-TCP
// listener: its accepted connections), by state, from /proc/net/tcp (state 01: established,
// 0A: listening; anything else: closing or closed).
func tcpStates(t *testing.T, port int) map[string]int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no /proc/net/tcp: %v (CI=true makes this a failure)", err)
		}
		t.Skipf("SKIPPED: no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	states := map[string]int{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 4 || fields[0] == "sl" {
			continue
		}
		_, p, ok := strings.Cut(fields[1], ":")
		if v, err := strconv.ParseUint(p, 16, 16); ok && err == nil && int(v) == port {
			states[fields[3]]++
		}
	}
	return states
}

// accepted counts the listener's accepted connections in any state (closed ones stay in
// TIME_WAIT for a minute) and the established ones among them.
func accepted(t *testing.T, port int) (all, established int, states map[string]int) {
	t.Helper()
	states = tcpStates(t, port)
	for state, k := range states {
		if state != "0A" {
			all += k
		}
	}
	return all, states["01"], states
}

// TestICETCPReleasedAfterUDP: a subscriber that can use UDP and TCP connects to the node's
// ICE-TCP candidate too while ICE checks its pairs; once UDP is selected the node closes that
// connection (none of the listener's accepted sockets stays established, and nothing counts it
// as refused), while the subscriber's media keeps flowing over UDP. Whether a client dials TCP
// before ICE completes over UDP is a race the client may win under load: up to five subscribers
// join until one did. TestICETCPSubscriber keeps a TCP-only subscriber.
func TestICETCPReleasedAfterUDP(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	port := n.TCPAddr().(*net.TCPAddr).Port
	publish(t, n, clientAPI(t), "r")
	var both *testSubscriber
	for i := 0; both == nil; i++ {
		if i == 5 {
			_, _, st := accepted(t, port)
			t.Fatalf("none of 5 subscribers connected to the ICE-TCP listener (states %v): nothing was tested", st)
		}
		s := subscribe(t, n, pathAPI(t, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4), "r", fmt.Sprint("both", i), false)
		receives(t, map[string]*testSubscriber{"both": s})
		if all, _, _ := accepted(t, port); all > 0 {
			both = s
		}
	}
	if p := selectedPair(t, both.pc); p.Local.Protocol != webrtc.ICEProtocolUDP {
		t.Fatalf("the subscriber's selected pair %s, want UDP", p)
	}
	checkFor(t, 15*time.Second, func() error {
		if _, est, st := accepted(t, port); est > 0 {
			return fmt.Errorf("%d ICE-TCP connections still established after UDP was selected (states %v)", est, st)
		}
		return nil
	})
	if got := metricSum(t, reg, "cascade_ice_tcp_refused_total", nil); got != 0 {
		t.Fatalf("cascade_ice_tcp_refused_total = %v: a released connection counted as refused", got)
	}
	before := both.packets.Load()
	checkFor(t, 5*time.Second, func() error {
		if got := both.packets.Load() - before; got < 50 {
			return fmt.Errorf("%d packets since the TCP connection closed", got)
		}
		return nil
	})
}
