package bots

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cascade-sfu/cascade/bots/media"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// TestVP8KeyframeSize reads the size of each layer clip's keyframes from the RTP packets the
// publisher bots send (with a picture id and a header extension, as the node forwards them),
// and finds no size in the packets of other frames or in a keyframe's later packets.
func TestVP8KeyframeSize(t *testing.T) {
	for _, l := range media.Layers() {
		frames, err := ivfFrames(l.IVF)
		if err != nil {
			t.Fatal(err)
		}
		pk := rtp.NewPacketizer(mtu, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
		sizes := 0
		for i, f := range frames[:61] {
			for j, p := range pk.Packetize(f.data, videoStep) {
				if err := p.Header.SetExtension(3, []byte("f")); err != nil {
					t.Fatal(err)
				}
				raw, err := p.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				w, h, ok := vp8KeyframeSize(raw)
				if want := f.key && j == 0; ok != want {
					t.Fatalf("layer %s frame %d packet %d: size found %v, want %v", l.Rid, i, j, ok, want)
				}
				if ok {
					sizes++
					if w != l.Width || h != l.Height {
						t.Errorf("layer %s frame %d: %dx%d, want %dx%d", l.Rid, i, w, h, l.Width, l.Height)
					}
				}
			}
		}
		if sizes != 3 {
			t.Errorf("layer %s: %d keyframe sizes in 61 frames, want 3", l.Rid, sizes)
		}
	}
	pad := []byte{0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 4}
	if !paddingOnly(pad) || paddingOnly(append([]byte{0x80}, pad[1:]...)) || paddingOnly(append(append([]byte{}, pad[:12]...), 0x10, 0, 0, 1)) {
		t.Errorf("padding-only packets told wrong")
	}
	for _, junk := range [][]byte{nil, {0x80}, bytes.Repeat([]byte{0x90}, 14), bytes.Repeat([]byte{0xff}, 40)} {
		if _, _, ok := vp8KeyframeSize(junk); ok {
			t.Errorf("a size in %x", junk)
		}
	}
}

// TestVideoLog: the layer record per second carries the state over, counts loss and late
// packets, and the strip summarises the run.
func TestVideoLog(t *testing.T) {
	key := func(w, h int) []byte {
		p := make([]byte, 12+1+10)
		p[0] = 0x80
		p[12] = 0x10 // start of partition 0, no extension
		copy(p[13:], []byte{0x00, 0, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)})
		return p
	}
	v := newVideoLog()
	const s = int64(1e9)
	v.packet(0*s, 0, key(640, 360), 0)
	v.packet(s/2, 0, key(640, 360), 0)
	v.packet(3*s, 3, key(320, 180), 2) // 2.5 s without video, 2 packets lost
	v.packet(3*s+s/10, 3, []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00}, -1)
	res := v.result("p", 5)
	if len(res.Seconds) != 6 {
		t.Fatalf("%d seconds, want 6", len(res.Seconds))
	}
	if got := layerStrip(res.Seconds); got != "f×3 h×3" {
		t.Errorf("strip %q, want f×3 h×3", got)
	}
	if s3 := res.Seconds[3]; s3.Lost != 1 || s3.Packets != 2 || s3.MaxGapMs != 2500 || s3.Width != 320 {
		t.Errorf("second 3: %+v", s3)
	}
	if len(res.Changes) != 2 || res.Changes[1].Layer != 1 || res.Changes[1].Source != "media" {
		t.Errorf("changes %+v", res.Changes)
	}
}

// TestLayerReports: a simulcast report shows each subscriber's layers in the summary and draws
// the layer plot in the HTML report; a report without simulcast has neither.
func TestLayerReports(t *testing.T) {
	r := htmlSyntheticReport()
	dir := t.TempDir()
	if err := r.WriteHTML(filepath.Join(dir, "plain.html")); err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(filepath.Join(dir, "plain.html"))
	r.Simulcast = true
	for i := range r.Bots[:3] {
		var secs []VideoSecond
		for s := range 20 {
			w := 640
			if i == 1 && s >= 8 && s < 14 {
				w = 320
			}
			secs = append(secs, VideoSecond{T: s, Layer: -1, Width: w, Height: w * 9 / 16, Kbps: 1400})
		}
		r.Bots[i].Video = []VideoResult{{Producer: "p", Seconds: secs}}
	}
	var sum strings.Builder
	r.WriteSummary(&sum)
	if !strings.Contains(sum.String(), "layers sub-01") || !strings.Contains(sum.String(), "f×8 h×6 f×6") {
		t.Errorf("summary without sub-01's layers:\n%s", sum.String())
	}
	if err := r.WriteHTML(filepath.Join(dir, "sim.html")); err != nil {
		t.Fatal(err)
	}
	sim, _ := os.ReadFile(filepath.Join(dir, "sim.html"))
	const title = "Video layer per subscriber"
	if bytes.Contains(plain, []byte(title)) || !bytes.Contains(sim, []byte(title)) {
		t.Errorf("layer plot: in the plain report %v, in the simulcast one %v", bytes.Contains(plain, []byte(title)), bytes.Contains(sim, []byte(title)))
	}
}
