package web_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/internal/testca"
)

// TestE2EBrowserRelaysOverTURNTCP: a node process on one lab host with its TURN server on TCP,
// and headless Chromium on another host, in that host's network namespace, where nftables drops
// every UDP datagram: two tabs with iceTransportPolicy "relay" (the demo page's ?relay=1) send
// and decode video through TURN over TCP.
func TestE2EBrowserRelaysOverTURNTCP(t *testing.T) {
	browserOverTURN(t, requireChromium(t), "tcp", "")
}

// TestE2EBrowserRelaysOverTURNTLS: as TestE2EBrowserRelaysOverTURNTCP, with the TURN server on
// TCP and on TLS (a certificate of a test CA for the node's address) and the viewer's TCP to the
// TURN/TCP port dropped too, so that only turns: can work: Chromium, whose NSS database (in a
// HOME of its own) trusts the test CA, plays through TURN over TLS.
func TestE2EBrowserRelaysOverTURNTLS(t *testing.T) {
	chromium := requireChromium(t)
	browserOverTURN(t, chromium, "tls", requireCertutil(t))
}

// requireCertutil skips the test loudly when NSS's certutil is missing, and fails it under CI.
func requireCertutil(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("certutil")
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("NO CERTUTIL: %v; install it with `apt-get install -y --no-install-recommends libnss3-tools`", err)
	if os.Getenv("CI") == "true" || !errors.Is(err, exec.ErrNotFound) {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// trustingHome makes a home directory whose NSS database ($HOME/.pki/nssdb, where Chromium on
// Linux looks) trusts caPath to identify servers, and returns it. Only that new database is
// written: every certutil call names it.
func trustingHome(t *testing.T, certutil, caPath string) string {
	t.Helper()
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-d", "sql:" + db, "-N", "--empty-password"},
		{"-d", "sql:" + db, "-A", "-t", "C,,", "-n", "cascade test CA", "-i", caPath},
	} {
		cmd := exec.Command(certutil, args...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v: %s", args, err, out)
		}
	}
	out, err := exec.Command(certutil, "-d", "sql:"+db, "-L").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cascade test CA") {
		t.Fatalf("certutil -L: the test CA is not in %s (%v):\n%s", db, err, out)
	}
	return home
}

// browserOverTURN runs two Chromium tabs on a lab host whose UDP is dropped, with the relay
// policy, against a node with TURN over proto ("tcp" or "tls"; certutil is needed for "tls"),
// and checks that both play through a relay candidate over proto.
func browserOverTURN(t *testing.T, chromium, proto, certutil string) {
	t.Helper()
	lab := harness.New(t)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	const turnTCPPort, turnTLSPort = 3478, 5349
	args := []string{"node", "--dev", "--http", ":7880", "--udp-port", "7882", "--public-ip", nodeHost.Addr().String(),
		"--workers", "1", "--log-level", "warn", "--turn-tcp-port", fmt.Sprint(turnTCPPort)}
	home := ""
	if proto == "tls" {
		certs := testca.Write(t, t.TempDir(), net.IP(nodeHost.Addr().AsSlice()), "turn.cascade.test")
		args = append(args, "--turn-tls-port", fmt.Sprint(turnTLSPort), "--turn-cert", certs.Cert, "--turn-key", certs.Key)
		home = trustingHome(t, certutil, certs.CA)
		// TURN/TCP is offered too, and dropped: only TURN/TLS gets through.
		viewer.BlockPort("tcp", turnTCPPort)
	}
	proc := nodeHost.Start(t, "node", harness.Cascade(t), args...)
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
	env := ""
	if home != "" {
		env = "HOME=" + home + " " // Chromium reads $HOME/.pki/nssdb
	}
	script := fmt.Sprintf("#!/bin/sh\nexec env %sip netns exec %s %s \"$@\"\n", env, viewer.Netns(), chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	browser := startBrowser(t, wrapper, chromedp.Flag("unsafely-treat-insecure-origin-as-secure", base),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE "+nodeHost.Addr().String()))

	alice, bob := openTabs(t, browser, 15*time.Second, func(name string) string {
		return base + "/?room=turn-" + proto + "&identity=" + name + "&autojoin=1&relay=1"
	})
	tabs := []*tab{alice, bob}
	got := waitForMedia(t, time.Now().Add(45*time.Second), alice, bob)
	for _, tb := range tabs {
		s := got[tb]
		t.Logf("%s: framesDecoded %d, recv pairs %+v, send pairs %+v", tb.name, s.FramesDecoded, s.SelectedPairs, s.SendSelectedPairs)
		for _, p := range append(append([]pair(nil), s.SelectedPairs...), s.SendSelectedPairs...) {
			if p.LocalType != "relay" || p.RelayProtocol != proto {
				t.Errorf("%s: selected pair %+v, want a relay candidate over %s", tb.name, p, proto)
			}
		}
	}
	out, err := viewer.Run(ctx, "nft", "list chain netdev harness cut")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("viewer's UDP drop rule: %s", out)
}
