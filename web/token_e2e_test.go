package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// TestE2EBrowserPastedToken: on a node without /token (no --dev) the demo page shows the token
// field and the `cascade token` command for the room and identity, and joins with a pasted token.
func TestE2EBrowserPastedToken(t *testing.T) {
	execPath := requireChromium(t)
	hs, _, _, _ := startNode(t, node.Options{Workers: 1}, nil, func(o *signal.Options) { o.DevTokens = false })
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(30 * time.Second)
	carol := newTab(t, browser, "carol")
	t.Cleanup(func() {
		if t.Failed() {
			carol.dump(t)
		}
	})
	ctx, cancel := context.WithTimeout(carol.ctx, 10*time.Second)
	err := chromedp.Do(ctx, chromedp.Navigate(hs.URL+"/?room=pasted&identity=carol&autojoin=1"))
	cancel()
	if err != nil {
		t.Fatalf("open the page: %v", err)
	}
	checkFor(t, deadline, "the page asks for a token", func() (bool, string) {
		v, err := eval[struct {
			Field, Hint bool
			Cmd, Error  string
		}](carol, 5*time.Second, `({field: !document.getElementById("token-field").hidden,
			hint: !document.getElementById("token-hint").hidden,
			cmd: document.getElementById("token-cmd").textContent,
			error: document.getElementById("error").textContent})`)
		if err != nil {
			return false, err.Error()
		}
		ok := v.Field && v.Hint && v.Cmd == "cascade token --room pasted --identity carol --publish --subscribe" &&
			strings.Contains(v.Error, "--dev")
		return ok, "page state " + strings.Join([]string{v.Cmd, v.Error}, " | ")
	})
	tok, err := auth.DevKeys().Mint(auth.Grant{Room: "pasted", Identity: "carol", Publish: true, Subscribe: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eval[chromedp.Void](carol, 5*time.Second, `document.getElementById("token").value = "`+tok+`";
		document.getElementById("join").click()`); err != nil {
		t.Fatalf("paste the token: %v", err)
	}
	checkFor(t, deadline, "carol joins with the pasted token", func() (bool, string) {
		id, err := eval[string](carol, 5*time.Second,
			`(window.cascadeApp.client && window.cascadeApp.client.participant && window.cascadeApp.client.participant.identity) || ""`)
		if err != nil {
			return false, err.Error()
		}
		return id == "carol", "joined as " + id
	})
}
