package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/web"
)

// chromiumPath is the browser the end-to-end tests drive; CASCADE_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("CASCADE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// requireChromium skips the test loudly when there is no browser, and fails it under CI.
func requireChromium(t *testing.T) string {
	t.Helper()
	p := chromiumPath()
	_, err := exec.LookPath(p)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("NO BROWSER: %s not found (%v); install it with `apt-get install -y --no-install-recommends chromium` "+
		"or set CASCADE_CHROMIUM", p, err)
	if os.Getenv("CI") == "true" || !errors.Is(err, os.ErrNotExist) {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// testLogWriter sends log lines to t.Log until the test ends (a late line from a goroutine
// would otherwise panic).
type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func newTestLogWriter(t *testing.T) *testLogWriter {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startServer runs a loopback-only node and its signaling server (with the dev key pair and the
// /token endpoint) behind an httptest server.
func startServer(t *testing.T) *httptest.Server {
	t.Helper()
	hs, _, _, _ := startNode(t, node.Options{Workers: 2}, nil)
	return hs
}

// startNode starts a node with o (loopback media, test logs); with nats it starts NATS and the
// relay and joins the cluster, wired as cmd/cascade wires them (nil: a single node). Each of with
// may change the signal options.
func startNode(t *testing.T, o node.Options, nats *cluster.NATSOptions, with ...func(*signal.Options)) (*httptest.Server, *cluster.NATS, *cluster.Cluster, *cluster.Viewer) {
	t.Helper()
	level := hclog.Warn
	if testing.Verbose() {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "e2e", Level: level, Output: newTestLogWriter(t)})
	o.LoopbackOnly, o.Logger = true, logger
	hs := httptest.NewUnstartedServer(nil)
	o.HTTPURL = "http://" + hs.Listener.Addr().String()
	n, err := node.New(o)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	so := signal.Options{
		Keys:      auth.Keys{Key: auth.DevKey, Secret: auth.DevSecret},
		DevTokens: true,
		Web:       web.Handler(),
		Logger:    logger,
	}
	var nc *cluster.NATS
	var c *cluster.Cluster
	var v *cluster.Viewer
	if nats != nil {
		no := *nats
		no.Name, no.Logger, no.StoreDir = n.ID(), logger, t.TempDir()
		if nc, err = cluster.StartNATS(no); err != nil {
			t.Fatalf("cluster.StartNATS: %v", err)
		}
		pipes, err := relay.Open(relay.Options{Self: n.ID(), Region: o.Region, Producers: n, Logger: logger})
		if err != nil {
			t.Fatalf("relay.Open: %v", err)
		}
		if c, err = cluster.New(n, pipes, nc.Bus(), cluster.Options{Logger: logger, Secrets: cluster.Secrets{cluster.DevClusterSecret}}); err != nil {
			t.Fatalf("cluster.New: %v", err)
		}
		t.Cleanup(nc.Close)
		t.Cleanup(pipes.Close)
		t.Cleanup(c.Close)
		v = cluster.NewViewer(cluster.NewAPI(c))
		so.Cluster, so.Placement, so.Ready = v, cluster.NewPlacer(c), nc.Ready
	}
	for _, f := range with {
		f(&so)
	}
	t.Cleanup(n.Close)
	srv := signal.NewServer(n, so)
	hs.Config.Handler = srv.Handler()
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	return hs, nc, c, v
}

// startBrowser starts headless Chromium with fake media and loopback-only WebRTC, and returns
// the browser context: each chromedp.NewContext(browser) is a tab.
func startBrowser(t *testing.T, execPath string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("webrtc-ip-handling-policy", "default_public_interface_only"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout (that would end the browser).
	if err := chromedp.Do(browser); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			requireChromium(t)
		}
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// tab is one browser tab and what its page wrote to the console.
type tab struct {
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string
	errors  []string
}

// openTabs opens alice's and bob's tabs, each at url(its name) within timeout; both are dumped
// when the test fails.
func openTabs(t *testing.T, browser context.Context, timeout time.Duration, url func(name string) string) (alice, bob *tab) {
	t.Helper()
	alice, bob = newTab(t, browser, "alice"), newTab(t, browser, "bob")
	t.Cleanup(func() {
		if t.Failed() {
			alice.dump(t)
			bob.dump(t)
		}
	})
	for _, tb := range []*tab{alice, bob} {
		ctx, cancel := context.WithTimeout(tb.ctx, timeout)
		err := chromedp.Do(ctx, chromedp.Navigate(url(tb.name)))
		cancel()
		if err != nil {
			t.Fatalf("%s: open the page: %v", tb.name, err)
		}
	}
	return alice, bob
}

func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{name: name, ctx: ctx}
	messages := chromedp.Console(ctx) // subscribes now: nothing of the navigation is lost
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			line := fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m)
			tb.mu.Lock()
			tb.console = append(tb.console, line)
			if m.IsException() || m.Type == chromedp.ConsoleError {
				tb.errors = append(tb.errors, line)
			}
			tb.mu.Unlock()
		}
	}()
	return tb
}

