package node_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// simPacket is what a subscriber of the simulcast track received in one packet.
type simPacket struct {
	seq       uint16
	ts        uint32
	pic       int
	tl0       int
	layer, k  int
	gen       int // the source's generation (the layer byte's high nibble)
	key       bool
	picBits15 bool
}

type simReceived struct {
	mu   sync.Mutex
	pkts []simPacket
}

func (r *simReceived) snapshot() []simPacket {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]simPacket(nil), r.pkts...)
}

// waitLayer waits until the last packet received is of layer l.
func (r *simReceived) waitLayer(t *testing.T, l int) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		p := r.snapshot()
		if len(p) < 5 || p[len(p)-1].layer != l || p[len(p)-5].layer != l {
			return fmt.Errorf("%d packets, not on layer %d", len(p), l)
		}
		return nil
	})
}

// parseSim reads a forwarded packet of the simulcast publisher.
func parseSim(p *rtp.Packet) (simPacket, bool) {
	b := p.Payload
	out := simPacket{seq: p.SequenceNumber, ts: p.Timestamp, pic: -1, tl0: -1}
	if n := len(b); n >= 5 && (b[0] == 24 || b[0] == 0x41) { // H264: a STAP-A or a slice
		out.key = b[0] == 24
		out.layer, out.gen, out.k = int(b[n-3]&0x0f), int(b[n-3]>>4), int(b[n-2])<<8|int(b[n-1])
		return out, true
	}
	if len(b) < 2 || b[0]&0x80 == 0 {
		return out, false
	}
	x, i := b[1], 2
	if x&0x80 != 0 {
		if b[i]&0x80 != 0 {
			out.pic, out.picBits15 = int(b[i]&0x7f)<<8|int(b[i+1]), true
			i += 2
		} else {
			out.pic = int(b[i])
			i++
		}
	}
	if x&0x40 != 0 {
		out.tl0 = int(b[i])
		i++
	}
	if x&0x30 != 0 {
		i++
	}
	if len(b) < i+13 {
		return out, false
	}
	out.key = b[i]&0x01 == 0
	out.layer, out.gen, out.k = int(b[i+10]&0x0f), int(b[i+10]>>4), int(b[i+11])<<8|int(b[i+12])
	return out, true
}

