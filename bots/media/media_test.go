package media

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

func TestVideoIVF(t *testing.T) {
	checkIVF(t, VideoIVF, 640, 360, 1000, 2000)
}

// TestLayers checks the simulcast layers: lowest first, each the size it claims, a keyframe
// every second at the same frames as the top layer, and bitrates that make the layers distinct
// (the shaping test's 600 kbit/s cap fits the middle layer with audio, and not the top).
func TestLayers(t *testing.T) {
	ls := Layers()
	if len(ls) != 3 || ls[2].Width != 640 || !bytes.Equal(ls[2].IVF, VideoIVF) {
		t.Fatalf("want three layers, the top one the video clip")
	}
	rates := [][2]float64{{80, 150}, {220, 360}, {1000, 2000}}
	for i, l := range ls {
		t.Run(l.Rid, func(t *testing.T) { checkIVF(t, l.IVF, l.Width, l.Height, rates[i][0], rates[i][1]) })
	}
}

// checkIVF checks a VP8 clip: its size, 300 frames at 30 fps, a keyframe every 30 frames, and a
// bitrate between minKbps and maxKbps.
func checkIVF(t *testing.T, ivf []byte, width, height int, minKbps, maxKbps float64) {
	t.Helper()
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(ivf))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.FourCC != "VP80" {
		t.Errorf("fourcc %q, want VP80", hdr.FourCC)
	}
	if int(hdr.Width) != width || int(hdr.Height) != height {
		t.Errorf("size %dx%d, want %dx%d", hdr.Width, hdr.Height, width, height)
	}
	if hdr.TimebaseDenominator != 30 || hdr.TimebaseNumerator != 1 || hdr.NumFrames != 300 {
		t.Errorf("timebase %d/%d, %d frames: want 1/30, 300 frames", hdr.TimebaseNumerator, hdr.TimebaseDenominator, hdr.NumFrames)
	}
	frames, keyframes, size := 0, 0, 0
	for {
		frame, fh, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", frames, err)
		}
		if len(frame) == 0 {
			t.Fatalf("frame %d is empty", frames)
		}
		// ivfreader scales the pts by denominator/numerator (30/1 here): frame n reads 30n.
		if fh.Timestamp != uint64(frames)*30 {
			t.Errorf("frame %d has timestamp %d, want %d", frames, fh.Timestamp, frames*30)
		}
		// VP8 frame tag: bit 0 of the first byte is 0 for a keyframe (RFC 6386 9.1).
		key := frame[0]&0x01 == 0
		if key {
			keyframes++
		}
		if want := frames%30 == 0; key != want {
			t.Errorf("frame %d: keyframe %v, want %v", frames, key, want)
		}
		frames++
		size += len(frame)
	}
	if frames < 295 || frames > 305 {
		t.Errorf("%d frames, want ~300", frames)
	}
	if keyframes != (frames+29)/30 {
		t.Errorf("%d keyframes in %d frames", keyframes, frames)
	}
	kbps := float64(size) * 8 / (float64(frames) / 30) / 1000
	t.Logf("%d frames, %d keyframes, %d payload bytes, %.0f kbit/s", frames, keyframes, size, kbps)
	if kbps < minKbps || kbps > maxKbps {
		t.Errorf("video bitrate %.0f kbit/s, want %.0f..%.0f", kbps, minKbps, maxKbps)
	}
}

func TestAudioOgg(t *testing.T) {
	r, hdr, err := oggreader.NewWith(bytes.NewReader(AudioOgg))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.SampleRate != 48000 {
		t.Errorf("sample rate %d, want 48000", hdr.SampleRate)
	}
	if hdr.Channels < 1 || hdr.Channels > 2 {
		t.Errorf("%d channels", hdr.Channels)
	}
	pages, size := 0, 0
	var last uint64
	var steps []uint64
	for {
		payload, ph, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if typ, ok := ph.HeaderType(payload); ok {
			if typ != oggreader.HeaderOpusTags {
				t.Errorf("unexpected header page %q", typ)
			}
			continue
		}
		steps = append(steps, ph.GranulePosition-last)
		last = ph.GranulePosition
		pages++
		size += len(payload)
	}
	if pages < 495 || pages > 505 {
		t.Errorf("%d audio pages, want ~500", pages)
	}
	// Every page carries one 20 ms frame: 960 samples at 48 kHz. The last page may be
	// shorter in granule position (end trimming).
	for i, s := range steps {
		if s != 960 && i != len(steps)-1 {
			t.Errorf("page %d advances the granule position by %d, want 960", i, s)
		}
	}
	secs := float64(last-uint64(hdr.PreSkip)) / 48000
	t.Logf("%d audio pages, %.3f s, %d payload bytes, %.1f kbit/s", pages, secs, size, float64(size)*8/secs/1000)
	if secs < 9.9 || secs > 10.1 {
		t.Errorf("duration %.3f s, want 10", secs)
	}
}
