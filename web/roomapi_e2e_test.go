package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestE2EBrowserRoomAPI: two demo pages in Chromium, alice and bob, in a room of a clustered
// node; a moderator acts through the cluster's room API (what the HTTP room API calls). The
// pages show the room's and bob's new metadata; bob's microphone muted by the moderator stays
// muted when he tries to unmute, until the moderator's request, which he accepts from the
// prompt; bob removed, then the room deleted, each page says why it left and does not
// reconnect.
func TestE2EBrowserRoomAPI(t *testing.T) {
	execPath := requireChromium(t)
	hs, _, c, _ := startNode(t, node.Options{ID: "a", Workers: 1}, &cluster.NATSOptions{Listen: "127.0.0.1:-1", Secrets: cluster.Secrets{cluster.DevClusterSecret}})
	api := cluster.NewAPI(c)
	browser := startBrowser(t, execPath)
	deadline := time.Now().Add(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice, bob := openTabs(t, browser, 10*time.Second, func(name string) string {
		return hs.URL + "/?room=mod&identity=" + name + "&autojoin=1"
	})
	// Both publish (fake camera and microphone) and see each other.
	audioJS := `(() => { const c = window.cascadeApp && window.cascadeApp.client; const p = c && [...c.localProducers.values()].find((p) => p.kind === "audio"); return p ? p.id : ""; })()`
	var bobAudio string
	checkFor(t, deadline, "both pages joined and publishing", func() (bool, string) {
		var why []string
		for _, tb := range []*tab{alice, bob} {
			id, err := eval[string](tb, 5*time.Second, audioJS)
			if err != nil || id == "" {
				why = append(why, fmt.Sprintf("%s: audio producer %q %v", tb.name, id, err))
			}
			if tb == bob {
				bobAudio = id
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	})
	str := func(s string) *string { return &s }
	until := func(tb *tab, what, js string, want func(string) bool) {
		t.Helper()
		checkFor(t, deadline, tb.name+": "+what, func() (bool, string) {
			got, err := eval[string](tb, 5*time.Second, js)
			if err != nil {
				return false, err.Error()
			}
			return want(got), fmt.Sprintf("%s = %q", js, got)
		})
	}
	is := func(v string) func(string) bool { return func(s string) bool { return s == v } }
	has := func(v string) func(string) bool { return func(s string) bool { return strings.Contains(s, v) } }

	// Metadata: the room's, then bob's, on both pages.
	if _, err := api.UpdateRoom(ctx, "mod", proto.UpdateRoom{Metadata: str("weekly sync")}); err != nil {
		t.Fatalf("UpdateRoom: %v", err)
	}
	for _, tb := range []*tab{alice, bob} {
		until(tb, "the room's metadata shown", `document.getElementById("room-meta").hidden ? "" : document.getElementById("room-meta").textContent`, is("weekly sync"))
	}
	if _, err := api.UpdateParticipant(ctx, "mod", "bob", proto.UpdateParticipant{Metadata: str("speaker")}); err != nil {
		t.Fatalf("UpdateParticipant: %v", err)
	}
	for _, tb := range []*tab{alice, bob} {
		until(tb, "bob's metadata", `window.cascadeApp.metadata().bob`, is("speaker"))
		until(tb, "bob's metadata in the list", `document.getElementById("participants").textContent`, has("speaker"))
	}

	// The moderator mutes bob's microphone: his page says so, and his own unmute is refused.
	if _, err := api.MuteProducer(ctx, "mod", "bob", proto.MuteProducer{Producer: bobAudio, Muted: true}); err != nil {
		t.Fatalf("MuteProducer: %v", err)
	}
	until(bob, "the moderator's mute shown", `window.cascadeApp.notice`, has("moderator muted your microphone"))
	until(bob, "the mic button shows muted", `document.getElementById("mute-mic").getAttribute("aria-pressed")`, is("true"))
	until(alice, "bob's mic shown off", `document.getElementById("participants").textContent`, has("mic off"))
	refused, err := eval[string](bob, 10*time.Second, fmt.Sprintf(
		`window.cascadeApp.client.mute(%q, false).then(() => "unmuted", (e) => e.code)`, bobAudio))
	if err != nil || refused != "forbidden" {
		t.Fatalf("bob's own unmute: %q %v, want forbidden", refused, err)
	}
	until(bob, "the track stays disabled", `String(window.cascadeApp.client.localProducers.get(`+jsString(bobAudio)+`).track.enabled)`, is("false"))

	// The moderator asks for an unmute: a prompt; bob accepts.
	if _, err := api.MuteProducer(ctx, "mod", "bob", proto.MuteProducer{Producer: bobAudio, Muted: false}); err != nil {
		t.Fatalf("MuteProducer (unmute request): %v", err)
	}
	until(bob, "the unmute prompt", `document.getElementById("unmute-request").hidden ? "" : window.cascadeApp.unmuteRequest`, is(bobAudio))
	if err := chromedp.Do(bob.ctx, chromedp.Click(chromedp.CSS("#unmute-accept"))); err != nil {
		t.Fatalf("bob: accept the unmute: %v", err)
	}
	until(bob, "the track enabled again", `String(window.cascadeApp.client.localProducers.get(`+jsString(bobAudio)+`).track.enabled)`, is("true"))
	until(alice, "bob's mic on again", `String(window.cascadeApp.client.producers.get(`+jsString(bobAudio)+`).muted)`, is("false"))

	// A message from the room API reaches both pages, from the moderator.
	if err := api.SendData(ctx, "mod", proto.SendData{Data: json.RawMessage(`{"text":"closing soon"}`)}); err != nil {
		t.Fatalf("SendData: %v", err)
	}
	for _, tb := range []*tab{alice, bob} {
		until(tb, "the moderator's message", `JSON.stringify(window.cascadeApp.messages)`, has(`"identity":"","text":"closing soon"`))
	}

	// bob removed: his page says so and stays out; then the room deleted: alice's page too.
	if err := api.RemoveParticipant(ctx, "mod", "bob"); err != nil {
		t.Fatalf("RemoveParticipant: %v", err)
	}
	until(bob, "removed", `window.cascadeApp.notice + " / " + (window.cascadeApp.client ? "in" : "out")`, is("You were removed from the room. / out"))
	until(alice, "bob gone", `window.cascadeApp.participants().join(",")`, is(""))
	if err := api.DeleteRoom(ctx, "mod"); err != nil {
		t.Fatalf("DeleteRoom: %v", err)
	}
	until(alice, "the room deleted", `window.cascadeApp.notice + " / " + (window.cascadeApp.client ? "in" : "out")`, is("The room was deleted. / out"))
	// No reconnection (it would open the room again): wait past the client's first backoff.
	time.Sleep(2 * time.Second)
	for _, tb := range []*tab{alice, bob} {
		if s, why := tb.stats(); s == nil || s.State != "closed" {
			t.Errorf("%s: reconnected after the server ended the session: %s", tb.name, why)
		}
		if errs := tb.jsErrors(); len(errs) > 0 {
			t.Errorf("%s: JavaScript errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