// subscribeSim joins identity to room (listener l) and subscribes to the room's video with a
// recvonly offer after pref(p) ran; it records what it receives.
func subscribeSim(t *testing.T, n *node.Node, room, identity string, l node.Listener, pref func(*node.Participant)) (*node.Participant, *simReceived) {
	t.Helper()
	pc := recvonlyVideo(t)
	rec := &simReceived{}
	var wg sync.WaitGroup
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		defer wg.Done()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if sp, ok := parseSim(p); ok {
				rec.mu.Lock()
				rec.pkts = append(rec.pkts, sp)
				rec.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	p, err := n.Join(room, identity, node.Grant{Subscribe: true}, false, l)
	if err != nil {
		t.Fatal(err)
	}
	pref(p)
	answer, err := p.SubscribeOffer(vp8pub.Offer(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return p, rec
}

// checkSimStream fails unless the subscriber's stream is one stream: sequence numbers up by one
// (a lost packet or three on a loaded machine), PictureIDs (15 bits) and TL0PICIDX up by one per
// frame (one packet per frame), timestamps up by the capture interval within a layer and, across
// a switch, by the capture clock of the sender reports (1 tick when the new layer's keyframe is
// of the same instant as the last frame sent; across a generation, by the wall-clock time
// between them, never back nor by more than a second); each source's first packet a keyframe.
// It returns the sources (layer, or generation:layer past generation 0) in the order received.
func checkSimStream(t *testing.T, pkts []simPacket) []string {
	t.Helper()
	src := func(p simPacket) string {
		if p.gen == 0 {
			return fmt.Sprint(p.layer)
		}
		return fmt.Sprintf("%d:%d", p.gen, p.layer)
	}
	runs := []string{src(pkts[0])}
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		lost := int(b.seq - a.seq - 1)
		if lost < 0 || lost > 3 {
			t.Fatalf("packet %d: seq %d after %d", i, b.seq, a.seq)
		}
		if d := (b.pic - a.pic + 1<<15) % (1 << 15); b.pic >= 0 && (!b.picBits15 || d != lost+1) {
			t.Fatalf("packet %d (layer %d frame %d): PictureID %d after %d", i, b.layer, b.k, b.pic, a.pic)
		}
		if d := (b.tl0 - a.tl0 + 256) % 256; b.tl0 >= 0 && d != lost+1 {
			t.Fatalf("packet %d: TL0PICIDX %d after %d", i, b.tl0, a.tl0)
		}
		want := uint32(b.k-a.k) * simTicks
		if b.layer != a.layer && b.k <= a.k {
			want = 1
		}
		if d := b.ts - a.ts; (b.gen == a.gen && d != want) || (b.gen != a.gen && (d == 0 || d > 90000)) {
			t.Fatalf("packet %d (%s frame %d after %s frame %d): timestamp +%d, want +%d", i, src(b), b.k, src(a), a.k, int32(d), want)
		}
		if src(b) != src(a) {
			if !b.key {
				t.Fatalf("packet %d: switched to %s at an interframe", i, src(b))
			}
			runs = append(runs, src(b))
		}
	}
	return runs
}

// TestSimulcastLayers: a publisher's three rid layers are one producer whose layers (rid, size
// from the VP8 keyframes, bitrate, active) the room lists lowest first. A subscriber that asked
// for layer 0 before subscribing receives layer 0 only; asked for no limit, it switches to the
// top layer; asked for at most 700 px wide, to the middle one (640x360). It receives one layer
// at a time as one stream (sequence numbers, PictureID, TL0PICIDX, sender-report timestamps
// continuous), switching only at keyframes, and is told each layer (layerChanged); the metrics
// count the switches and the consumer on its layer. The same with H264 (sizes from the SPS of
// each layer's keyframes, switches at IDR pictures).
func TestSimulcastLayers(t *testing.T) {
	t.Run("VP8", func(t *testing.T) { testSimulcastLayers(t, false) })
	t.Run("H264", func(t *testing.T) { testSimulcastLayers(t, true) })
}

func testSimulcastLayers(t *testing.T, h264 bool) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	_, id := publishSimulcast(t, n, "r", "pub", h264)
	pr := n.Producer("r", id)
	checkFor(t, 10*time.Second, func() error {
		ls := pr.Layers()
		if len(ls) != 3 {
			return fmt.Errorf("layers %+v", ls)
		}
		for i, l := range ls {
			if l.Rid != simRids[i] || l.Width != simSizes[i][0] || l.Height != simSizes[i][1] || !l.Active || l.Bitrate <= 0 {
				return fmt.Errorf("layer %d: %+v", i, l)
			}
		}
		info := n.Room("r").Producers()
		if len(info) != 1 || len(info[0].Layers) != 3 || info[0].Layers[2].Rid != "f" {
			return fmt.Errorf("the room lists %+v", info)
		}
		return nil
	})

	l := &recorder{}
	zero := 0
	sub, rec := subscribeSim(t, n, "r", "sub", l, func(p *node.Participant) {
		if err := p.SetPreferredLayer(id, node.LayerPref{Layer: zero}); err != nil {
			t.Fatal(err)
		}
	})
	checkFor(t, 10*time.Second, func() error {
		if p := rec.snapshot(); len(p) < 30 {
			return fmt.Errorf("%d packets", len(p))
		}
		return nil
	})
	note := func(layer int) string {
		return fmt.Sprintf(`{"producer":%q,"layer":%d,"rid":%q}`, id, layer, simRids[layer])
	}
	if !l.has(proto.MethodLayerChanged, note(0)) {
		t.Fatalf("no layerChanged to layer 0: %s", l)
	}
	if err := sub.SetPreferredLayer(id, node.NoLayerPref); err != nil {
		t.Fatal(err)
	}
	rec.waitLayer(t, 2)
	if err := sub.SetPreferredLayer(id, node.LayerPref{Layer: -1, MaxWidth: 700}); err != nil {
		t.Fatal(err)
	}
	rec.waitLayer(t, 1)
	if runs := checkSimStream(t, rec.snapshot()); fmt.Sprint(runs) != "[0 2 1]" {
		t.Fatalf("layers received in runs %v, want [0 2 1]", runs)
	}
	checkFor(t, 5*time.Second, func() error {
		if !l.has(proto.MethodLayerChanged, note(2)) || !l.has(proto.MethodLayerChanged, note(1)) {
			return fmt.Errorf("layerChanged: %s", l)
		}
		return nil
	})
	if c := l.count(proto.MethodLayerChanged); c != 3 {
		t.Fatalf("%d layerChanged, want 3: %s", c, l)
	}
	if s := metricSum(t, reg, "cascade_layer_switches_total", nil); s != 2 {
		t.Fatalf("cascade_layer_switches_total %v, want 2", s)
	}
	if s := metricSum(t, reg, "cascade_consumers_per_layer", map[string]string{"layer": "1"}); s != 1 {
		t.Fatalf("cascade_consumers_per_layer{layer=1} %v, want 1", s)
	}
	if s := metricSum(t, reg, "cascade_consumers_per_layer", nil); s != 1 {
		t.Fatalf("cascade_consumers_per_layer total %v, want 1", s)
	}
}

// TestSimulcastRids: the layers' order is the offer's a=simulcast send list (paused and
// alternative rids by their first), else its a=rid send lines; more than three are refused.
func TestSimulcastRids(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s := newSimPublisher(t, false)
	base := vp8pub.Offer(t, s.pc)
	for _, c := range []struct {
		name, simulcast string
		rids            []string
		want            []string
		bad             bool
	}{
		{"simulcast order", "a=simulcast:send f;q;~h", []string{"q", "h", "f"}, []string{"f", "q", "h"}, false},
		{"alternatives", "a=simulcast:send q,x;h", []string{"q", "x", "h"}, []string{"q", "h"}, false},
		{"rid lines", "", []string{"h", "q"}, []string{"h", "q"}, false},
		{"four", "a=simulcast:send a;b;c;d", []string{"a", "b", "c", "d"}, nil, true},
	} {
		var lines []string
		for _, line := range strings.Split(base, "\r\n") {
			if strings.HasPrefix(line, "a=rid:") || strings.HasPrefix(line, "a=simulcast:") {
				continue
			}
			lines = append(lines, line)
			if strings.HasPrefix(line, "a=mid:") {
				for _, r := range c.rids {
					lines = append(lines, "a=rid:"+r+" send")
				}
				if c.simulcast != "" {
					lines = append(lines, c.simulcast)
				}
			}
		}
		p, err := n.Join("r-"+strings.ReplaceAll(c.name, " ", "-"), "pub", node.Grant{Publish: true}, false, nopListener{})
		if err != nil {
			t.Fatal(err)
		}
		_, infos, err := p.Publish(strings.Join(lines, "\r\n"), false)
		switch {
		case c.bad:
			if !errors.Is(err, node.ErrBadSDP) {
				t.Errorf("%s: %v, want ErrBadSDP", c.name, err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case len(infos) != 1 || fmt.Sprint(rids(infos[0].Layers)) != fmt.Sprint(c.want):
			t.Errorf("%s: producers %+v, want layers %v", c.name, infos, c.want)
		}
		p.Close()
	}
}

func rids(ls []proto.Layer) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Rid)
	}
	return out
}

