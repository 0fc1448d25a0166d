package node

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Simulcast publishing: an offer's video section with rids (RFC 8853) becomes one producer
// with layers. pion hands the node one track per rid; each track's read loop ingests its
// packets with the track's layer number, into the one producer.

// offeredRids reads, per media section (by mid), the rids the offer sends, in the order of its
// a=simulcast send list (RFC 8853: "a=simulcast:send q;h;f"; alternatives "q,x" count by their
// first rid, a paused "~q" counts too), or of its a=rid send lines without one. That order is
// the layers' order: the client lists its encodings lowest quality first (PROTOCOL.md).
func offeredRids(offer string) (map[string][]string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	out := map[string][]string{}
	for _, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		var rids []string
		if v, ok := m.Attribute("simulcast"); ok {
			rids = simulcastSend(v)
		} else {
			for _, a := range m.Attributes {
				if f := strings.Fields(a.Value); a.Key == "rid" && len(f) >= 2 && f[1] == "send" {
					rids = append(rids, f[0])
				}
			}
		}
		if len(rids) > proto.MaxLayers {
			return nil, fmt.Errorf("%w: media section %q sends %d simulcast layers, at most %d", ErrBadSDP, mid, len(rids), proto.MaxLayers)
		}
		if len(rids) > 0 {
			out[mid] = rids
		}
	}
	return out, nil
}

// simulcastSend is the send list of an a=simulcast value ("send q;h;f recv r").
func simulcastSend(v string) []string {
	f := strings.Fields(v)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "send" {
			continue
		}
		var rids []string
		for _, alt := range strings.Split(f[i+1], ";") {
			first, _, _ := strings.Cut(alt, ",")
			if first = strings.TrimPrefix(first, "~"); first != "" {
				rids = append(rids, first)
			}
		}
		return rids
	}
	return nil
}

// onLayerTrack is onTrack for one rid's track of a simulcast producer (the transport is
// entered). The first track makes the producer live (or adopts the resumed one); the last one
// to end removes it.
func (p *Participant) onLayerTrack(pr *Producer, t *transport, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	layer, ok := pr.layerOf(track.RID())
	if !ok {
		return // a rid the offer did not list
	}
	ls := &pr.layers
	ls.mu.Lock()
	first := !ls.start
	if first {
		ls.start, ls.ready = true, make(chan struct{})
	}
	ready := ls.ready
	ls.live++
	ls.mu.Unlock()
	if first { // outside the lock: an adoption tells the room and the cluster layer
		feed, gen := pr, pr.Generation()
		if pr.adopt {
			if x, g, ok := p.adopt(pr, track); ok {
				feed, gen = x, g
			}
		}
		if feed == pr {
			pr.pkind.Store(uint32(kindOf(track.Codec().RTPCodecCapability)))
			pr.track.Store(track)
		}
		ls.mu.Lock()
		ls.feed, ls.gen = feed, gen
		ls.mu.Unlock()
		close(ready)
	}
	<-ready // the other layers' tracks feed what the first one chose
	ls.mu.Lock()
	feed, gen := ls.feed, ls.gen
	ls.mu.Unlock()
	if int(layer) < len(feed.layers.tracks) {
		feed.layers.tracks[layer].Store(track)
	}
	src := feed.source()
	if first && feed == pr {
		p.room.addProducer(pr)
	}
	rid := track.RID()
	t.goRead(func() { feed.readSenderReports(receiver, rid, layer, gen) })
	feed.readLoop(track, gen, layer)
	ls.mu.Lock()
	ls.live--
	last := ls.live == 0
	ls.mu.Unlock()
	if last && feed.source() == src && !p.Superseded() {
		p.room.removeProducer(feed)
	}
}

// srClock is a layer's last sender report: the RTP time of an NTP time, from the source of
// generation gen.
type srClock struct {
	ntp uint64
	rtp uint32
	gen uint32
}

