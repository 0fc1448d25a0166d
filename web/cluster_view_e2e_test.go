package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// viewRoom is the room of the cluster view test: its name holds markup and quotes, which the
// page must show as text.
const viewRoom = `<i>view</i> & "relay"`

// TestE2EClusterViewAcrossRegions: a publisher on node a (region eu) and a subscriber on node b
// (region us) make a relay edge a -> b. The /cluster page opened on b (not the room's origin)
// lists the room with both nodes, draws both regions' nodes, and, once the room is picked,
// draws the producer's tree with the edge a -> b marked as crossing regions; it keeps
// updating without rebuilding what did not change.
func TestE2EClusterViewAcrossRegions(t *testing.T) {
	execPath := requireChromium(t)
	hsA, nA, cA, _ := startNode(t, node.Options{ID: "a", Region: "eu", Workers: 1}, &cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret}})
	hsB, _, cB, _ := startNode(t, node.Options{ID: "b", Region: "us", Workers: 1}, &cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret},
		Routes: []string{nA.RouteURL()}})
	deadline := time.Now().Add(40 * time.Second)
	checkFor(t, deadline, "the nodes see each other", func() (bool, string) {
		return len(cA.Peers()) == 1 && len(cB.Peers()) == 1, "peers missing"
	})

	pub := dialView(t, hsA.URL, "pub", true, false)
	if _, err := pub.Publish(context.Background(), videoSource(t)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	var got sync.Map // producer ids the subscriber receives packets of
	dialView(t, hsB.URL, "sub", false, true, func(o *client.Options) {
		o.OnTrack = func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			go func() {
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
					got.Store(tr.ID(), true)
				}
			}()
		}
	})
	checkFor(t, deadline, "media relayed from a to b", func() (bool, string) {
		n := 0
		got.Range(func(any, any) bool { n++; return true })
		return n > 0, "the subscriber on b has no packets yet"
	})

	// The JSON the page reads, on b: the cluster's listing has the room on both nodes, and the
	// room's detail has the producer's tree with b under a.
	admin := adminToken(t)
	checkFor(t, deadline, "the listing on b", func() (bool, string) {
		var v cluster.View
		if err := getAdmin(hsB.URL+"/cluster?format=json", admin, &v); err != nil {
			return false, err.Error()
		}
		for _, r := range v.ClusterRooms {
			if r.Name == viewRoom && len(r.Nodes) == 2 && r.Participants == 2 && r.Publishers == 1 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("cluster_rooms %+v, error %v", v.ClusterRooms, v.Error)
	})
	// The same listing as the room API's.
	checkFor(t, deadline, "the view's listing equals the room API's", func() (bool, string) {
		var v cluster.View
		if err := getAdmin(hsB.URL+"/cluster?format=json", admin, &v); err != nil {
			return false, err.Error()
		}
		page, err := cluster.NewAPI(cB).ListRooms(context.Background(), "", cluster.ViewRooms)
		if err != nil {
			return false, err.Error()
		}
		a, _ := json.Marshal(v.ClusterRooms)
		b, _ := json.Marshal(page.Rooms)
		return string(a) == string(b), fmt.Sprintf("view %s, API %s", a, b)
	})
	var d proto.APIRoomDetail
	if err := getAdmin(hsB.URL+"/cluster?format=json&room="+url.QueryEscape(viewRoom), admin, &d); err != nil {
		t.Fatalf("room detail: %v", err)
	}
	if len(d.ProducerList) != 1 {
		t.Fatalf("room detail producers %+v, want one", d.ProducerList)
	}
	var pe proto.Error
	if err := getAdmin(hsB.URL+"/cluster?format=json&room=nowhere", admin, &pe); err == nil || pe.Code != proto.CodeNotFound {
		t.Fatalf("detail of a room that does not exist: %v %+v, want 404 not_found", err, pe)
	}
	pe = proto.Error{}
	if err := getAdmin(hsB.URL+"/cluster?room=", admin, &pe); err == nil || pe.Code != proto.CodeBadRequest {
		t.Fatalf("detail without a name: %v %+v, want 400 bad_request", err, pe)
	}
	req, _ := http.NewRequest(http.MethodGet, hsB.URL+"/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("page CSP %q: want default-src 'none' and the script by hash", csp)
	}

	browser := startBrowser(t, execPath)
	view := newTab(t, browser, "view")
	t.Cleanup(func() {
		if t.Failed() {
			view.dump(t)
		}
	})
	ctxNav, cancel := context.WithTimeout(view.ctx, 10*time.Second)
	err = chromedp.Do(ctxNav, chromedp.Navigate(hsB.URL+"/cluster?token="+admin))
	cancel()
	if err != nil {
		t.Fatalf("open the page: %v", err)
	}
	name, _ := json.Marshal(viewRoom)

	// The rooms table lists the room with both nodes; the regions hold their nodes; the room's
	// name is text (no <i> element made of it); the style and script ran under the page's CSP.
	type pageRooms struct {
		Row         string              `json:"row"`
		Button      string              `json:"button"`
		Markup      bool                `json:"markup"`
		Regions     map[string][]string `json:"regions"`
		Styled      bool                `json:"styled"`
		Status      string              `json:"status"`
		StatusError bool                `json:"statusError"`
	}
	checkFor(t, deadline, "the page lists the room on both nodes, by region", func() (bool, string) {
		p, err := eval[*pageRooms](view, 5*time.Second, `(() => {
			if (!window.cascadeView) return null;
			const tr = [...document.querySelectorAll("#rooms tbody tr")].find((t) => t.dataset.room === `+string(name)+`);
			const regions = {};
			for (const r of document.querySelectorAll(".region")) regions[r.dataset.region] = [...r.querySelectorAll(".node")].map((n) => n.dataset.node);
			const first = document.querySelector(".region");
			return { row: tr ? tr.querySelector("td.nodes").textContent : "", button: tr ? tr.querySelector("button").textContent : "",
				markup: !!document.querySelector("#rooms i"), regions,
				styled: !!first && getComputedStyle(first).borderTopStyle === "solid",
				status: document.getElementById("status").textContent, statusError: document.getElementById("status").className === "error" };
		})()`)
		if err != nil || p == nil {
			return false, fmt.Sprintf("page not ready: %v", err)
		}
		if p.Row != "a (1), b (1)" || p.Button != viewRoom || p.Markup || p.StatusError {
			return false, fmt.Sprintf("room row %q, name %q, markup %v, status %q", p.Row, p.Button, p.Markup, p.Status)
		}
		if strings.Join(p.Regions["eu"], ",") != "a" || strings.Join(p.Regions["us"], ",") != "b" || len(p.Regions) != 2 {
			return false, fmt.Sprintf("regions %v, want eu: [a], us: [b]", p.Regions)
		}
		if !p.Styled {
			return false, "the style did not apply (blocked by the CSP?)"
		}
		if !strings.HasPrefix(p.Status, "Last updated") {
			return false, "status " + p.Status
		}
		return true, ""
	})

	// Pick the room: its producer's tree has a at the root and the edge a -> b, which crosses
	// from eu to us.
	if _, err := eval[bool](view, 5*time.Second, `(() => {
		const tr = [...document.querySelectorAll("#rooms tbody tr")].find((t) => t.dataset.room === `+string(name)+`);
		tr.querySelector("button").click(); return true; })()`); err != nil {
		t.Fatalf("pick the room: %v", err)
	}
	type pageTree struct {
		Trees  int    `json:"trees"`
		Origin string `json:"origin"`
		Edge   string `json:"edge"`
		Nodes  string `json:"nodes"`
		Fills  bool   `json:"fills"`
		Title  string `json:"title"`
	}
	checkFor(t, deadline, "the tree a -> b drawn", func() (bool, string) {
		p, err := eval[*pageTree](view, 5*time.Second, `(() => {
			const svgs = document.querySelectorAll("#trees svg.tree");
			const s = svgs[0];
			if (!s) return { trees: 0 };
			const e = s.querySelector('line.edge[data-from="a"][data-to="b"]');
			const a = s.querySelector('g.tnode[data-node="a"] circle'), b = s.querySelector('g.tnode[data-node="b"] circle');
			return { trees: svgs.length, origin: (s.querySelector("g.origin") || {dataset: {}}).dataset.node || "",
				edge: e ? e.getAttribute("data-cross") + " " + e.getAttribute("class") : "",
				nodes: [...s.querySelectorAll("g.tnode")].map((g) => g.dataset.node + ":" + g.dataset.region).join(","),
				fills: !!a && !!b && a.getAttribute("fill") !== b.getAttribute("fill"),
				title: document.getElementById("detail-name").textContent };
		})()`)
		if err != nil || p == nil {
			return false, fmt.Sprintf("no tree yet: %v", err)
		}
		if p.Trees != 1 || p.Origin != "a" || p.Edge != "true edge cross" || p.Nodes != "a:eu,b:us" || !p.Fills || p.Title != viewRoom {
			return false, fmt.Sprintf("%+v", *p)
		}
		return true, ""
	})

	// Live, without flicker: an unchanged tree stays the same element over refreshes, while a
	// room opened on a later shows up without a reload.
	if _, err := eval[bool](view, 5*time.Second, `(document.querySelector("#trees svg.tree").dataset.mark = "kept", true)`); err != nil {
		t.Fatal(err)
	}
	dialView(t, hsA.URL, "late", false, false, func(o *client.Options) {
		o.Token = mint(t, auth.Grant{Room: "later", Identity: "late", Subscribe: true})
	})
	checkFor(t, deadline, "the later room listed, the tree kept", func() (bool, string) {
		p, err := eval[string](view, 5*time.Second, `(() => {
			const later = [...document.querySelectorAll("#rooms tbody tr")].find((t) => t.dataset.room === "later");
			const s = document.querySelector("#trees svg.tree");
			return (later ? later.querySelector("td.nodes").textContent : "none") + " | " + (s ? s.dataset.mark || "rebuilt" : "gone");
		})()`)
		if err != nil {
			return false, err.Error()
		}
		return p == "a (1) | kept", "later room nodes | tree: " + p
	})
	if errs := view.jsErrors(); len(errs) > 0 {
		t.Fatalf("the page logged errors: %v", errs)
	}

	// A refresh that fails says so, and keeps what the page showed.
	hsB.CloseClientConnections()
	hsB.Close()
	checkFor(t, deadline, "the page reports the failed refresh", func() (bool, string) {
		p, err := eval[string](view, 5*time.Second, `document.getElementById("status").className + " | " + document.getElementById("status").textContent +
			" | " + document.querySelectorAll("#trees svg.tree").length`)
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(p, "error | Update failed at ") && strings.Contains(p, "showing the view of") && strings.HasSuffix(p, " | 1"), "status: " + p
	})
	if out := os.Getenv("CASCADE_VIEW_SCREENSHOT"); out != "" { // to look at the page: a PNG of it
		png, err := chromedp.Run(view.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Past the node's going away, only its failed loads may be logged.
	for _, e := range view.jsErrors() {
		if !strings.Contains(e, "net::ERR_CONNECTION_REFUSED") {
			t.Errorf("the page logged an error: %s", e)
		}
	}
}

// dialView joins a room of viewRoom on the node at base with a Go client (loopback media).
func dialView(t *testing.T, base, identity string, publish, subscribe bool, with ...func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{Token: mint(t, auth.Grant{Room: viewRoom, Identity: identity, Publish: publish, Subscribe: subscribe}), LoopbackOnly: true, NoRedirect: true}
	for _, f := range with {
		f(&o)
	}
	c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/ws", o)
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mint(t *testing.T, g auth.Grant) string {
	t.Helper()
	tok, err := auth.DevKeys().Mint(g, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func adminToken(t *testing.T) string { return mint(t, auth.Grant{Admin: true}) }

// getAdmin GETs u with the admin token and decodes the JSON answer into v (also on an error
// status, which it returns as an error).
func getAdmin(u, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if jerr := json.Unmarshal(b, v); jerr != nil {
		return fmt.Errorf("%s: %d %s: %v", u, resp.StatusCode, b, jerr)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, b)
	}
	return nil
}

// videoSource is a VP8 track fed with small keyframe-flagged packets every 20 ms until the
// test ends: enough for the node to forward and relay it.
func videoSource(t *testing.T) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "view")
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 300)
		payload[0] = 0x10 // VP8 payload descriptor: start of a partition; first byte of the frame 0: a keyframe
		for i := uint16(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: i, Timestamp: uint32(i) * 1800, Marker: true}, Payload: payload})
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return tr
}
