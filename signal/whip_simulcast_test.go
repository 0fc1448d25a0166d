package signal_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// whipSimulcast publishes, over WHIP to e, a VP8 track in three rid layers (q, h, f: 320x180,
// 640x360, 1280x720; every frame a keyframe, its layer in its last byte) until the test ends,
// and returns the producer's id once the room lists its three layers, active, with their sizes.
func whipSimulcast(t *testing.T, e *env, room string) string {
	t.Helper()
	enc, err := vp8pub.LoopbackAPI(vp8pub.SimulcastEngine(t)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enc.Close() })
	rids := []string{"q", "h", "f"}
	sizes := [][2]int{{320, 180}, {640, 360}, {1280, 720}}
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, rid := range rids {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "obs", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	sender, err := enc.AddTrack(tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	offer := vp8pub.Offer(t, enc)
	if !strings.Contains(offer, "a=simulcast:send q;h;f") {
		t.Fatalf("the encoder offers no simulcast:\n%s", offer)
	}
	status, answer, _ := e.post("/whip/"+room, e.token(room, "obs", true, false), "application/sdp", offer)
	if status != http.StatusCreated {
		t.Fatalf("whip: %d %s", status, answer)
	}
	if err := enc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var midID, ridID uint8
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(x.ID)
		}
	}
	mid := enc.GetTransceivers()[0].Mid()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // every frame a keyframe, its layer at the end
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for l, tr := range tracks {
				w, h := sizes[l][0], sizes[l][1]
				hdr := rtp.Header{Version: 2, SequenceNumber: uint16(k), Timestamp: uint32(k) * 1800, Marker: true}
				_ = hdr.SetExtension(midID, []byte(mid))
				_ = hdr.SetExtension(ridID, []byte(rids[l]))
				_ = tr.WriteRTP(&rtp.Packet{Header: hdr, Payload: []byte{0x10, 0x50, 0x42, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8), byte(l)}})
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	var id string
	checkFor(t, 10*time.Second, func() error {
		ps := e.node.Room(room).Producers()
		if len(ps) != 1 || len(ps[0].Layers) != 3 {
			return fmt.Errorf("producers %+v", ps)
		}
		for i, l := range ps[0].Layers {
			if l.Rid != rids[i] || !l.Active || l.Width != sizes[i][0] || l.Height != sizes[i][1] {
				return fmt.Errorf("layer %d: %+v", i, l)
			}
		}
		id = ps[0].ID
		return nil
	})
	return id
}

// TestWHIPSimulcast: a WHIP encoder (pion) offers one VP8 section with three rids (a=rid,
// a=simulcast); the node accepts it as one producer with three layers, lowest first, whose
// sizes it reads from their keyframes. A WHEP player, which has no preference, receives the top
// layer only; a WebSocket viewer is told its layer (layerChanged).
func TestWHIPSimulcast(t *testing.T) {
	e := newEnv(t, 1, 100)
	id := whipSimulcast(t, e, "live")

	ws := e.join("live", "ws-viewer", false, true)
	waitPackets(t, ws, id)
	checkFor(t, 5*time.Second, func() error {
		if !ws.hasNote(proto.MethodLayerChanged, `"layer":2,"rid":"f"`) {
			return fmt.Errorf("no layerChanged to layer 2")
		}
		return nil
	})

	player, err := loopbackAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer player.Close()
	var top, other atomic.Int64
	player.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if n := len(p.Payload); n > 0 && p.Payload[n-1] == 2 {
				top.Add(1)
			} else {
				other.Add(1)
			}
		}
	})
	if _, err := player.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	status, answer, _ := e.post("/whep/live", e.token("live", "player", false, true), "application/sdp", vp8pub.Offer(t, player))
	if status != http.StatusCreated {
		t.Fatalf("whep: %d %s", status, answer)
	}
	if err := player.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := top.Load(); n < 20 {
			return fmt.Errorf("%d packets of the top layer", n)
		}
		return nil
	})
	if n := other.Load(); n != 0 {
		t.Fatalf("the player received %d packets of other layers than the top one", n)
	}
}

