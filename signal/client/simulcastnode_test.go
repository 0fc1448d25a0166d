package client_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestPublishSimulcastNode: against a real node, PublishSimulcast makes one producer with three
// layers, lowest first; a subscriber is told (OnLayerChanged) that it receives the top one, and
// after SetPreferredLayer(0) the lowest, while its one track keeps receiving packets.
func TestPublishSimulcastNode(t *testing.T) {
	n := testNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := client.Dial(ctx, n.URL, client.Options{Token: n.Token("sim", "alice"), LoopbackOnly: true, NoAutoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	rids, widths := []string{"q", "h", "f"}, []int{160, 320, 640}
	var layers []*client.SimulcastLayer
	for _, rid := range rids {
		l, err := client.NewSimulcastLayer(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "alice", rid)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	res, err := pub.PublishSimulcast(ctx, layers...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Producers) != 1 {
		t.Fatalf("%d producers, want one: %+v", len(res.Producers), res.Producers)
	}
	producer := res.Producers[0].ID
	if ls := res.Producers[0].Layers; len(ls) != 3 || ls[0].Rid != "q" || ls[1].Rid != "h" || ls[2].Rid != "f" {
		t.Errorf("the producer's layers are %+v, want q, h, f (lowest first, the order of the layers given)", ls)
	}
	stop := sendLayers(layers, widths)
	defer stop()

	changed := make(chan proto.LayerChangedData, 16)
	packets := make(chan struct{}, 4096)
	sub, err := client.Dial(ctx, n.URL, client.Options{Token: n.Token("sim", "bob"), LoopbackOnly: true,
		OnLayerChanged: func(d proto.LayerChangedData) { changed <- d },
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				select {
				case packets <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitLayer := func(want int) {
		t.Helper()
		for {
			select {
			case d := <-changed:
				if d.Producer != producer {
					t.Fatalf("layerChanged for %s, want %s", d.Producer, producer)
				}
				if d.Layer == want {
					if d.Rid != rids[want] {
						t.Errorf("layer %d has rid %q, want %q", want, d.Rid, rids[want])
					}
					return
				}
			case <-ctx.Done():
				t.Fatalf("no layerChanged to layer %d", want)
			}
		}
	}
	waitLayer(2)
	zero := 0
	if err := sub.SetPreferredLayer(ctx, producer, &zero, 0, 0); err != nil {
		t.Fatal(err)
	}
	waitLayer(0)
	for len(packets) > 0 {
		<-packets
	}
	for i := 0; i < 10; i++ {
		select {
		case <-packets:
		case <-ctx.Done():
			t.Fatal("no packets on the lowest layer")
		}
	}
}

// sendLayers writes a VP8 keyframe of each layer's width every 33 ms, all layers with one
// timestamp, until stop.
func sendLayers(layers []*client.SimulcastLayer, widths []int) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			for i, l := range layers {
				// Payload descriptor (start of partition 0), then a VP8 keyframe header with its size.
				payload := make([]byte, 300)
				copy(payload, []byte{0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a})
				binary.LittleEndian.PutUint16(payload[7:], uint16(widths[i]))
				binary.LittleEndian.PutUint16(payload[9:], uint16(widths[i]*9/16))
				_ = l.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
