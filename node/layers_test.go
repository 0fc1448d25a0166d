package node

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestLayerChoice: MaxLayer is the highest layer the preference allows by number and by size
// (under a size limit a layer of unknown size does not fit; the lowest when none fits),
// whatever flows; without an
// allocator the target is the highest flowing layer up to it, else the lowest flowing one;
// SetTarget hands the choice to the allocator, capped at MaxLayer, and a lower preference
// still caps it.
func TestLayerChoice(t *testing.T) {
	pr := &Producer{id: "p", kind: webrtc.RTPCodecTypeVideo}
	pr.setRids([]string{"q", "h", "f"})
	sizes := [][2]int{{320, 180}, {640, 360}, {0, 0}} // the top layer's size not known yet
	for l, s := range sizes {
		pr.layers.stats[l].size.Store(uint32(s[0])<<16 | uint32(s[1]))
	}
	flowing := func(ls ...int) {
		for l := range pr.layers.stats {
			pr.layers.stats[l].last.Store(0)
		}
		for _, l := range ls {
			pr.layers.stats[l].last.Store(time.Now().UnixNano())
		}
	}
	c := &Consumer{producer: pr}
	c.initLayers()
	for _, x := range []struct {
		pref        LayerPref
		flow        []int
		max, target int
	}{
		{NoLayerPref, []int{0, 1, 2}, 2, 2},
		{LayerPref{Layer: 1}, []int{0, 1, 2}, 1, 1},
		{LayerPref{Layer: -1, MaxWidth: 700}, []int{0, 1, 2}, 1, 1}, // the top's size is unknown: it does not fit
		{LayerPref{Layer: -1, MaxWidth: 2000}, []int{0, 1, 2}, 1, 1},
		{LayerPref{Layer: -1, MaxHeight: 200}, []int{0, 1}, 0, 0},
		{LayerPref{Layer: -1, MaxWidth: 100}, []int{0, 1, 2}, 0, 0}, // none fits: the lowest
		{NoLayerPref, []int{0, 1}, 2, 1},                            // the top does not flow
		{LayerPref{Layer: 0}, []int{1, 2}, 0, 1},                    // only higher layers flow
		{LayerPref{Layer: 1}, nil, 1, 1},                            // nothing flows: the preference
	} {
		flowing(x.flow...)
		c.setPref(x.pref)
		if m, tg := c.MaxLayer(), c.Target(); m != x.max || tg != x.target {
			t.Errorf("pref %+v, flowing %v: MaxLayer %d target %d, want %d %d", x.pref, x.flow, m, tg, x.max, x.target)
		}
	}
	pr.layers.stats[2].size.Store(1280<<16 | 720)
	flowing(0, 1, 2)
	c.setPref(NoLayerPref)
	c.SetTarget(1) // an allocator's choice
	c.refreshTarget()
	if c.Target() != 1 {
		t.Fatalf("target %d after the allocator chose 1", c.Target())
	}
	c.SetTarget(5)
	if c.Target() != 2 {
		t.Fatalf("target %d, want it capped at MaxLayer 2", c.Target())
	}
	c.setPref(LayerPref{Layer: -1, MaxWidth: 700})
	if c.Target() != 1 {
		t.Fatalf("target %d under a 700 px preference, want 1", c.Target())
	}
}
