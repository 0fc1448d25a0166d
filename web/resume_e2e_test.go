package web_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/harness"
)

// procNode is a `cascade node` process on loopback: killed with SIGKILL it vanishes without a
// goodbye, as a crashed machine's node does (its TCP connections are reset by the kernel, its
// UDP goes silent).
type procNode struct {
	id, region string
	http       string // http://127.0.0.1:port
	cmd        *exec.Cmd
	log        string
	done       chan struct{}
}

func (p *procNode) ws() string { return "ws" + strings.TrimPrefix(p.http, "http") + "/ws" }

// kill sends SIGKILL and waits for the process to be gone.
func (p *procNode) kill(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("node %s still running 10 s after SIGKILL", p.id)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startProcCluster starts one loopback-only `cascade node` process per region, as one cluster
// (their embedded NATS servers routed to each other, the development secrets), and waits until
// each sees all the others.
func startProcCluster(t *testing.T, regions ...string) []*procNode {
	t.Helper()
	bin := harness.Cascade(t)
	ports := freePorts(t, 4*len(regions))
	var nodes []*procNode
	for i, region := range regions {
		httpPort, natsPort, routePort, relayPort := ports[4*i], ports[4*i+1], ports[4*i+2], ports[4*i+3]
		var routes []string
		for j := range regions {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[4*j+2]))
			}
		}
		id := fmt.Sprintf("n%d", i)
		args := []string{"node", "--dev", "--loopback-only", "--node-id", id, "--region", region, "--workers", "1",
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--udp-port", "0", "--tcp-port", "-1",
			"--relay", fmt.Sprintf("127.0.0.1:%d", relayPort),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--nats-cluster", fmt.Sprintf("127.0.0.1:%d", routePort),
			"--nats-routes", strings.Join(routes, ","), "--heartbeat-interval", "500ms", "--heartbeat-timeout", "2s",
			"--log-level", "info"}
		p := &procNode{id: id, region: region, http: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
			log: filepath.Join(t.TempDir(), id+".log"), done: make(chan struct{})}
		out, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(bin, args...)
		p.cmd.Stdout, p.cmd.Stderr = out, out
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start node %s: %v", id, err)
		}
		go func() {
			_ = p.cmd.Wait()
			out.Close()
			close(p.done)
		}()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
			if t.Failed() {
				b, _ := os.ReadFile(p.log)
				t.Logf("output of node %s:\n%s", p.id, b)
			}
		})
		nodes = append(nodes, p)
	}
	admin := adminToken(t)
	checkFor(t, time.Now().Add(60*time.Second), "the nodes form one cluster", func() (bool, string) {
		var why []string
		for _, p := range nodes {
			var v cluster.View
			if err := getAdmin(p.http+"/cluster?format=json", admin, &v); err != nil {
				why = append(why, p.id+": "+err.Error())
				continue
			}
			if len(v.Nodes) != len(nodes) {
				why = append(why, fmt.Sprintf("%s sees %d nodes", p.id, len(v.Nodes)))
			}
			if resp, err := http.Get(p.http + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
				why = append(why, p.id+" not ready")
			} else {
				resp.Body.Close()
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	})
	return nodes
}

// openPage opens the demo page in a new tab (dumped when the test fails).
func openPage(t *testing.T, tb *tab, url string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			tb.dump(t)
		}
	})
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open the page: %v", tb.name, err)
	}
}

// recordSockets makes the tab record the URL of every WebSocket it opens (window.__sockets).
const recordSockets = `(() => {
  if (window.__sockets) return;
  window.__sockets = [];
  const WS = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    window.__sockets.push({ url: String(url), at: Date.now() });
    return protocols === undefined ? new WS(url) : new WS(url, protocols);
  };
  window.WebSocket.prototype = WS.prototype;
})()`