func (tb *tab) jsErrors() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.errors...)
}

func (tb *tab) dump(t *testing.T) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, l := range tb.console {
		t.Logf("[%s console] %s", tb.name, l)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) in the tab, with a timeout.
func eval[T any](tb *tab, timeout time.Duration, js string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// checkFor polls cond every 200 ms until it reports done or the deadline passes; it then fails
// the test with the last reason cond gave.
func checkFor(t *testing.T, deadline time.Time, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type pair struct {
	Local         string `json:"local"`
	Remote        string `json:"remote"`
	LocalType     string `json:"localType"`     // host, srflx, prflx or relay
	RelayProtocol string `json:"relayProtocol"` // udp, tcp or tls for a relay candidate
}

type videoTrack struct {
	ProducerID    string `json:"producerId"`
	ParticipantID string `json:"participantId"`
	FramesDecoded int    `json:"framesDecoded"`
}

type pageStats struct {
	FramesDecoded     int          `json:"framesDecoded"`
	VideoTracks       []videoTrack `json:"videoTracks"`
	SelectedPairs     []pair       `json:"selectedPairs"`
	SendSelectedPairs []pair       `json:"sendSelectedPairs"`
	State             string       `json:"state"`
}

const statsJS = `window.cascadeApp ? window.cascadeApp.stats() : null`

// stats reads window.cascadeApp.stats(); a nil result means the page has not loaded yet.
func (tb *tab) stats() (*pageStats, string) {
	s, err := eval[*pageStats](tb, 5*time.Second, statsJS)
	if err != nil {
		return nil, fmt.Sprintf("%s: stats: %v", tb.name, err)
	}
	if s == nil {
		return nil, tb.name + ": page not loaded"
	}
	last, _ := eval[string](tb, 5*time.Second, `window.cascadeApp.lastError`)
	return s, fmt.Sprintf("%s: state %s, framesDecoded %d, pairs %v; page error %q", tb.name, s.State, s.FramesDecoded, s.SelectedPairs, last)
}

// waitForMedia waits until the tab decodes video from the node over a selected candidate pair
// on both of its transports, and returns the stats then.
func waitForMedia(t *testing.T, deadline time.Time, tabs ...*tab) map[*tab]*pageStats {
	t.Helper()
	got := map[*tab]*pageStats{}
	checkFor(t, deadline, "video decoded in every tab", func() (bool, string) {
		var why []string
		for _, tb := range tabs {
			s, reason := tb.stats()
			if s == nil || s.FramesDecoded == 0 || len(s.SelectedPairs) == 0 || len(s.SendSelectedPairs) == 0 {
				why = append(why, reason)
				continue
			}
			got[tb] = s
		}
		return len(why) == 0, strings.Join(why, "; ")
	})
	return got
}

func assertLoopback(t *testing.T, tb *tab, transport string, pairs []pair) {
	t.Helper()
	for _, p := range pairs {
		if p.Local != "127.0.0.1" || p.Remote != "127.0.0.1" {
			t.Errorf("%s: %s transport: selected candidate pair %s -> %s, want 127.0.0.1 -> 127.0.0.1", tb.name, transport, p.Local, p.Remote)
		}
	}
}

func TestE2EBrowsersSeeEachOther(t *testing.T) {
	execPath := requireChromium(t)
	hs := startServer(t)
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(30 * time.Second)

	// The demo page loads with its scripts and no JavaScript error.
	{
		page := newTab(t, browser, "page")
		ctx, cancel := context.WithTimeout(page.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(hs.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#join")))
		cancel()
		if err != nil {
			page.dump(t)
			t.Fatalf("load the demo page: %v", err)
		}
		ok, err := eval[bool](page, 5*time.Second,
			`typeof window.cascadeApp === "object" && typeof window.Cascade === "function" && typeof window.cascadeApp.join === "function"`)
		if err != nil || !ok {
			page.dump(t)
			t.Fatalf("the demo page did not set window.cascadeApp and window.Cascade: %v", err)
		}
		if errs := page.jsErrors(); len(errs) > 0 {
			t.Fatalf("JavaScript errors on the demo page:\n%s", strings.Join(errs, "\n"))
		}
	}

	alice, bob := openTabs(t, browser, 10*time.Second, func(name string) string {
		return hs.URL + "/?room=e2e&identity=" + name + "&autojoin=1"
	})
	tabs := []*tab{alice, bob}

	got := waitForMedia(t, deadline, alice, bob)
	for _, tb := range tabs {
		s := got[tb]
		t.Logf("%s: framesDecoded %d, recv pairs %v, send pairs %v", tb.name, s.FramesDecoded, s.SelectedPairs, s.SendSelectedPairs)
		assertLoopback(t, tb, "recv", s.SelectedPairs)
		assertLoopback(t, tb, "send", s.SendSelectedPairs)
	}

	// Each sees the other in the participant list.
	for _, c := range []struct {
		tb   *tab
		want string
	}{{alice, "bob"}, {bob, "alice"}} {
		checkFor(t, deadline, c.tb.name+" lists "+c.want, func() (bool, string) {
			ids, err := eval[[]string](c.tb, 5*time.Second, `window.cascadeApp.participants()`)
			if err != nil {
				return false, err.Error()
			}
			for _, id := range ids {
				if id == c.want {
					return true, ""
				}
			}
			return false, fmt.Sprintf("participants %v", ids)
		})
	}

	// Chat over signaling reaches the other tab, with the sender's identity.
	if _, err := eval[chromedp.Void](alice, 5*time.Second, `window.cascadeApp.client.sendMessage({text: "hello from alice"})`); err != nil {
		t.Fatalf("alice: sendMessage: %v", err)
	}
	checkFor(t, deadline, "bob gets alice's chat message", func() (bool, string) {
		msgs, err := eval[[]struct{ Identity, Text string }](bob, 5*time.Second, `window.cascadeApp.messages`)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range msgs {
			if m.Identity == "alice" && m.Text == "hello from alice" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("messages %+v", msgs)
	})

	// A data channel message from bob reaches alice on her receive transport.
	if _, err := eval[chromedp.Void](alice, 5*time.Second,
		`window.__data = []; window.cascadeApp.client.addEventListener("data", (e) => window.__data.push(String(e.detail.data)))`); err != nil {
		t.Fatal(err)
	}
	checkFor(t, deadline, "alice gets bob's data channel message", func() (bool, string) {
		// Send again each round: the data producer may still be on its way to alice's transport.
		if _, err := eval[chromedp.Void](bob, 5*time.Second, `window.cascadeApp.client.sendData("ping from bob")`); err != nil {
			return false, "bob: sendData: " + err.Error()
		}
		got, err := eval[[]string](alice, 5*time.Second, `window.__data`)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range got {
			if strings.Contains(d, "ping from bob") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alice's data messages %q", got)
	})

	// Reconnection: bob's page closes his WebSocket, which the node takes as a goodbye (a close
	// frame: his participant leaves at once). His client tries to resume, is refused (the
	// session is gone) and joins afresh as a new participant, rebuilds both transports and
	// republishes; video flows both ways again.
	before, err := eval[string](bob, 5*time.Second, `window.cascadeApp.client.participant.id`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eval[chromedp.Void](bob, 5*time.Second, `window.cascadeApp.client._ws.close()`); err != nil {
		t.Fatalf("bob: drop the WebSocket: %v", err)
	}
	reconnectDeadline := time.Now().Add(20 * time.Second)
	checkFor(t, reconnectDeadline, "bob rejoins as a new participant", func() (bool, string) {
		id, err := eval[string](bob, 5*time.Second, `(window.cascadeApp.client && window.cascadeApp.client.state === "connected" && window.cascadeApp.client.participant) ? window.cascadeApp.client.participant.id : ""`)
		if err != nil {
			return false, err.Error()
		}
		return id != "" && id != before, fmt.Sprintf("participant id %q (was %q)", id, before)
	})
	after, err := eval[string](bob, 5*time.Second, `window.cascadeApp.client.participant.id`)
	if err != nil {
		t.Fatal(err)
	}
	got = waitForMedia(t, reconnectDeadline, alice, bob)
	// alice's total counts bob's first video too: wait for frames of his new producer.
	checkFor(t, reconnectDeadline, "alice decodes bob's republished video", func() (bool, string) {
		s, why := alice.stats()
		if s == nil {
			return false, why
		}
		for _, v := range s.VideoTracks {
			if v.ParticipantID == after && v.FramesDecoded > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alice's video tracks %+v, bob is now %s", s.VideoTracks, after)
	})
	for _, tb := range tabs {
		assertLoopback(t, tb, "recv", got[tb].SelectedPairs)
		assertLoopback(t, tb, "send", got[tb].SendSelectedPairs)
	}

	for _, tb := range tabs {
		if errs := tb.jsErrors(); len(errs) > 0 {
			t.Errorf("%s: JavaScript errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
}

// TestE2EBrowsersAcrossNodes: two browsers on two nodes of one cluster (their embedded NATS
// servers routed together) see each other through the relay link.
func TestE2EBrowsersAcrossNodes(t *testing.T) {
	execPath := requireChromium(t)
	hsA, nA, cA, vA := startNode(t, node.Options{ID: "a", Workers: 1}, &cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret}})
	hsB, _, cB, _ := startNode(t, node.Options{ID: "b", Workers: 1}, &cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret},
		Routes: []string{nA.RouteURL()}})
	deadline := time.Now().Add(40 * time.Second)
	checkFor(t, deadline, "the nodes see each other", func() (bool, string) {
		return len(cA.Peers()) == 1 && len(cB.Peers()) == 1, "peers missing"
	})
	browser := startBrowser(t, execPath)
	alice, bob := openTabs(t, browser, 10*time.Second, func(name string) string {
		hs := hsA // alice on node a, bob on node b
		if name == "bob" {
			hs = hsB
		}
		return hs.URL + "/?room=across&identity=" + name + "&autojoin=1"
	})
	got := waitForMedia(t, deadline, alice, bob)
	for _, tb := range []*tab{alice, bob} {
		t.Logf("%s: framesDecoded %d", tb.name, got[tb].FramesDecoded)
		assertLoopback(t, tb, "recv", got[tb].SelectedPairs)
	}
	if links := vA.View().Links; len(links) != 1 || links[0] != "b" {
		t.Fatalf("node a relay links %v, want [b]", links)
	}
}
