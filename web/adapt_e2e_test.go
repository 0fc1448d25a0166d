package web_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// The browser side of issue 15 (media that adapts) in Chromium, against a real node: the
// helpers of its tests, and active speakers on the demo page. Simulcast and dynacast:
// simulcast_e2e_test.go.

// openPages opens one tab per name at url(name) (the demo page), dumping their consoles when
// the test fails.
func openPages(t *testing.T, browser context.Context, url func(name string) string, names ...string) []*tab {
	t.Helper()
	tabs := make([]*tab, len(names))
	for i, name := range names {
		tabs[i] = newTab(t, browser, name)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, tb := range tabs {
				tb.dump(t)
			}
		}
	})
	for _, tb := range tabs {
		ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(url(tb.name)))
		cancel()
		if err != nil {
			t.Fatalf("%s: open the page: %v", tb.name, err)
		}
	}
	return tabs
}

// startTwoNodes starts nodes a and b of one cluster (their embedded NATS servers routed
// together) and waits until they see each other; it returns their HTTP servers.
func startTwoNodes(t *testing.T, deadline time.Time) (a, b string) {
	t.Helper()
	nats := func(routes ...string) *cluster.NATSOptions {
		return &cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret}, Routes: routes}
	}
	hsA, nA, cA, _ := startNode(t, node.Options{ID: "a", Workers: 1}, nats())
	hsB, _, cB, _ := startNode(t, node.Options{ID: "b", Workers: 1}, nats(nA.RouteURL()))
	checkFor(t, deadline, "the nodes see each other", func() (bool, string) {
		return len(cA.Peers()) == 1 && len(cB.Peers()) == 1, "peers missing"
	})
	return hsA.URL, hsB.URL
}

type sendEncoding struct {
	ProducerID string `json:"producerId"`
	Rid        string `json:"rid"`
	Active     bool   `json:"active"`
}

// adaptStats is what these tests read of window.cascadeApp.stats().
type adaptStats struct {
	State       string `json:"state"`
	VideoTracks []struct {
		ProducerID    string `json:"producerId"`
		FramesDecoded int    `json:"framesDecoded"`
		Codec         string `json:"codec"`
		FrameWidth    int    `json:"frameWidth"`
		FrameHeight   int    `json:"frameHeight"`
	} `json:"videoTracks"`
	SendEncodings []sendEncoding `json:"sendEncodings"`
	SelectedPairs []pair         `json:"selectedPairs"`
}

func (tb *tab) adaptStats() (*adaptStats, error) {
	s, err := eval[*adaptStats](tb, 5*time.Second, statsJS)
	if err != nil {
		return nil, fmt.Errorf("%s: stats: %w", tb.name, err)
	}
	if s == nil {
		return nil, fmt.Errorf("%s: page not loaded", tb.name)
	}
	return s, nil
}

// decodedWidth is the frame width the tab decodes of its only video track, once frames come.
func (tb *tab) decodedWidth() (width int, why string) {
	s, err := tb.adaptStats()
	if err != nil {
		return 0, err.Error()
	}
	if len(s.VideoTracks) != 1 {
		return 0, fmt.Sprintf("%s: %d video tracks (state %s)", tb.name, len(s.VideoTracks), s.State)
	}
	v := s.VideoTracks[0]
	if v.FramesDecoded == 0 {
		return 0, fmt.Sprintf("%s: no frame decoded yet", tb.name)
	}
	return v.FrameWidth, fmt.Sprintf("%s: %s %dx%d after %d frames", tb.name, v.Codec, v.FrameWidth, v.FrameHeight, v.FramesDecoded)
}

// publisherEncodings waits until the tab publishes its camera and returns its sender's encodings.
func publisherEncodings(t *testing.T, tb *tab, deadline time.Time) []sendEncoding {
	t.Helper()
	var encs []sendEncoding
	checkFor(t, deadline, tb.name+" publishes its camera", func() (bool, string) {
		s, err := tb.adaptStats()
		if err != nil {
			return false, err.Error()
		}
		encs = s.SendEncodings
		return len(encs) > 0, fmt.Sprintf("state %s, send encodings %+v", s.State, encs)
	})
	return encs
}

