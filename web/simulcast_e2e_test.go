package web_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Simulcast in Chromium against a real node (issue 15): publishing with sendEncodings, a
// subscriber's preferred layer from the size of its view, dynacast pausing an encoding the node
// does not need. Helpers: adapt_e2e_test.go.

// TestE2ESimulcastSmallAndLargeView is issue 15's "Done means" in Chromium: a tab publishes its
// camera as two simulcast layers ("q" at half size, "h" full), in VP8 and then in H264; two tabs
// watch it, one in the demo page's small view (a 160 px wide tile: cascade.js's fitLayer asks
// the node for a layer no larger than that), the other large (no limit). Within 20 s of both
// decoding, the small tab's decoded frames are narrower than the large tab's.
func TestE2ESimulcastSmallAndLargeView(t *testing.T) {
	execPath := requireChromium(t)
	for _, codec := range []string{"vp8", "h264"} {
		t.Run(codec, func(t *testing.T) { simulcastSmallAndLarge(t, execPath, codec) })
	}
}

func simulcastSmallAndLarge(t *testing.T, execPath, codec string) {
	hs := startServer(t)
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(30 * time.Second)
	tabs := openPages(t, browser, func(name string) string {
		q := "/?room=simulcast&identity=" + name + "&autojoin=1"
		switch name {
		case "publisher":
			q += "&simulcast=2&codec=" + codec
		case "small":
			q += "&publish=0&view=small"
		default:
			q += "&publish=0"
		}
		return hs.URL + q
	}, "publisher", "small", "large")
	pub, small, large := tabs[0], tabs[1], tabs[2]

	// The browser took both layers: two encodings, lowest first, both running.
	encs := publisherEncodings(t, pub, deadline)
	if len(encs) != 2 || encs[0].Rid != "q" || encs[1].Rid != "h" {
		t.Fatalf("publisher's camera encodings %+v, want rids q, h", encs)
	}

	// Both viewers decode the publisher's video.
	for _, tb := range []*tab{small, large} {
		checkFor(t, deadline, tb.name+" decodes the publisher's video", func() (bool, string) {
			w, why := tb.decodedWidth()
			return w > 0, why
		})
	}
	views, err := eval[map[string]string](small, 5*time.Second, `window.cascadeApp.views()`)
	if err != nil || len(views) != 1 {
		t.Fatalf("small tab's views %v (%v), want one", views, err)
	}
	for id, v := range views {
		if v != "small" {
			t.Fatalf("small tab shows %s %s", id, v)
		}
		// fitLayer sent the size of the small tile (160 x 120 CSS pixels).
		checkFor(t, deadline, "the small tab's preferred size", func() (bool, string) {
			pref, err := eval[map[string]any](small, 5*time.Second, `window.cascadeApp.client.preferredLayers.get(`+strconv.Quote(id)+`) || null`)
			if err != nil {
				return false, err.Error()
			}
			w, _ := pref["maxWidth"].(float64)
			return w > 0 && w <= 320, fmt.Sprintf("preference %v", pref)
		})
	}

	// Ramp-up: the publisher's browser sends its top layer once its bandwidth estimate allows,
	// and the node switches each viewer at a keyframe.
	var ws, wl int
	var why string
	checkFor(t, time.Now().Add(20*time.Second), "the small view decodes narrower frames than the large one", func() (bool, string) {
		var whyS, whyL string
		ws, whyS = small.decodedWidth()
		wl, whyL = large.decodedWidth()
		why = whyS + "; " + whyL
		return ws > 0 && wl > 0 && ws < wl, why
	})
	t.Logf("decoded: %s", why)
	for _, tb := range []*tab{small, large} {
		if s, err := tb.adaptStats(); err != nil || len(s.VideoTracks) != 1 || !strings.EqualFold(s.VideoTracks[0].Codec, "video/"+codec) {
			t.Errorf("%s: received video %+v (%v), want %s", tb.name, s, err, codec)
		}
	}
	if wl < 2*ws*9/10 {
		t.Errorf("large view %d px, small view %d px: want the full layer, about twice the half one", wl, ws)
	}
	for _, tb := range []*tab{small, large} {
		s, err := tb.adaptStats()
		if err != nil {
			t.Fatal(err)
		}
		assertLoopback(t, tb, "recv", s.SelectedPairs)
		layers, _ := eval[map[string]any](tb, 5*time.Second, `Object.fromEntries(window.cascadeApp.client.receivedLayers)`)
		t.Logf("%s: layerChanged says %v", tb.name, layers)
	}
	noJSErrors(t, pub, small, large)
}

