package node

import (
	"encoding/hex"
	"testing"
)

// TestSPSSize: the sizes of sequence parameter sets that x264 (ffmpeg 'testsrc', 4:2:0) wrote
// for four profiles and sizes, three of them cropped (a height not a multiple of 16), read as
// a single NAL unit and inside a STAP-A; a truncated one is refused.
func TestSPSSize(t *testing.T) {
	cases := []struct {
		sps  string // the NAL unit, header included
		w, h int
	}{
		{"6764001eacd940a02ff970110000030001000003003c0f162d96", 640, 360},     // high
		{"6742c01fd9005005bb0110000003001000000303c0f18324800000", 1280, 720},  // constrained baseline
		{"674d400deca0a0cfcf8088000003000800000301e078a14cb0", 320, 180},       // main
		{"67640028acd940780227e5c044000003000400000300f03c60c658", 1920, 1080}, // high, 1088 cropped
	}
	for _, c := range cases {
		nal, err := hex.DecodeString(c.sps)
		if err != nil {
			t.Fatal(err)
		}
		if w, h, ok := h264Size(nal); !ok || w != c.w || h != c.h {
			t.Errorf("SPS %s: %dx%d (%v), want %dx%d", c.sps, w, h, ok, c.w, c.h)
		}
		stap := append([]byte{24, 0, 2, 0x09, 0xf0, byte(len(nal) >> 8), byte(len(nal))}, nal...) // an AUD first
		if w, h, ok := h264Size(stap); !ok || w != c.w || h != c.h {
			t.Errorf("STAP-A with SPS %s: %dx%d (%v), want %dx%d", c.sps, w, h, ok, c.w, c.h)
		}
		if _, _, ok := h264Size(nal[:6]); ok {
			t.Errorf("truncated SPS %s read", c.sps)
		}
	}
}

// TestExpGolomb: ue and se decode the codes of H.264 9.1 (1, 010, 011, 00100 ...).
func TestExpGolomb(t *testing.T) {
	// 1 010 011 00100 00101 -> ue 0 1 2 3 4; as se: 0 1 -1 2 -2
	b := []byte{0b10100110, 0b01000010, 0b10000000}
	r := bitReader{b: b}
	for want := uint32(0); want < 5; want++ {
		if got := r.ue(); got != want || r.bad {
			t.Fatalf("ue: %d, want %d (bad %v)", got, want, r.bad)
		}
	}
	r = bitReader{b: b}
	for _, want := range []int32{0, 1, -1, 2, -2} {
		if got := r.se(); got != want {
			t.Fatalf("se: %d, want %d", got, want)
		}
	}
	r = bitReader{b: []byte{0, 0}}
	r.ue()
	if !r.bad {
		t.Fatal("a code past the end is not flagged")
	}
}

// TestVP8Size: the size of a VP8 keyframe header; an interframe's tag and a bad start code
// give none.
func TestVP8Size(t *testing.T) {
	key := []byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x41, 0xaa} // 640x360, scale bits set on the height
	if w, h, ok := vp8Size(key); !ok || w != 640 || h != 360 {
		t.Fatalf("%dx%d %v, want 640x360", w, h, ok)
	}
	inter := append([]byte{0x51}, key[1:]...)
	if _, _, ok := vp8Size(inter); ok {
		t.Fatal("an interframe has a size")
	}
	bad := append([]byte(nil), key...)
	bad[3] = 0
	if _, _, ok := vp8Size(bad); ok {
		t.Fatal("a bad start code has a size")
	}
}

// FuzzFrameSize: the size readers take any payload (a publisher's bytes) without panicking, and
// a size they return is within H.264's and VP8's limits.
func FuzzFrameSize(f *testing.F) {
	for _, s := range []string{"6764001eacd940a02ff970110000030001000003003c0f162d96", "180002670000",
		"67640028acd940780227e5c044000003000400000300f03c60c658", "5042009d012a8002684100"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, read := range []func([]byte) (int, int, bool){h264Size, vp8Size} {
			if w, h, ok := read(b); ok && (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
				t.Fatalf("%x: %dx%d", b, w, h)
			}
		}
	})
}