// readSenderReports reads one rid's RTCP from the publisher (so the receiver's interceptors see
// it) and keeps the layer's last sender report, until the receiver stops; gen is the source's.
func (p *Producer) readSenderReports(receiver *webrtc.RTPReceiver, rid string, layer uint8, gen uint32) {
	buf := make([]byte, 1500)
	for {
		n, _, err := receiver.ReadSimulcast(buf, rid)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, x := range pkts {
			if sr, ok := x.(*rtcp.SenderReport); ok && int(layer) < len(p.layers.sr) {
				p.layers.sr[layer].Store(&srClock{ntp: sr.NTPTime, rtp: sr.RTPTime, gen: gen})
			}
		}
	}
}

// srOffset is what maps layer to's RTP timestamps onto layer from's clock (both of source
// generation gen), from their last sender reports: a timestamp t of to is the instant
// ntpTo + (t - rtpTo)/clock, which on from's clock is rtpFrom + (ntpTo - ntpFrom)*clock +
// (t - rtpTo). ok false: a report of gen is missing or they are too far apart to be of one
// publisher's clock.
func (p *Producer) srOffset(gen uint32, from, to uint8, clock uint32) (uint32, bool) {
	if clock == 0 || int(from) >= len(p.layers.sr) || int(to) >= len(p.layers.sr) {
		return 0, false
	}
	a, b := p.layers.sr[from].Load(), p.layers.sr[to].Load()
	if a == nil || b == nil || a.gen != gen || b.gen != gen {
		return 0, false
	}
	secs := float64(int64(b.ntp-a.ntp)) / (1 << 32)
	if secs > 3600 || secs < -3600 {
		return 0, false
	}
	return a.rtp - b.rtp + uint32(int64(math.Round(secs*float64(clock)))), true
}

// resetLayers forgets what the layers' old source told (a move): its sender reports' clocks and
// its cached packets; the next keyframe requests go at once.
func (p *Producer) resetLayers() {
	for i := range p.layers.sr {
		p.layers.sr[i].Store(nil)
		p.layers.lastKF[i].Store(0)
		if i > 0 && p.layers.caches[i] != nil {
			p.layers.caches[i].Reset()
		}
	}
}

// resetKeyframeClocks lets the next keyframe request of every layer go at once (an unmute).
func (p *Producer) resetKeyframeClocks() {
	p.lastKF.Store(0)
	for i := range p.layers.lastKF {
		p.layers.lastKF[i].Store(0)
	}
}

// LayerUpstream is an Upstream that can ask for one layer's keyframe (a relay carrying each
// layer under its own SSRC). A plain Upstream is asked for a keyframe of every layer.
type LayerUpstream interface {
	RequestLayerKeyframe(layer int)
}

// RequestLayerKeyframe asks the publisher for a keyframe of one simulcast layer (0 without
// simulcast); requests within the keyframe interval of the last one sent for that layer
// collapse into it.
func (p *Producer) RequestLayerKeyframe(layer int) { p.requestKeyframe(layer) }

func (p *Producer) requestKeyframe(layer int) {
	if p.kind != webrtc.RTPCodecTypeVideo || layer < 0 || layer >= p.numLayers() {
		return
	}
	s := p.source()
	var t *webrtc.TrackRemote
	var up *upstreamRef
	if s.origin == "" {
		t = p.track.Load() // a local source: its publisher's track (of the layer)
		if p.layered() {
			t = p.layers.tracks[layer].Load()
		}
	} else {
		up = p.upstream.Load() // a remote one: the relay towards its origin
	}
	if t == nil && up == nil {
		return
	}
	clock := &p.lastKF
	if layer > 0 {
		clock = &p.layers.lastKF[layer]
	}
	now := time.Now().UnixNano()
	last := clock.Load()
	if now-last < int64(p.kfInterval) || !clock.CompareAndSwap(last, now) {
		p.node.metrics.keyframesCollapsed.Add(1)
		return
	}
	p.node.metrics.keyframesSent.Add(1)
	if t != nil {
		_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
		return
	}
	if lu, ok := up.u.(LayerUpstream); ok && p.layered() {
		lu.RequestLayerKeyframe(layer)
		return
	}
	up.u.RequestKeyframe()
}

// requestKeyframe asks for a keyframe of the layer the consumer forwards (its target's before
// its first packet).
func (c *Consumer) requestKeyframe() {
	l := c.Layer()
	if l < 0 {
		l = c.Target()
	}
	c.producer.requestKeyframe(l)
}
