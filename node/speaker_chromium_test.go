package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/talker"
	"github.com/cascade-sfu/cascade/node"
	"github.com/chromedp/chromedp"
)

// chromium is the browser's path (CASCADE_CHROMIUM overrides it); a missing browser skips the
// test loudly, and fails it under CI.
func chromium(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CASCADE_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	_, err := exec.LookPath(p)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("NO BROWSER: %s not found (%v); install it with `apt-get install -y --no-install-recommends chromium` or set CASCADE_CHROMIUM", p, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// TestChromiumSpeaks: a real browser's audio levels. Chromium publishes its fake microphone (a
// beep about a third of the time, every packet flagged as voice) straight to the node; a
// listener hears it as the one active speaker, once (it does not flap); when the browser
// disables the track (it then sends silence), the listener hears the empty list.
func TestChromiumSpeaks(t *testing.T) {
	path := chromium(t)
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	heard := talker.Listen(t, n, "r", "listener")
	p, err := n.Join("r", "chromium", node.Grant{Publish: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	// A page of its own origin: getUserMedia needs one (about:blank has no mediaDevices).
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "<!doctype html><title>speaker</title>")
	}))
	t.Cleanup(page.Close)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("headless", "new"), chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-extensions", true),
		chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("webrtc-ip-handling-policy", "default_public_interface_only"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"))
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(tab); err != nil { // starts the browser: without a timeout
		if errors.Is(err, os.ErrNotExist) {
			chromium(t)
		}
		t.Fatalf("start chromium: %v", err)
	}
	run := func(what string, action chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, action); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	run("open the page", chromedp.Navigate(page.URL))
	offer := eval("offer", `(async () => {
		const stream = await navigator.mediaDevices.getUserMedia({audio: true});
		window.track = stream.getAudioTracks()[0];
		window.pc = new RTCPeerConnection();
		pc.addTransceiver(track, {direction: 'sendonly'});
		await pc.setLocalDescription(await pc.createOffer());
		await new Promise(done => {
			if (pc.iceGatheringState === 'complete') done();
			pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
		});
		return pc.localDescription.sdp;
	})()`)
	answer, _, err := p.Publish(offer, true)
	if err != nil {
		t.Fatal(err)
	}
	eval("answer", fmt.Sprintf(`pc.setRemoteDescription({type: 'answer', sdp: %q}).then(() => 'ok')`, answer))

	next := heard.Wait(t, "listener", 0, p.ID())
	time.Sleep(3 * time.Second) // the beep goes on: the list must not change
	if heard.Count() != next {
		t.Fatalf("the fake microphone's speech flapped: %s", heard)
	}
	eval("mute", `(() => { track.enabled = false; return 'ok'; })()`)
	heard.Wait(t, "listener", next, "")
	if err := heard.Check(); err != nil {
		t.Fatal(err)
	}
}
