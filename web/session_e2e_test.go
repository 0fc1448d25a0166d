package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestE2EBrowserSessionEndedByServer: the demo page in Chromium, joined as alice; alice joins
// again from a second tab. The first page's session is replaced (closed, then WebSocket close
// 4001): it says why, returns to the join form and does not reconnect, while the second stays.
func TestE2EBrowserSessionEndedByServer(t *testing.T) {
	execPath := requireChromium(t)
	hs := startServer(t)
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(30 * time.Second)
	url := hs.URL + "/?room=ended&identity=alice&autojoin=1"

	first, second := newTab(t, browser, "first"), newTab(t, browser, "second")
	t.Cleanup(func() {
		if t.Failed() {
			first.dump(t)
			second.dump(t)
		}
	})
	connected := func(tb *tab) func() (bool, string) {
		return func() (bool, string) {
			s, why := tb.stats()
			return s != nil && s.State == "connected", why
		}
	}
	open := func(tb *tab) {
		ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("%s: open the page: %v", tb.name, err)
		}
	}
	open(first)
	checkFor(t, deadline, "the first page joins", connected(first))
	if _, err := eval[chromedp.Void](first, 5*time.Second,
		`window.__closed = []; window.cascadeApp.client.addEventListener("closed", (e) => window.__closed.push(e.detail))`); err != nil {
		t.Fatal(err)
	}
	open(second)
	checkFor(t, deadline, "the second page joins", connected(second))

	type closedEvent struct {
		Reason string `json:"reason"`
		Code   int    `json:"code"`
	}
	checkFor(t, deadline, "the first page's session ends as replaced", func() (bool, string) {
		got, err := eval[[]closedEvent](first, 5*time.Second, `window.__closed`)
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 1 && got[0] == closedEvent{"replaced", 4001}, fmt.Sprintf("closed events %+v", got)
	})
	checkFor(t, deadline, "the first page tells why and shows the join form", func() (bool, string) {
		notice, err := eval[string](first, 5*time.Second, `window.cascadeApp.notice`)
		if err != nil {
			return false, err.Error()
		}
		form, err := eval[bool](first, 5*time.Second, `!document.getElementById("join-view").hidden && document.getElementById("call-view").hidden`)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(notice, "another page") && form, fmt.Sprintf("notice %q, join form shown %v", notice, form)
	})
	// No reconnection: the first page stays out (a reconnection would replace the second page,
	// which would then end), for longer than the client's first backoff.
	time.Sleep(2 * time.Second)
	if s, why := first.stats(); s == nil || s.State != "closed" {
		t.Errorf("the first page reconnected: %s", why)
	}
	if s, why := second.stats(); s == nil || s.State != "connected" {
		t.Errorf("the second page lost its session: %s", why)
	}
	for _, tb := range []*tab{first, second} {
		if errs := tb.jsErrors(); len(errs) > 0 {
			t.Errorf("%s: JavaScript errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
}
