package node

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// The debounce: a needed layer is wanted at once, an unneeded one only after the pause, the
// lowest always; the first call tells the publisher every layer.
func TestLayerDebounce(t *testing.T) {
	const pause = 3 * time.Second
	t0 := time.Unix(1000, 0)
	var st layerState
	step := func(need uint8, at time.Duration, wantMask uint8, wantChanged bool) {
		t.Helper()
		got, changed := st.next(need, 3, t0.Add(at), pause)
		if got != wantMask || changed != wantChanged {
			t.Fatalf("at %v need %03b: want %03b changed %v, got %03b changed %v", at, need, wantMask, wantChanged, got, changed)
		}
	}
	step(0b001, 0, 0b111, true)                       // first: every layer, told
	step(0b001, time.Second, 0b111, false)            // within the pause: nothing changes
	step(0b001, pause-time.Millisecond, 0b111, false) // still
	step(0b001, pause, 0b001, true)                   // paused after the pause
	step(0b000, pause+time.Second, 0b001, false)      // nothing needed: the lowest stays
	step(0b100, pause+2*time.Second, 0b101, true)     // resumed at once
	step(0b001, pause+3*time.Second, 0b101, false)    // a viewer switching back: no flap
	step(0b100, pause+4*time.Second, 0b101, false)    // and forth
	step(0b001, 2*pause+3*time.Second, 0b101, false)  // the pause counts from its last need
	step(0b001, 2*pause+4*time.Second, 0b001, true)   // paused a pause after it
	step(0b010, 2*pause+5*time.Second, 0b011, true)   // the middle one alone
	// Bits past the producer's layers are ignored.
	var two layerState
	if got, _ := two.next(0b111, 2, t0, pause); got != 0b011 {
		t.Fatalf("two layers: want 011, got %03b", got)
	}
}

// BenchmarkDemandedLayers: what the dynacast loop pays, ten times a second, for one simulcast
// producer with 100 subscribers' consumers (per op: one read of its demand).
func BenchmarkDemandedLayers(b *testing.B) {
	p := &Producer{kind: webrtc.RTPCodecTypeVideo, cache: newCache(webrtc.RTPCodecTypeVideo)}
	p.setRids([]string{"q", "h", "f"})
	pp := &pipe{}
	var cs []*Consumer
	for i := 0; i < 100; i++ {
		c := &Consumer{producer: p, sub: &Participant{}}
		pref := LayerPref{Layer: i % 3}
		c.lay.pref.Store(&pref)
		c.lay.target.Store(int32(i % 3))
		cs = append(cs, c)
	}
	pp.consumers.Store(&cs)
	p.pipes = []*pipe{pp}
	if m := p.DemandedLayers(); m != AllLayers {
		b.Fatalf("demand %03b", m)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.DemandedLayers()
	}
}
