package bots

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// htmlSyntheticReport is a plausible run: 2 publishers, 50 subscribers, 20 s.
func htmlSyntheticReport() *Report {
	r := &Report{
		Publishers:      2,
		Subscribers:     50,
		Rooms:           2,
		DurationSec:     20,
		TracksExpected:  200,
		TracksReceived:  196,
		PacketsReceived: 123456,
		PacketsLost:     78,
		LossPct:         0.063,
		RecvKbps:        1612.5,
		NoMedia:         1,
		Errors:          []string{"sub-07: join: timeout after 10s", "sub-31: <script>alert(1)</script>"},
	}
	var joinMs, latMs []float64
	for i := range 50 {
		b := BotResult{
			Name:     fmt.Sprintf("sub-%02d", i),
			URL:      "ws://127.0.0.1:7880/rtc",
			Room:     fmt.Sprintf("room-%d", i%2),
			Joined:   i != 7,
			JoinMs:   80 + 40*math.Sin(float64(i)) + float64(i),
			Tracks:   4,
			Packets:  2400 + int64(i),
			RecvKbps: 1500 + 200*math.Cos(float64(i)/3),
			LatencyMs: Percentiles{
				P50: 3 + float64(i%5), P95: 8 + float64(i%7), P99: 12 + float64(i%9), Max: 30,
			},
		}
		switch i {
		case 7:
			b.JoinMs, b.Tracks, b.Packets, b.RecvKbps, b.Error = 0, 0, 0, 0, "join: timeout after 10s"
		case 31:
			b.RecvKbps, b.Packets, b.Tracks = 0, 0, 0
		case 40:
			b.Stalls = []Stall{{StartS: 8.2, DurationMs: 4321, Recovered: true}}
			b.LongestGapMs, b.StalledMs = 4321, 4321
		}
		if b.Joined {
			joinMs = append(joinMs, b.JoinMs)
		}
		latMs = append(latMs, b.LatencyMs.P50, b.LatencyMs.P99)
		r.Bots = append(r.Bots, b)
	}
	r.Joined, r.Failed = 51, 1
	r.JoinMs = percentiles(joinMs)
	r.LatencyMs = percentiles(latMs)
	for s := range 20 {
		sec := Second{T: float64(s + 1), Joined: 51, RecvKbps: 49 * (1500 + 100*math.Sin(float64(s)))}
		if s != 0 { // the first second has no latency samples yet
			sec.LatencyMs = Percentiles{P50: 4 + math.Sin(float64(s)), P95: 9 + float64(s%4), P99: 14 + float64(s%6), Max: 30}
		}
		if s >= 8 && s <= 12 {
			sec.Stalled = 1
		}
		r.Timeline = append(r.Timeline, sec)
	}
	r.Stalls, r.StalledSubscribers, r.LongestStallMs, r.StalledPct, r.MaxStallMs = 1, 1, 4321, 0.478, 2000
	r.OverMaxStall = []string{Stall{StartS: 8.2, DurationMs: 4321, Recovered: true}.describe("sub-40", "ws://127.0.0.1:7880/rtc")}
	return r
}

var htmlImgRE = regexp.MustCompile(`src="data:image/png;base64,([A-Za-z0-9+/=]+)"`)

// htmlCheck writes r as HTML and checks what holds for every report; it returns the page.
func htmlCheck(t *testing.T, r *Report) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := r.WriteHTML(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if n := strings.Count(page, "data:image/png;base64,"); n < 3 {
		t.Errorf("%d embedded PNG images, want at least 3", n)
	}
	imgs := htmlImgRE.FindAllStringSubmatch(page, -1)
	if len(imgs) < 3 {
		t.Fatalf("%d <img src=data:...> found, want at least 3", len(imgs))
	}
	for i, m := range imgs {
		raw, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil {
			t.Fatalf("image %d: base64: %v", i, err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("image %d: png: %v", i, err)
		}
		if sz := img.Bounds().Size(); sz.X < 400 || sz.Y < 200 {
			t.Errorf("image %d is only %v", i, sz)
		}
		if dir := os.Getenv("CASCADE_HTMLREPORT_DUMP"); dir != "" { // to look at the plots
			name := strings.ReplaceAll(t.Name(), "/", "_")
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, i)), raw, 0o644)
		}
	}
	for _, bad := range []string{"http://", "https://", "ZgotmplZ", "<script>"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	return page
}

