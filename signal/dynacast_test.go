package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// simulcastRids are the test publisher's layers, lowest first.
var simulcastRids = []string{"q", "h", "f"}

// simulcastPub is a publisher of one VP8 track in three simulcast layers, from a pion
// PeerConnection of its own (the Go client publishes no simulcast). Like a browser told
// layersWanted, it stops sending the layers marked false and resumes the others, restarting a
// layer with a keyframe.
type simulcastPub struct {
	*peer
	id     string // the producer
	sent   [3]atomic.Int64
	wanted atomic.Uint32 // bit i: layer i is sent

	mu     sync.Mutex
	wants  []wantedAt // layersWanted received, in order
	resume [3]bool    // the next packet of the layer is a keyframe
}

type wantedAt struct {
	at     time.Time
	layers map[string]bool
}

// mask is a layersWanted's layers as a mask.
func (w wantedAt) mask() uint8 {
	var m uint8
	for i, rid := range simulcastRids {
		if w.layers[rid] {
			m |= 1 << i
		}
	}
	return m
}

// wanted returns the layersWanted received so far.
func (s *simulcastPub) received() []wantedAt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wantedAt(nil), s.wants...)
}

// publishSimulcast joins identity to room on e and publishes the three layers.
func publishSimulcast(t *testing.T, e *env, room, identity string) *simulcastPub {
	t.Helper()
	s := &simulcastPub{}
	s.wanted.Store(0b111)
	p, err := e.dialWith(room, identity, true, false, func(o *client.Options) {
		prev := o.OnNotification
		o.OnNotification = func(method string, d json.RawMessage) {
			prev(method, d)
			if method != proto.MethodLayersWanted {
				return
			}
			var w proto.LayersWantedData
			if json.Unmarshal(d, &w) != nil || w.Producer != s.id {
				return
			}
			s.mu.Lock()
			s.wants = append(s.wants, wantedAt{time.Now(), w.Layers})
			old := uint8(s.wanted.Load())
			m := wantedAt{layers: w.Layers}.mask()
			for i := range s.resume {
				if m&^old&(1<<i) != 0 {
					s.resume[i] = true
				}
			}
			s.wanted.Store(uint32(m))
			s.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s.peer = p

	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{PayloadType: 96, RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := vp8pub.LoopbackAPI(me).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, rid := range simulcastRids {
		tr, err := webrtc.NewTrackLocalStaticRTP(vp8, "v", "s", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	tr, err := pc.AddTransceiverFromTrack(tracks[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tracks[1:] {
		if err := tr.Sender().AddEncoding(x); err != nil {
			t.Fatal(err)
		}
	}
	go func() { // drain the node's feedback
		for {
			if _, _, err := tr.Sender().ReadRTCP(); err != nil {
				return
			}
		}
	}()
	var res proto.PublishResult
	vp8pub.Negotiate(t, pc, func(offer string) (string, error) {
		err := p.Request(context.Background(), proto.MethodPublish, proto.PublishData{SDP: offer}, &res)
		return res.SDP, err
	})
	for _, pr := range res.Producers {
		if pr.Mid == tr.Mid() {
			s.id = pr.ID
		}
	}
	if s.id == "" {
		t.Fatalf("no producer for mid %q in %+v", tr.Mid(), res.Producers)
	}
	var midID, ridID uint8
	for _, x := range tr.Sender().GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(x.ID)
		}
	}
	if midID == 0 || ridID == 0 {
		t.Fatalf("mid and rid header extensions not negotiated: %+v", tr.Sender().GetParameters().HeaderExtensions)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go s.send(tracks, tr.Mid(), midID, ridID, stop, done)
	t.Cleanup(func() { close(stop); <-done })
	return s
}

// vp8Sizes are the layers' frame sizes, written in their keyframes.
var vp8Sizes = [3][2]int{{320, 180}, {640, 360}, {1280, 720}}

// send writes one packet (a frame) of each wanted layer every 33 ms, a keyframe every tenth
// frame and at a layer's resume.
func (s *simulcastPub) send(tracks []*webrtc.TrackLocalStaticRTP, mid string, midID, ridID uint8, stop, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	var seq [3]uint16
	for frame := uint32(0); ; frame++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for l, tr := range tracks {
			if s.wanted.Load()&(1<<l) == 0 {
				continue
			}
			s.mu.Lock()
			key := s.resume[l] || frame%10 == 0
			s.resume[l] = false
			s.mu.Unlock()
			payload := make([]byte, 200+200*l)
			payload[0] = 0x10 // VP8 descriptor: start of partition 0
			payload[1] = 0x11 // frame tag: an interframe, shown
			if key {
				payload[1] = 0x10 // a keyframe, shown, and its start code and size
				copy(payload[4:], []byte{0x9d, 0x01, 0x2a, byte(vp8Sizes[l][0]), byte(vp8Sizes[l][0] >> 8), byte(vp8Sizes[l][1]), byte(vp8Sizes[l][1] >> 8)})
			}
			seq[l]++
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq[l], Timestamp: frame * 3000, Marker: true}, Payload: payload}
			_ = pkt.Header.SetExtension(midID, []byte(mid))
			_ = pkt.Header.SetExtension(ridID, []byte(simulcastRids[l]))
			if tr.WriteRTP(pkt) == nil {
				s.sent[l].Add(1)
			}
		}
	}
}

// subscribeAt joins a subscriber to room on e that prefers layer of producer, then subscribes.
func subscribeAt(t *testing.T, e *env, room, identity, producer string, layer int) *peer {
	t.Helper()
	sub, err := e.dial(room, identity, false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if e.node.Producer(room, producer) == nil {
			return fmt.Errorf("%s does not know producer %s yet", e.node.ID(), producer)
		}
		return nil
	})
	setPreferredLayer(t, sub, producer, layer)
	if err := sub.Request(context.Background(), proto.MethodSubscribe, proto.ProducerData{Producer: producer}, nil); err != nil {
		t.Fatal(err)
	}
	return sub
}

func setPreferredLayer(t *testing.T, p *peer, producer string, layer int) {
	t.Helper()
	if err := p.Request(context.Background(), proto.MethodSetPreferredLayer, proto.PreferredLayerData{Producer: producer, Layer: &layer}, nil); err != nil {
		t.Fatal(err)
	}
}

// waitWanted waits until the publisher's last layersWanted asks for want, and returns it.
func waitWanted(t *testing.T, s *simulcastPub, want uint8, timeout time.Duration) wantedAt {
	t.Helper()
	var last wantedAt
	checkFor(t, timeout, func() error {
		ws := s.received()
		if len(ws) == 0 {
			return fmt.Errorf("no layersWanted yet")
		}
		if last = ws[len(ws)-1]; last.mask() != want {
			return fmt.Errorf("layersWanted %v, want %03b", last.layers, want)
		}
		return nil
	})
	return last
}

// layerOf is the layer a subscriber was last told it receives of producer (-1: none).
func (p *peer) layerOf(producer string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := -1
	for _, n := range p.notes {
		var d proto.LayerChangedData
		if n.method == proto.MethodLayerChanged && json.Unmarshal(n.data, &d) == nil && d.Producer == producer {
			l = d.Layer
		}
	}
	return l
}

// activeLayers is the mask of a producer's layers that flow on e.
func activeLayers(e *env, room, producer string) uint8 {
	p := e.node.Producer(room, producer)
	if p == nil {
		return 0
	}
	var m uint8
	for i, l := range p.Layers() {
		if l.Active {
			m |= 1 << i
		}
	}
	return m
}

// TestDynacastSingleNode: a publisher of three layers and a subscriber on one node that
// prefers the lowest. The publisher is told every layer at first, and to pause the upper two
// only after DynacastPause; they stop flowing. The subscriber asks for the top layer: it is
// resumed at once (the subscriber switches to it), and asking for the lowest again and back
// within the pause makes the encoder flap not at all. A pause only follows a whole pause
// without need.
func TestDynacastSingleNode(t *testing.T) {
	e := newEnv(t, 1, 0)
	pub := publishSimulcast(t, e, "r", "pub")
	first := waitWanted(t, pub, 0b111, 10*time.Second)
	sub := subscribeAt(t, e, "r", "sub", pub.id, 0)
	waitPackets(t, sub, pub.id)
	paused := waitWanted(t, pub, 0b001, 10*time.Second)
	if d := paused.at.Sub(first.at); d < node.DynacastPause-node.DynacastTick {
		t.Fatalf("layers paused %v after the first layersWanted, before the pause of %v", d, node.DynacastPause)
	}
	checkFor(t, 5*time.Second, func() error {
		if m := activeLayers(e, "r", pub.id); m != 0b001 {
			return fmt.Errorf("active layers %03b, want 001", m)
		}
		return nil
	})
	if got := e.metric("cascade_layers_paused"); got != 2 {
		t.Fatalf("cascade_layers_paused %v, want 2", got)
	}

	setPreferredLayer(t, sub, pub.id, 2)
	waitWanted(t, pub, 0b101, 5*time.Second)
	checkFor(t, 10*time.Second, func() error {
		if l := sub.layerOf(pub.id); l != 2 {
			return fmt.Errorf("subscriber on layer %d, want 2", l)
		}
		return nil
	})
	n := len(pub.received())
	// Down and up again within the pause: the top layer stays on throughout.
	setPreferredLayer(t, sub, pub.id, 0)
	checkFor(t, 10*time.Second, func() error {
		if l := sub.layerOf(pub.id); l != 0 {
			return fmt.Errorf("subscriber on layer %d, want 0", l)
		}
		return nil
	})
	setPreferredLayer(t, sub, pub.id, 2)
	checkFor(t, 10*time.Second, func() error {
		if l := sub.layerOf(pub.id); l != 2 {
			return fmt.Errorf("subscriber on layer %d, want 2", l)
		}
		return nil
	})
	if ws := pub.received(); len(ws) != n {
		t.Fatalf("a viewer switching down and up made the encoder flap: %v", ws[n:])
	}
	if got := e.metric("cascade_layers_wanted_total"); got < 3 {
		t.Fatalf("cascade_layers_wanted_total %v, want at least 3", got)
	}
}

// TestDynacastTwoNodes: a publisher of three layers on node A, no subscriber there, and a
// subscriber on node B that prefers the lowest layer. B's demand reaches A with its pipe
// request and over the cluster: A's relay pipe to B carries only layer 0, and the publisher
// is told to send only layer 0 (after the pause): the upper layers stop flowing on A. When the
// subscriber asks for the top layer, B's demand grows, A's pipe carries it, the publisher is
// told to resume it, and the subscriber switches to it. Then a viewer on A wants the top layer and B's the lowest: the
// publisher sends both, and A relays to B about as many packets as it got of the lowest layer,
// not of both.
func TestDynacastTwoNodes(t *testing.T) {
	envs := newCluster(t, 2, 3)
	a, b := envs[0], envs[1]
	pub := publishSimulcast(t, a, "r", "pub")
	first := waitWanted(t, pub, 0b111, 10*time.Second)
	sub := subscribeAt(t, b, "r", "sub", pub.id, 0)
	waitPackets(t, sub, pub.id)
	checkFor(t, 10*time.Second, func() error {
		if m, ok := a.pipes.PipeLayers(b.node.ID(), pub.id); !ok || m != 0b001 {
			return fmt.Errorf("a's pipe to b carries %03b (piped: %v), want 001", m, ok)
		}
		return nil
	})
	paused := waitWanted(t, pub, 0b001, 15*time.Second)
	if d := paused.at.Sub(first.at); d < node.DynacastPause-node.DynacastTick {
		t.Fatalf("layers paused %v after the first layersWanted, before the pause of %v", d, node.DynacastPause)
	}
	checkFor(t, 5*time.Second, func() error {
		if m := activeLayers(a, "r", pub.id); m != 0b001 {
			return fmt.Errorf("active layers on a %03b, want 001", m)
		}
		if m := activeLayers(b, "r", pub.id); m != 0b001 {
			return fmt.Errorf("active layers on b %03b, want 001", m)
		}
		return nil
	})
	if got := a.metric("cascade_layers_paused"); got != 2 {
		t.Fatalf("cascade_layers_paused on a %v, want 2", got)
	}
	before := sub.received(pub.id)
	checkFor(t, 5*time.Second, func() error {
		if got := sub.received(pub.id); got < before+10 {
			return fmt.Errorf("subscriber received %d packets since the pause, want 10", got-before)
		}
		return nil
	})

	setPreferredLayer(t, sub, pub.id, 2)
	checkFor(t, 10*time.Second, func() error {
		if m, _ := a.pipes.PipeLayers(b.node.ID(), pub.id); m != 0b101 {
			return fmt.Errorf("a's pipe to b carries %03b, want 101", m)
		}
		return nil
	})
	waitWanted(t, pub, 0b101, 10*time.Second)
	checkFor(t, 5*time.Second, func() error {
		if m := activeLayers(a, "r", pub.id); m != 0b101 {
			return fmt.Errorf("active layers on a %03b, want 101", m)
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error {
		if l := sub.layerOf(pub.id); l != 2 {
			return fmt.Errorf("subscriber on b on layer %d, want 2", l)
		}
		return nil
	})
	if got := b.metric("cascade_layer_demands_total"); got < 1 {
		t.Fatalf("cascade_layer_demands_total on b %v", got)
	}

	// A viewer on A wants the top layer, B's the lowest again: the publisher sends both, and
	// the relay to B carries only the lowest (its packets counted against each layer's).
	setPreferredLayer(t, sub, pub.id, 0)
	local := subscribeAt(t, a, "r", "local", pub.id, 2)
	waitPackets(t, local, pub.id)
	checkFor(t, 10*time.Second, func() error {
		if m, _ := a.pipes.PipeLayers(b.node.ID(), pub.id); m != 0b001 {
			return fmt.Errorf("a's pipe to b carries %03b, want 001", m)
		}
		if m := activeLayers(a, "r", pub.id); m&0b101 != 0b101 {
			return fmt.Errorf("active layers on a %03b, want 0 and 2", m)
		}
		return nil
	})
	relayed := func() float64 { return a.metric(`cascade_relay_packets_total{direction="out"}`) }
	r0, s0, s2 := relayed(), pub.sent[0].Load(), pub.sent[2].Load()
	checkFor(t, 10*time.Second, func() error {
		if n := pub.sent[2].Load() - s2; n < 60 {
			return fmt.Errorf("%d packets of layer 2 sent, want 60", n)
		}
		return nil
	})
	r, n0, n2 := relayed()-r0, pub.sent[0].Load()-s0, pub.sent[2].Load()-s2
	if r < float64(n0)/2 || r > float64(n0)+10 {
		t.Fatalf("relayed %v packets to b while the publisher sent %d of layer 0 and %d of layer 2: want about layer 0's", r, n0, n2)
	}
}

// TestDynacastRelayChain: demand climbs a relay tree of two hops (K = 1: A relays to B, B to
// C). A viewer on B wants the lowest layer, one on C the top: C's pipe from B carries the top
// layer only, B's pipe from A both, and the publisher pauses the middle one. When C's viewer
// asks for the middle layer instead, the change reaches A through B: the middle layer resumes
// and the top one is paused.
func TestDynacastRelayChain(t *testing.T) {
	envs := newCluster(t, 3, 1)
	a, b, c := envs[0], envs[1], envs[2]
	pub := publishSimulcast(t, a, "r", "pub")
	onB := subscribeAt(t, b, "r", "b", pub.id, 0)
	waitPackets(t, onB, pub.id)
	onC := subscribeAt(t, c, "r", "c", pub.id, 2)
	waitPackets(t, onC, pub.id)
	pipes := func(ab, bc uint8) {
		t.Helper()
		checkFor(t, 10*time.Second, func() error {
			if m, ok := a.pipes.PipeLayers(b.node.ID(), pub.id); !ok || m != ab {
				return fmt.Errorf("a's pipe to b carries %03b (piped: %v), want %03b", m, ok, ab)
			}
			if m, ok := b.pipes.PipeLayers(c.node.ID(), pub.id); !ok || m != bc {
				return fmt.Errorf("b's pipe to c carries %03b (piped: %v), want %03b", m, ok, bc)
			}
			return nil
		})
	}
	pipes(0b101, 0b100)
	waitWanted(t, pub, 0b101, 15*time.Second)
	checkFor(t, 10*time.Second, func() error {
		if lb, lc := onB.layerOf(pub.id), onC.layerOf(pub.id); lb != 0 || lc != 2 {
			return fmt.Errorf("viewers on layers %d (b) and %d (c), want 0 and 2", lb, lc)
		}
		return nil
	})

	setPreferredLayer(t, onC, pub.id, 1)
	pipes(0b011, 0b010)
	waitWanted(t, pub, 0b011, 15*time.Second)
	checkFor(t, 10*time.Second, func() error {
		if l := onC.layerOf(pub.id); l != 1 {
			return fmt.Errorf("viewer on c on layer %d, want 1", l)
		}
		return nil
	})
}

// TestDynacastWHIPUntold: a WHIP encoder cannot be told to pause a layer, so none of its layers
// counts as paused; a WebSocket publisher of the same room, published after it and watched the
// same way, is told, and only its two layers count.
func TestDynacastWHIPUntold(t *testing.T) {
	e := newEnv(t, 1, 0)
	whip := whipSimulcast(t, e, "r")
	pub := publishSimulcast(t, e, "r", "pub")
	subscribeAt(t, e, "r", "w", whip, 0)
	subscribeAt(t, e, "r", "p", pub.id, 0)
	waitWanted(t, pub, 0b001, 15*time.Second) // the WHIP producer's pause was due before
	if got := e.metric("cascade_layers_paused"); got != 2 {
		t.Fatalf("cascade_layers_paused %v, want 2 (the WebSocket publisher's)", got)
	}
	if got := e.metric("cascade_layers_wanted_total"); got != 2 {
		t.Fatalf("cascade_layers_wanted_total %v, want 2 (the WebSocket publisher's first and its pause)", got)
	}
}