// TestClusterSimulcast: a simulcast producer published on one node keeps its layers on the
// node it is relayed to (each layer under its own relay SSRC, with the sizes read there too;
// dynacast: only the layers its viewers need flow there). A viewer there starts on the top
// layer, and moves to the lowest when it asks for layer 0 (setPreferredLayer), told each time by
// layerChanged; media keeps flowing.
// The origin's pipe then carries layer 0 only (its layer mask, for dynacast): the edge's other
// layers stop, the viewer's media goes on. When the viewer asks for the top layer again, the
// edge's demand reopens it and the viewer switches back.
func TestClusterSimulcast(t *testing.T) {
	envs := newCluster(t, 2, 3)
	id := whipSimulcast(t, envs[0], "live")
	viewer := envs[1].join("live", "viewer", false, true)
	waitPackets(t, viewer, id)
	checkFor(t, 10*time.Second, func() error {
		if !viewer.hasNote(proto.MethodLayerChanged, `"layer":2,"rid":"f"`) {
			return fmt.Errorf("no layerChanged to layer 2")
		}
		pr := envs[1].node.Producer("live", id)
		if pr == nil {
			return fmt.Errorf("no producer %s on the edge", id)
		}
		if l := pr.Layers()[2]; !l.Active || l.Width == 0 {
			return fmt.Errorf("edge layer 2: %+v", l)
		}
		return nil
	})
	// Dynacast: the edge demands only the layer its viewer takes, and gets only that one.
	checkFor(t, 10*time.Second, func() error {
		if ls := envs[1].node.Producer("live", id).Layers(); ls[0].Active || ls[1].Active || !ls[2].Active {
			return fmt.Errorf("edge layers %+v, want layer 2 only", ls)
		}
		return nil
	})
	zero := 0
	if err := viewer.Request(context.Background(), proto.MethodSetPreferredLayer, proto.PreferredLayerData{Producer: id, Layer: &zero}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if !viewer.hasNote(proto.MethodLayerChanged, `"layer":0,"rid":"q"`) {
			return fmt.Errorf("no layerChanged to layer 0")
		}
		return nil
	})
	before := viewer.received(id)
	checkFor(t, 10*time.Second, func() error {
		if n := viewer.received(id) - before; n < 20 {
			return fmt.Errorf("%d packets after the switch", n)
		}
		return nil
	})
	if !envs[0].pipes.SetLayers(envs[1].node.ID(), id, 1) {
		t.Fatal("no pipe of the producer to the edge")
	}
	if envs[0].pipes.SetLayers("nobody", id, 1) {
		t.Fatal("a pipe to nobody")
	}
	checkFor(t, 10*time.Second, func() error {
		ls := envs[1].node.Producer("live", id).Layers()
		if !ls[0].Active || ls[1].Active || ls[2].Active {
			return fmt.Errorf("edge layers %+v, want layer 0 only", ls)
		}
		return nil
	})
	before = viewer.received(id)
	checkFor(t, 10*time.Second, func() error {
		if n := viewer.received(id) - before; n < 20 {
			return fmt.Errorf("%d packets with layer 0 alone", n)
		}
		return nil
	})
	// The viewer asks for the top layer again: the edge's demand (dynacast) reopens it.
	two := 2
	if err := viewer.Request(context.Background(), proto.MethodSetPreferredLayer, proto.PreferredLayerData{Producer: id, Layer: &two}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if !envs[1].node.Producer("live", id).Layers()[2].Active {
			return fmt.Errorf("edge layer 2 inactive after the viewer asked for it")
		}
		if viewer.layerOf(id) != 2 {
			return fmt.Errorf("viewer on layer %d, want 2", viewer.layerOf(id))
		}
		return nil
	})
}