// layerKeyframes is an upstream that takes keyframe requests per layer.
type layerKeyframes struct {
	mu     sync.Mutex
	layers []int
}

func (k *layerKeyframes) RequestKeyframe() { k.RequestLayerKeyframe(-1) }

func (k *layerKeyframes) RequestLayerKeyframe(l int) {
	k.mu.Lock()
	k.layers = append(k.layers, l)
	k.mu.Unlock()
}

func (k *layerKeyframes) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return fmt.Sprint(k.layers)
}

// TestLayerKeyframeRequests: a relayed simulcast producer asks its upstream for each layer's
// keyframe (the layer's own relay SSRC); requests collapse per layer within the keyframe
// interval, never one layer's into another's.
func TestLayerKeyframeRequests(t *testing.T) {
	n, _ := adminNode(t, node.Options{KeyframeInterval: time.Hour})
	p, _ := join(t, n, "r", "w", node.Grant{Subscribe: true})
	info := node.ProducerInfo{ID: "PRsim", Participant: "PAremote", Kind: "video", Codec: webrtc.MimeTypeVP8, ClockRate: 90000,
		Layers: []proto.Layer{{Rid: "q"}, {Rid: "h"}, {Rid: "f"}}}
	pr, err := p.Room().AddRemoteProducer(info, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if pr.NumLayers() != 3 || len(pr.Layers()) != 3 || pr.Layers()[1].Rid != "h" {
		t.Fatalf("layers %+v", pr.Layers())
	}
	up := &layerKeyframes{}
	pr.SetUpstream(up)
	sink, err := pr.AttachLayer(&discardWriter{}, 1000, 1) // a relay child's sink of layer 1
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Detach()
	if got := up.String(); got != "[1]" {
		t.Fatalf("requests %s, want layer 1's", got)
	}
	pr.RequestKeyframe()
	pr.RequestKeyframe()
	sink.RequestKeyframe()
	if got := up.String(); got != "[1 0 2]" {
		t.Fatalf("requests %s, want [1 0 2]: each layer once", got)
	}
	if _, err := pr.AttachLayer(&discardWriter{}, 1001, 3); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("a sink of layer 3: %v", err)
	}
}

type discardWriter struct{}

func (discardWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) { return len(p), nil }
func (discardWriter) Write(b []byte) (int, error)                   { return len(b), nil }