// watchedVideo is what the test reads of the <video> element it watches.
type watchedVideo struct {
	Same        bool     `json:"same"` // the same element, in the page, with the same srcObject
	Frames      int      `json:"frames"`
	State       string   `json:"state"`
	Participant string   `json:"participant"`
	URL         string   `json:"url"`
	States      []string `json:"states"`
	Resumed     int      `json:"resumed"`
	Replaced    int      `json:"replaced"`
	Migrated    int      `json:"migrated"`
	MaxGapMs    float64  `json:"maxGapMs"`
}

// watchVideo picks the page's first remote <video> element with frames, and records the
// client's states and resume events from now on.
const watchVideo = `(() => {
  const v = [...document.querySelectorAll(".tile.remote video")].find((e) => e.srcObject && e.getVideoPlaybackQuality().totalVideoFrames > 0);
  if (!v) return false;
  window.__video = v;
  window.__src = v.srcObject;
  window.__states = [];
  window.__resumed = 0;
  window.__replaced = 0;
  window.__migrated = 0;
  // The longest time between two frames the element presented (logged, not asserted).
  window.__maxGap = 0;
  let last = 0;
  const onFrame = (now) => {
    if (last && now - last > window.__maxGap) {
      window.__maxGap = now - last;
      window.__gapAt = [Math.round(performance.timeOrigin + last), Math.round(performance.timeOrigin + now)];
    }
    last = now;
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
  const c = window.cascadeApp.client;
  window.__log = [];
  for (const type of ["state", "migrate", "resumed", "trackReplaced", "transportState"]) {
    c.addEventListener(type, (e) => window.__log.push(Date.now() + " " + type + " " + (e.detail.state || e.detail.kind || "")));
  }
  c.addEventListener("state", (e) => window.__states.push(e.detail.state));
  c.addEventListener("resumed", (e) => { window.__resumed++; if (e.detail.migrated) window.__migrated++; });
  c.addEventListener("trackReplaced", () => window.__replaced++);
  return true;
})()`

const readVideo = `(() => {
  const v = window.__video, c = window.cascadeApp.client;
  return {
    same: !!v && document.contains(v) && v.srcObject === window.__src && window.__src.getVideoTracks().length === 1,
    frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
    state: c ? c.state : "none",
    participant: c && c.participant ? c.participant.id : "",
    url: c ? c.url : "",
    states: window.__states,
    resumed: window.__resumed,
    replaced: window.__replaced,
    migrated: window.__migrated,
    maxGapMs: window.__maxGap,
  };
})()`

// recordRoomEvents makes the tab count the room events that a resume must not cause.
const recordRoomEvents = `(() => {
  window.__room = [];
  const c = window.cascadeApp.client;
  for (const type of ["participantJoined", "participantLeft", "producerAdded", "producerRemoved"]) {
    c.addEventListener(type, (e) => window.__room.push(type + " " + (e.detail.id || "")));
  }
})()`

// TestE2EBrowserResumesAfterNodeKill: two nodes as separate processes (regions eu and us); a
// publishing tab on n0 (eu), a subscribing (and publishing) tab on n1 (us), which relays n0's
// video to it. n1 is killed with SIGKILL. The subscriber's existing <video> element, with the
// same srcObject, decodes frames again within seconds, without the page doing anything; its
// participant id is the same (the session resumed on n0), the page went through
// "reconnecting", and the publisher's tab saw no participant or producer leave or join. The
// subscriber reaches n1 either through placement (it joins n0, which sends it to its region)
// or directly (it then finds n0 in the join answer's nodes). Case "drain": n1 is stopped with
// SIGTERM instead; it drains, tells the tab to migrate, and the tab moves make-before-break.
func TestE2EBrowserResumesAfterNodeKill(t *testing.T) {
	for _, mode := range []string{"placement", "direct", "drain"} {
		t.Run(mode, func(t *testing.T) { resumeAfterKill(t, mode) })
	}
}

