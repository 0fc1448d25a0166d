package web_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/internal/harness"
)

// TestE2EBrowserRelaysOverTURNTCP: a node process on one lab host with its TURN server on TCP,
// and headless Chromium on another host, in that host's network namespace, where nftables drops
// every UDP datagram: two tabs with iceTransportPolicy "relay" (the demo page's ?relay=1) send
// and decode video through TURN over TCP. TURN/TLS is not driven in Chromium here: trusting a
// test CA needs certutil (libnss3-tools), which .ci/run does not install; the Go client covers
// TURN/TLS (turnsrv, TestRelayOverTCPAndTLSWhenUDPIsBlocked).
func TestE2EBrowserRelaysOverTURNTCP(t *testing.T) {
	chromium := requireChromium(t)
	lab := harness.New(t)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	const turnPort = 3478
	proc := nodeHost.Start(t, "node", harness.Cascade(t), "node", "--http", ":7880", "--udp-port", "7882",
		"--public-ip", nodeHost.Addr().String(), "--workers", "1", "--log-level", "warn", "--turn-tcp-port", fmt.Sprint(turnPort))
	base := "http://" + net.JoinHostPort(nodeHost.Addr().String(), "7880")
	harness.Eventually(t, 20*time.Second, func() error {
		if code, err := proc.Wait(0); err == nil {
			t.Fatalf("the node exited %d:\n%s", code, proc.Output())
		}
		var c net.Conn
		err := viewer.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", net.JoinHostPort(nodeHost.Addr().String(), "7880"), time.Second)
			return err
		})
		if err == nil {
			c.Close()
		}
		return err
	})
	ctx := context.Background()
	// A default route, so that Chromium finds its "public" interface; then no UDP at all.
	for _, cmd := range [][]string{{"ip", "route", "add", "default", "dev", "eth0"},
		{"nft", "add rule netdev harness cut ip protocol udp counter drop"}} {
		if out, err := viewer.Run(ctx, cmd...); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	// Chromium runs in the viewer's namespace.
	wrapper := filepath.Join(t.TempDir(), "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", viewer.Netns(), chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	browser := startBrowser(t, wrapper, chromedp.Flag("unsafely-treat-insecure-origin-as-secure", base),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE "+nodeHost.Addr().String()))

	alice, bob := newTab(t, browser, "alice"), newTab(t, browser, "bob")
	tabs := []*tab{alice, bob}
	t.Cleanup(func() {
		if t.Failed() {
			for _, tb := range tabs {
				tb.dump(t)
			}
		}
	})
	for _, tb := range tabs {
		ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/?room=turn&identity="+tb.name+"&autojoin=1&relay=1"))
		cancel()
		if err != nil {
			t.Fatalf("%s: open the page: %v", tb.name, err)
		}
	}
	got := waitForMedia(t, time.Now().Add(45*time.Second), alice, bob)
	for _, tb := range tabs {
		s := got[tb]
		t.Logf("%s: framesDecoded %d, recv pairs %+v, send pairs %+v", tb.name, s.FramesDecoded, s.SelectedPairs, s.SendSelectedPairs)
		for _, p := range append(append([]pair(nil), s.SelectedPairs...), s.SendSelectedPairs...) {
			if p.LocalType != "relay" || p.RelayProtocol != "tcp" {
				t.Errorf("%s: selected pair %+v, want a relay candidate over TCP", tb.name, p)
			}
		}
	}
	out, err := viewer.Run(ctx, "nft", "list chain netdev harness cut")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("viewer's UDP drop rule: %s", out)
}