// TestE2EDynacastPausesUnwantedLayer: a tab publishes its camera with simulcast 3 (Chromium's
// fake camera is 640x480: cascade.js asks for two layers, as many as Chromium sends of that
// size, "q" at half size and "h" full) and its only viewer shows the video small. Nobody needs the top layer, so the node's layersWanted has cascade.js
// stop encoding it (the sender's encoding "h" inactive, said on the publisher's own tile); when
// the viewer switches to the large view, "h" runs again and the viewer decodes it.
func TestE2EDynacastPausesUnwantedLayer(t *testing.T) {
	execPath := requireChromium(t)
	hs := startServer(t)
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(30 * time.Second)
	tabs := openPages(t, browser, func(name string) string {
		q := "/?room=dynacast&identity=" + name + "&autojoin=1"
		if name == "publisher" {
			q += "&simulcast=3"
		} else {
			q += "&publish=0&view=small"
		}
		return hs.URL + q
	}, "publisher", "viewer")
	pub, viewer := tabs[0], tabs[1]
	if encs := publisherEncodings(t, pub, deadline); len(encs) != 2 || encs[0].Rid != "q" || encs[1].Rid != "h" {
		t.Fatalf("publisher's camera encodings %+v, want q and h (a 640x480 camera)", encs)
	}
	checkFor(t, deadline, "the viewer decodes the publisher's video", func() (bool, string) {
		w, why := viewer.decodedWidth()
		return w > 0, why
	})
	active := func(want map[string]bool) func() (bool, string) {
		return func() (bool, string) {
			s, err := pub.adaptStats()
			if err != nil {
				return false, err.Error()
			}
			got := map[string]bool{}
			for _, e := range s.SendEncodings {
				got[e.Rid] = e.Active
			}
			ok := len(got) == len(want)
			for rid, a := range want {
				ok = ok && got[rid] == a
			}
			return ok, fmt.Sprintf("publisher's encodings %+v", s.SendEncodings)
		}
	}
	checkFor(t, time.Now().Add(20*time.Second), "the publisher pauses its top layer", active(map[string]bool{"q": true, "h": false}))
	label, err := eval[string](pub, 5*time.Second, `document.getElementById("local-layers").textContent`)
	if err != nil || label != "sending q, paused h" {
		t.Errorf("publisher's tile says %q (%v), want %q", label, err, "sending q, paused h")
	}
	ws, _ := viewer.decodedWidth()

	// The viewer clicks the video's "Large" button: the top layer runs again and reaches it.
	label, err = eval[string](viewer, 5*time.Second, `(() => { const b = document.querySelector("#tiles .tile.remote .view"); b.click(); return b.textContent; })()`)
	if err != nil {
		t.Fatalf("viewer: click the view button: %v", err)
	}
	checkFor(t, time.Now().Add(10*time.Second), "the viewer's video shows large", func() (bool, string) {
		views, err := eval[map[string]string](viewer, 5*time.Second, `window.cascadeApp.views()`)
		for _, v := range views {
			return v == "large" && err == nil, fmt.Sprintf("views %v (%v), the button said %q", views, err, label)
		}
		return false, fmt.Sprintf("views %v (%v)", views, err)
	})
	checkFor(t, time.Now().Add(20*time.Second), "the publisher resumes its top layer", active(map[string]bool{"q": true, "h": true}))
	checkFor(t, time.Now().Add(20*time.Second), "the viewer decodes the top layer", func() (bool, string) {
		w, why := viewer.decodedWidth()
		return w > ws, fmt.Sprintf("%s (small view: %d px)", why, ws)
	})
	noJSErrors(t, pub, viewer)
}