func TestWriteHTML(t *testing.T) {
	r := htmlSyntheticReport()
	page := htmlCheck(t, r)
	if dir := os.Getenv("CASCADE_HTMLREPORT_DUMP"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "report.html"), []byte(page), 0o644)
	}
	for _, want := range []string{
		"<td class=\"n\">2</td>",  // publishers
		"<td class=\"n\">50</td>", // subscribers
		"<td class=\"n\">51</td>", // joined
		fmt.Sprintf("%.1f", r.JoinMs.P50), fmt.Sprintf("%.1f", r.JoinMs.P95),
		fmt.Sprintf("%.1f", r.JoinMs.P99), fmt.Sprintf("%.1f", r.JoinMs.Max),
		fmt.Sprintf("%.1f", r.LatencyMs.P50), fmt.Sprintf("%.1f", r.LatencyMs.P95),
		fmt.Sprintf("%.1f", r.LatencyMs.P99), fmt.Sprintf("%.1f", r.LatencyMs.Max),
		"0.063 %", "1612", // loss, recv kbps (rounded)
		"123456", "196 of 200",
		"sub-07: join: timeout after 10s",
		"&lt;script&gt;", // errors are escaped
		"FAILED",         // one bot failed
		"sub-49",
		"1 in 1 subscribers", "4321.0 ms", "0.478 %", // stalls
		"sub-40 on ws://127.0.0.1:7880/rtc: no media for 4.3 s from t=8.2 s (recovered)",
		"Stalls over the limit (2000 ms)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, "data:image/png;base64,"); n != 5 {
		t.Errorf("%d images, want 5", n)
	}
}

func TestWriteHTMLEmpty(t *testing.T) {
	for name, r := range map[string]*Report{
		"zero": {},
		"nobody joined": {
			Publishers: 1, Subscribers: 3, Failed: 4,
			Bots:     []BotResult{{Name: "a", Error: "refused"}, {Name: "b"}, {Name: "c"}},
			Timeline: []Second{{T: 1}, {T: 2}},
			Errors:   []string{"a: refused"},
		},
		"one point": {
			Publishers: 1, Subscribers: 1, Joined: 2,
			Bots:     []BotResult{{Name: "a", Joined: true, JoinMs: 12, RecvKbps: 900}},
			Timeline: []Second{{T: 1, RecvKbps: 900, LatencyMs: Percentiles{P50: 1, P95: 2, P99: 3, Max: 4}}},
		},
		"non-finite": {
			Bots:     []BotResult{{Name: "a", Joined: true, JoinMs: math.NaN(), RecvKbps: math.Inf(1)}},
			Timeline: []Second{{T: 1, RecvKbps: math.NaN(), LatencyMs: Percentiles{P50: math.Inf(1)}}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			page := htmlCheck(t, r)
			if name == "zero" && strings.Count(page, "<p>none</p>") != 2 {
				t.Error("no \"none\" for the empty error and subscriber lists")
			}
		})
	}
}

func TestWriteHTMLManyErrors(t *testing.T) {
	r := &Report{}
	for i := range htmlMaxErrors + 5 {
		r.Errors = append(r.Errors, fmt.Sprintf("error %d", i))
	}
	page := htmlCheck(t, r)
	if !strings.Contains(page, "5 more") || strings.Contains(page, fmt.Sprintf("error %d<", htmlMaxErrors)) {
		t.Error("the error list is not capped")
	}
}
