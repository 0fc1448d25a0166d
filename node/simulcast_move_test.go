package node_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// layerFeed injects a three-layer VP8 stream into a remote producer, as a relay pipe would
// (each layer with its own sequence numbers, timestamps and picture numbers; a keyframe per
// layer every simKeyEvery frames, staggered), the payloads those of the simulcast publisher,
// with the generation in the layer byte's high nibble.
type layerFeed struct {
	stop, done chan struct{}
	once       sync.Once
	frames     atomic.Int64
}

func feedLayers(pr *node.Producer, gen uint32, k0 int, seed uint16) *layerFeed {
	f := &layerFeed{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(simFrame)
		defer tick.Stop()
		for k := k0; ; k++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			for l := 0; l < 3; l++ {
				key := k%simKeyEvery == l*simKeyEvery/3
				pic := (seed*uint16(l+1) + uint16(k)) & 0x7fff
				payload := []byte{0x90, 0xc0, 0x80 | byte(pic>>8), byte(pic), byte(seed) + byte(l*50+k)}
				if key {
					w, h := simSizes[l][0], simSizes[l][1]
					payload = append(payload, 0x50, 0x42, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
				} else {
					payload = append(payload, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0)
				}
				payload = append(payload, byte(gen)<<4|byte(l), byte(k>>8), byte(k))
				raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seed*uint16(l+3) + uint16(k),
					Timestamp: uint32(seed)*uint32(l+7)*1000 + uint32(k)*simTicks, SSRC: 100 + uint32(l), Marker: true}, Payload: payload}).Marshal()
				pr.InjectLayer(gen, l, raw)
			}
			f.frames.Add(1)
		}
	}()
	return f
}

func (f *layerFeed) end() { f.once.Do(func() { close(f.stop); <-f.done }) }

// TestMoveLayeredProducer: one switch serves resume and simulcast. A relayed simulcast
// producer's subscriber receives the top layer; the producer moves (its publisher resumed
// elsewhere: a new generation, piped in layer by layer) and the subscriber goes on with the
// new generation's top layer, from its first keyframe, as one stream (sequence numbers,
// PictureID, TL0PICIDX continuous; timestamps ahead by the wall-clock time between); the new
// origin is asked for that layer's keyframe.
func TestMoveLayeredProducer(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	w, _ := join(t, n, "r", "w", node.Grant{Subscribe: true})
	info := node.ProducerInfo{ID: "PRsim", Participant: "PAremote", Kind: "video", Codec: webrtc.MimeTypeVP8, ClockRate: 90000,
		Layers: []proto.Layer{{Rid: "q"}, {Rid: "h"}, {Rid: "f"}}}
	pr, err := w.Room().AddRemoteProducer(info, "n2")
	if err != nil {
		t.Fatal(err)
	}
	pr.SetUpstream(&layerKeyframes{})
	old := feedLayers(pr, pr.Generation(), 0, 100)
	t.Cleanup(old.end)
	_, rec := subscribeSim(t, n, "r", "s", &recorder{}, func(*node.Participant) {})
	rec.waitLayer(t, 2)

	info.Epoch = 1
	if _, gen, err := w.Room().MoveProducer(info, "n3"); err != nil || gen != 1 {
		t.Fatalf("move: %v, generation %d", err, gen)
	}
	up := &layerKeyframes{}
	pr.SetUpstream(up)
	nw := feedLayers(pr, 1, 1001, 30000) // layer 2 starts with interframes
	t.Cleanup(nw.end)
	checkFor(t, 10*time.Second, func() error {
		if p := rec.snapshot(); p[len(p)-1].gen != 1 {
			return fmt.Errorf("%d packets, none of the new generation last", len(p))
		}
		return nil
	})
	old.end()
	before := len(rec.snapshot())
	checkFor(t, 10*time.Second, func() error {
		if p := rec.snapshot(); len(p) < before+20 {
			return fmt.Errorf("%d packets after the old source ended, want 20", len(p)-before)
		}
		return nil
	})
	nw.end()
	if runs := checkSimStream(t, rec.snapshot()); fmt.Sprint(runs) != "[2 1:2]" {
		t.Fatalf("sources received in runs %v, want [2 1:2]", runs)
	}
	if !strings.Contains(up.String(), "2") {
		t.Fatalf("the new origin was asked for keyframes of layers %s, not of layer 2", up)
	}
}
