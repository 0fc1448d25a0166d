package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestE2ESimulcastAcrossNodes: the publisher's browser on node a, a small and a large viewer on
// node b. The relay link carries the layers b's viewers need, and each viewer gets its own: the
// small one decodes narrower frames than the large one. Then the large viewer turns small too:
// nobody on any node needs the top layer, and the publisher's browser stops encoding it
// (dynacast, its demand climbing from b to a); large again, it runs again.
func TestE2ESimulcastAcrossNodes(t *testing.T) {
	execPath := requireChromium(t)
	deadline := time.Now().Add(40 * time.Second)
	a, b := startTwoNodes(t, deadline)
	browser := startBrowser(t, execPath)
	tabs := openPages(t, browser, func(name string) string {
		switch name {
		case "publisher":
			return a + "/?room=across-simulcast&identity=publisher&autojoin=1&simulcast=2"
		case "small":
			return b + "/?room=across-simulcast&identity=small&autojoin=1&publish=0&view=small"
		default:
			return b + "/?room=across-simulcast&identity=large&autojoin=1&publish=0"
		}
	}, "publisher", "small", "large")
	small, large := tabs[1], tabs[2]
	if encs := publisherEncodings(t, tabs[0], deadline); len(encs) != 2 {
		t.Fatalf("publisher's camera encodings %+v, want two layers", encs)
	}
	var why string
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, tb := range tabs[1:] {
			info, _ := eval[any](tb, 5*time.Second, `({producers: [...window.cascadeApp.client.producers.values()], `+
				`preferred: Object.fromEntries(window.cascadeApp.client.preferredLayers), received: Object.fromEntries(window.cascadeApp.client.receivedLayers)})`)
			t.Logf("%s: %+v", tb.name, info)
		}
	})
	start := time.Now()
	checkFor(t, start.Add(20*time.Second), "the small view on node b decodes narrower frames than the large one", func() (bool, string) {
		ws, whyS := small.decodedWidth()
		wl, whyL := large.decodedWidth()
		why = whyS + "; " + whyL
		return ws > 0 && wl > 0 && ws < wl, why
	})
	t.Logf("decoded after %v: %s", time.Since(start).Round(100*time.Millisecond), why)

	setView := func(view string) {
		t.Helper()
		if _, err := eval[chromedp.Void](large, 5*time.Second,
			`window.cascadeApp.setView(Object.keys(window.cascadeApp.views())[0], "`+view+`")`); err != nil {
			t.Fatalf("large tab: %s view: %v", view, err)
		}
	}
	topActive := func(want bool) func() (bool, string) {
		return func() (bool, string) {
			s, err := tabs[0].adaptStats()
			if err != nil {
				return false, err.Error()
			}
			for _, e := range s.SendEncodings {
				if e.Rid == "h" {
					return e.Active == want, fmt.Sprintf("publisher's encodings %+v", s.SendEncodings)
				}
			}
			return false, fmt.Sprintf("publisher's encodings %+v", s.SendEncodings)
		}
	}
	setView("small")
	checkFor(t, time.Now().Add(20*time.Second), "the publisher on node a pauses its top layer", topActive(false))
	setView("large")
	checkFor(t, time.Now().Add(20*time.Second), "the publisher on node a resumes its top layer", topActive(true))
	checkFor(t, time.Now().Add(20*time.Second), "the large tab on node b decodes the top layer again", func() (bool, string) {
		ws, _ := small.decodedWidth()
		wl, why := large.decodedWidth()
		return wl > ws && ws > 0, why
	})
	noJSErrors(t, tabs...)
}
