package node

import (
	"testing"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestPausedRate: a paused middle layer's rate is guessed between its active neighbours (the
// shaping test's layers: 160x90 ~90, 640x360 ~1140 kbit/s; the middle one measures ~290), and
// above the lowest alone when the top is paused too; nothing without an active layer below.
func TestPausedRate(t *testing.T) {
	ls := []proto.Layer{
		{Rid: "q", Width: 160, Height: 90, Bitrate: 90_000, Active: true},
		{Rid: "h", Width: 320, Height: 180},
		{Rid: "f", Width: 640, Height: 360, Bitrate: 1_140_000, Active: true},
	}
	if r := pausedRate(ls, 1); r < 250_000 || r > 400_000 {
		t.Errorf("middle between 90 and 1140 kbit/s: guessed %.0f, want 250-400 kbit/s", r)
	}
	ls[2].Active, ls[2].Bitrate = false, 0
	if r := pausedRate(ls, 1); r < 200_000 || r > 400_000 {
		t.Errorf("middle above 90 kbit/s alone: guessed %.0f, want 200-400 kbit/s", r)
	}
	ls[0].Active = false
	if r := pausedRate(ls, 1); r != 0 {
		t.Errorf("no active layer below: guessed %.0f, want 0", r)
	}
}