func noJSErrors(t *testing.T, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		if errs := tb.jsErrors(); len(errs) > 0 {
			t.Errorf("%s: JavaScript errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
}

// toneWAV writes a WAV file of a continuous 440 Hz tone (48 kHz, 16-bit mono, 2 s, at a third
// of full scale), for Chromium's fake microphone: its own fake audio is a short beep a second,
// too brief to count as speech.
func toneWAV(t *testing.T) string {
	t.Helper()
	const rate, seconds = 48000, 2
	samples := make([]int16, rate*seconds)
	for i := range samples {
		samples[i] = int16(math.Round(10000 * math.Sin(2*math.Pi*440*float64(i)/rate)))
	}
	var b []byte
	le := binary.LittleEndian
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, uint32(36+2*len(samples)))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16)
	b = le.AppendUint16(b, 1) // PCM
	b = le.AppendUint16(b, 1) // mono
	b = le.AppendUint32(b, rate)
	b = le.AppendUint32(b, rate*2)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(2*len(samples)))
	for _, s := range samples {
		b = le.AppendUint16(b, uint16(s))
	}
	path := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2EActiveSpeaker: alice publishes a fake microphone playing a tone (Chromium writes its
// RFC 6464 level into every packet), bob only watches, on the same node and then on another
// node of the cluster. Bob's client gets activeSpeakers naming alice, and his demo page
// highlights her tile and her name; when she mutes, the highlight goes.
func TestE2EActiveSpeaker(t *testing.T) {
	execPath := requireChromium(t)
	t.Run("one node", func(t *testing.T) {
		hs := startServer(t)
		activeSpeaker(t, execPath, hs.URL, hs.URL)
	})
	t.Run("two nodes", func(t *testing.T) {
		a, b := startTwoNodes(t, time.Now().Add(30*time.Second))
		activeSpeaker(t, execPath, a, b)
	})
}

// activeSpeaker runs TestE2EActiveSpeaker with alice's page on node alice and bob's on node bob.
func activeSpeaker(t *testing.T, execPath, aliceNode, bobNode string) {
	browser := startBrowser(t, execPath, chromedp.Flag("use-file-for-fake-audio-capture", toneWAV(t)))
	deadline := time.Now().Add(30 * time.Second)
	tabs := openPages(t, browser, func(name string) string {
		if name == "bob" {
			return bobNode + "/?room=speakers&identity=bob&autojoin=1&publish=0"
		}
		return aliceNode + "/?room=speakers&identity=alice&autojoin=1"
	}, "alice", "bob")
	alice, bob := tabs[0], tabs[1]
	var aliceID string
	checkFor(t, deadline, "alice joins", func() (bool, string) {
		id, err := eval[string](alice, 5*time.Second, `(window.cascadeApp && window.cascadeApp.client && window.cascadeApp.client.participant) ? window.cascadeApp.client.participant.id : ""`)
		if err != nil {
			return false, err.Error()
		}
		aliceID = id
		return id != "", "not joined yet"
	})
	type highlight struct {
		Speaking    string `json:"speaking"`
		Speakers    []any  `json:"speakers"`
		Tile        string `json:"tile"`
		Participant string `json:"participant"`
	}
	const js = `(() => {
		const app = window.cascadeApp, c = app && app.client;
		const tile = document.querySelector("#tiles .tile.remote.speaking");
		const li = document.querySelector("#participants li.speaking");
		return {speaking: app ? app.speaking : "", speakers: c ? c.activeSpeakers : [],
			tile: tile ? tile.dataset.participant : "", participant: li ? li.dataset.participant : ""};
	})()`
	checkFor(t, deadline, "bob's page highlights alice as the active speaker", func() (bool, string) {
		h, err := eval[highlight](bob, 5*time.Second, js)
		if err != nil {
			return false, err.Error()
		}
		return h.Speaking == aliceID && h.Tile == aliceID && h.Participant == aliceID, fmt.Sprintf("alice is %s; bob's page: %+v", aliceID, h)
	})
	// Alice mutes her microphone: nobody speaks any more, and the highlight goes.
	if _, err := eval[chromedp.Void](alice, 5*time.Second, `document.getElementById("mute-mic").click()`); err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Now().Add(15*time.Second), "bob's page highlights nobody once alice muted", func() (bool, string) {
		h, err := eval[highlight](bob, 5*time.Second, js)
		if err != nil {
			return false, err.Error()
		}
		return h.Speaking == "" && len(h.Speakers) == 0 && h.Tile == "" && h.Participant == "", fmt.Sprintf("bob's page: %+v", h)
	})
	noJSErrors(t, alice, bob)
}
