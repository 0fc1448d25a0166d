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

// TestICETCPReleasedAfterUDP: a subscriber that can use UDP and TCP connects to the node's
// ICE-TCP candidate too while ICE checks its pairs; once UDP is selected the node closes that
// connection (none of the listener's accepted sockets stays established), while the
// subscriber's media keeps flowing over UDP. TestICETCPSubscriber keeps a TCP-only subscriber.
func TestICETCPReleasedAfterUDP(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	port := n.TCPAddr().(*net.TCPAddr).Port
	publish(t, n, clientAPI(t), "r")
	both := subscribe(t, n, pathAPI(t, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4), "r", "both", false)
	receives(t, map[string]*testSubscriber{"both": both})
	if p := selectedPair(t, both.pc); p.Local.Protocol != webrtc.ICEProtocolUDP {
		t.Fatalf("the subscriber's selected pair %s, want UDP", p)
	}
	checkFor(t, 15*time.Second, func() error {
		st := tcpStates(t, port)
		accepted := 0
		for state, k := range st {
			if state != "0A" {
				accepted += k
			}
		}
		if accepted == 0 {
			return fmt.Errorf("the subscriber never connected to the ICE-TCP listener (states %v)", st)
		}
		if st["01"] > 0 {
			return fmt.Errorf("%d ICE-TCP connections still established after UDP was selected (states %v)", st["01"], st)
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