func resumeAfterKill(t *testing.T, mode string) {
	direct, drain := mode != "placement", mode == "drain"
	execPath := requireChromium(t)
	nodes := startProcCluster(t, "eu", "us")
	n0, n1 := nodes[0], nodes[1]
	browser := startBrowser(t, execPath)

	pub, sub := newTab(t, browser, "pub"), newTab(t, browser, "sub")
	openPage(t, pub, n0.http+"/?room=resume&identity=pub&region=eu&autojoin=1")
	// The subscriber's page comes from the node that stays (its token endpoint too); it joins
	// there (as through a load balancer) and placement sends it to n1, its region, or it joins
	// n1 directly.
	subURL := n0.http + "/?room=resume&identity=sub&region=us&autojoin=1"
	if direct {
		subURL += "&ws=" + n1.ws()
	}
	openPage(t, sub, subURL)

	deadline := time.Now().Add(40 * time.Second)
	checkFor(t, deadline, "sub on n1 decodes pub's video", func() (bool, string) {
		ok, err := eval[bool](sub, 5*time.Second, watchVideo)
		if err != nil {
			return false, err.Error()
		}
		s, why := sub.stats()
		if s == nil {
			return false, why
		}
		return ok, why
	})
	checkFor(t, deadline, "pub decodes sub's video", func() (bool, string) {
		s, why := pub.stats()
		return s != nil && s.FramesDecoded > 0, why
	})
	if _, err := eval[chromedp.Void](pub, 5*time.Second, recordRoomEvents); err != nil {
		t.Fatal(err)
	}
	before, err := eval[watchedVideo](sub, 5*time.Second, readVideo)
	if err != nil {
		t.Fatal(err)
	}
	if before.URL != n1.ws() {
		t.Fatalf("sub is on %s, want n1 (%s)", before.URL, n1.ws())
	}
	t.Logf("before the kill: %+v", before)

	if drain {
		if err := syscall.Kill(n1.cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	} else {
		n1.kill(t)
	}
	killed := time.Now()
	// A killed node's element stalls: no frames for a moment (the count read now is the
	// baseline). A drained one plays on.
	time.Sleep(500 * time.Millisecond)
	stalled, err := eval[watchedVideo](sub, 5*time.Second, readVideo)
	if err != nil {
		t.Fatal(err)
	}

	var after watchedVideo
	checkFor(t, time.Now().Add(20*time.Second), "the same <video> decodes again", func() (bool, string) {
		v, err := eval[watchedVideo](sub, 5*time.Second, readVideo)
		if err != nil {
			return false, err.Error()
		}
		after = v
		return v.Same && v.State == "connected" && v.Frames >= stalled.Frames+30, fmt.Sprintf("%+v (stalled at %d frames)", v, stalled.Frames)
	})
	t.Logf("frames again %.1f s after the kill: %+v", time.Since(killed).Seconds(), after)
	if testing.Verbose() {
		log, _ := eval[any](sub, 5*time.Second, `({log: window.__log, gap: window.__gapAt})`)
		t.Logf("sub's events: %v", log)
	}
	if after.URL != n0.ws() {
		t.Errorf("sub resumed on %s, want n0 (%s)", after.URL, n0.ws())
	}
	if want := map[bool]string{false: "reconnecting", true: "migrating"}[drain]; len(after.States) != 2 || after.States[0] != want || after.States[1] != "connected" {
		t.Errorf("states after the kill %v, want %s then connected", after.States, want)
	}
	if after.Replaced == 0 {
		t.Errorf("no trackReplaced: the video's track was not swapped")
	}
	if drain && after.Migrated != 1 {
		t.Errorf("drain: %d migrations, want 1", after.Migrated)
	}
	if after.Participant != before.Participant || after.Resumed != 1 {
		t.Errorf("participant %q after the kill (was %q), resumed events %d: want the same id, one resume", after.Participant, before.Participant, after.Resumed)
	}
	// The publisher's tab decodes sub's republished video again (same producer) and saw no
	// leave, join, removal or addition of sub or its producers.
	pubFrames := func() int {
		s, _ := pub.stats()
		if s == nil {
			return 0
		}
		return s.FramesDecoded
	}
	f0 := pubFrames()
	checkFor(t, time.Now().Add(15*time.Second), "pub decodes sub's video again", func() (bool, string) {
		f := pubFrames()
		return f >= f0+30, fmt.Sprintf("pub decoded %d frames, %d when sub resumed", f, f0)
	})
	events, err := eval[[]string](pub, 5*time.Second, `window.__room`)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) > 0 {
		t.Errorf("pub saw room events across sub's resume: %v", events)
	}
	for _, tb := range []*tab{pub, sub} {
		if errs := tb.jsErrors(); len(errs) > 0 {
			t.Errorf("%s: JavaScript errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
}

// TestE2EBrowserRedirectedClientLeavesDeadNode: the page joins n0 (eu), whose placement
// redirects it to n1 (its region, us). n1 is killed. The client goes back to placement (n0)
// and never opens a WebSocket to n1 again, though n0 still lists n1 for a moment after the kill.
func TestE2EBrowserRedirectedClientLeavesDeadNode(t *testing.T) {
	execPath := requireChromium(t)
	nodes := startProcCluster(t, "eu", "us")
	n0, n1 := nodes[0], nodes[1]
	browser := startBrowser(t, execPath)

	tb := newTab(t, browser, "redirected")
	openPage(t, tb, n0.http+"/?room=redirect&identity=r&region=us")
	if _, err := eval[chromedp.Void](tb, 5*time.Second, recordSockets); err != nil {
		t.Fatal(err)
	}
	if _, err := eval[chromedp.Void](tb, 20*time.Second, `window.cascadeApp.join("redirect", "r")`); err != nil {
		t.Fatalf("join: %v", err)
	}
	url, err := eval[string](tb, 5*time.Second, `window.cascadeApp.client.url`)
	if err != nil {
		t.Fatal(err)
	}
	if url != n1.ws() {
		t.Fatalf("placement put the client on %s, want n1 (%s)", url, n1.ws())
	}

	n1.kill(t)
	killedAt, err := eval[float64](tb, 5*time.Second, `Date.now()`)
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		State   string `json:"state"`
		URL     string `json:"url"`
		Sockets []struct {
			URL string  `json:"url"`
			At  float64 `json:"at"`
		} `json:"sockets"`
	}
	var s state
	checkFor(t, time.Now().Add(20*time.Second), "the client back on n0", func() (bool, string) {
		var err error
		s, err = eval[state](tb, 5*time.Second, `({state: window.cascadeApp.client.state, url: window.cascadeApp.client.url, sockets: window.__sockets})`)
		if err != nil {
			return false, err.Error()
		}
		return s.State == "connected" && s.URL == n0.ws(), fmt.Sprintf("%+v", s)
	})
	// Let a client that would retry n1 do so, then count.
	time.Sleep(3 * time.Second)
	if err := func() error {
		var err error
		s, err = eval[state](tb, 5*time.Second, `({state: window.cascadeApp.client.state, url: window.cascadeApp.client.url, sockets: window.__sockets})`)
		return err
	}(); err != nil {
		t.Fatal(err)
	}
	for _, sock := range s.Sockets {
		if sock.At > killedAt && sock.URL == n1.ws() {
			t.Errorf("a WebSocket to the dead node n1 after the kill: %+v", s.Sockets)
			break
		}
	}
	if s.State != "connected" || s.URL != n0.ws() {
		t.Errorf("client %s on %s, want connected on n0", s.State, s.URL)
	}
	if errs := tb.jsErrors(); len(errs) > 0 {
		t.Errorf("JavaScript errors:\n%s", strings.Join(errs, "\n"))
	}
}
