package node

import (
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// errNoCodec is returned by Bind when the subscriber did not accept the producer's codec.
var errNoCodec = errors.New("subscriber does not support the producer's codec")

// binding is what the negotiation fixed for one consumer: its SSRC, payload type and writer.
type binding struct {
	ssrc   uint32
	pt     uint8
	clock  uint32
	ccID   uint8 // the transport-wide sequence number extension's id (0: not negotiated)
	writer webrtc.TrackLocalWriter
}

// A Consumer delivers one producer to one subscriber. It is a webrtc.TrackLocal, so pion binds
// it to the subscriber's receive transport; packets are written by its worker's fan-out.
type Consumer struct {
	id       string
	producer *Producer
	sub      *Participant
	worker   *Worker
	pc       *webrtc.PeerConnection
	sender   *webrtc.RTPSender
	codec    webrtc.RTPCodecCapability

	bind   atomic.Pointer[binding]
	paused atomic.Bool // unsubscribed or closed
	resync atomic.Bool // the next packet restarts the sequence mapping

	// Owned by the worker goroutine (forward and sendReport).
	out      rtp.Header // the outgoing header, reused: a local would escape to the heap
	started  bool
	offset   atomic.Uint32 // inSeq - outSeq (mod 2^16), read by the NACK handler
	lastOut  uint16
	lastTS   uint32
	lastWall time.Time
	packets  uint32
	octets   uint32
	sw       switcher       // which source of the producer it forwards (switch.go)
	kind     payloadKind    // where the producer's keyframes start
	pipe     *pipe          // its pipe (set before the fan-out sees the consumer)
	lay      consumerLayers // its simulcast layer: target and current (layers.go)
	bw       consumerBWE    // transport-wide stamping and padding (twcc.go, probe.go)
	gateMu   sync.Mutex
	gated    *binding // a closed relay sink's binding (Gate)

	// The retransmission budget, used by the feedback goroutine (readRTCP, or the relay's Nack).
	rtxMu sync.Mutex
	rtx   *rtxbudget.Budget

	closeOnce sync.Once
}

func newConsumer(p *Producer, sub *Participant, w *Worker, pc *webrtc.PeerConnection) *Consumer {
	c := &Consumer{id: p.id, producer: p, sub: sub, worker: w, pc: pc, codec: p.codec(),
		rtx: rtxbudget.New(p.node.rtx, time.Now(), p.media.Load())}
	c.kind = kindOf(c.codec)
	c.sw.begin(p.gen.Load())
	c.initLayers()
	return c
}

// Bind implements webrtc.TrackLocal.
func (c *Consumer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, cp := range ctx.CodecParameters() {
		if sameCodec(cp.RTPCodecCapability, c.codec) {
			c.bind.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(cp.PayloadType), clock: cp.ClockRate, ccID: ccExtID(ctx.HeaderExtensions()), writer: ctx.WriteStream()})
			c.resync.Store(true)
			c.producer.requestKeyframe(c.Target())
			return cp, nil
		}
	}
	return webrtc.RTPCodecParameters{}, errNoCodec
}

// Unbind implements webrtc.TrackLocal.
func (c *Consumer) Unbind(webrtc.TrackLocalContext) error {
	c.bind.Store(nil)
	return nil
}

// ID implements webrtc.TrackLocal: the track id is the producer id.
func (c *Consumer) ID() string { return c.producer.id }

// RID implements webrtc.TrackLocal.
func (c *Consumer) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the stream id is the producing participant's id.
func (c *Consumer) StreamID() string { return c.producer.owner }

// Kind implements webrtc.TrackLocal.
func (c *Consumer) Kind() webrtc.RTPCodecType { return c.producer.kind }

// forward writes one packet; it runs on the worker goroutine only.
func (c *Consumer) forward(pkt *packet, now time.Time) bool {
	b := c.bind.Load()
	if b == nil || c.paused.Load() {
		return false
	}
	if (pkt.gen != c.sw.gen || pkt.layer != c.sw.layer) && !c.admit(pkt, b, now) {
		return false // another source (generation or layer) than the one forwarded (switch.go)
	}
	in := pkt.header.SequenceNumber
	if c.resync.Load() {
		c.resync.Store(false)
		if c.started {
			c.offset.Store(uint32(in - (c.lastOut + 1)))
		} else {
			c.offset.Store(0)
			c.started = true
		}
	}
	out := in - uint16(c.offset.Load())
	h := &c.out
	*h = pkt.header // slices are shared with the packet and must not be modified
	h.SSRC = b.ssrc
	if b.pt != 0 { // 0: a relay sink keeps the producer's payload type
		h.PayloadType = b.pt
	}
	h.SequenceNumber = out
	h.Timestamp += c.sw.tsOff // 0 until a switch
	payload := pkt.payload
	if c.sw.rewrite {
		payload = c.sw.payload(pkt)
	}
	c.stamp(h, b, len(payload)+int(h.PaddingSize), now, &c.bw.ext) // transport-cc (twcc.go)
	if _, err := b.writer.WriteRTP(h, payload); err != nil {
		return false
	}
	if int16(out-c.lastOut) > 0 || c.packets == 0 {
		c.lastOut = out
		c.lastTS = h.Timestamp
		c.lastWall = now
	}
	c.packets++
	c.octets += uint32(len(payload))
	c.afterForward(b, now) // probing padding (probe.go)
	return true
}

// admit decides on a packet of another source (generation or layer) than the one the consumer
// forwards: drop it (a layer not targeted, the old source's, or the new one's before its
// keyframe: the producer is asked for one, throttled), or switch to its source at it (the
// sequence numbers resynchronise to go on from the last one sent). It runs on the worker
// goroutine.
func (c *Consumer) admit(pkt *packet, b *binding, now time.Time) bool {
	if int32(pkt.layer) != c.lay.target.Load() {
		return false // the current source's packets never come here: this is another layer
	}
	switch c.sw.decide(c.kind, pkt, !c.started && c.packets == 0) {
	case dropOld:
		return false
	case waitKey:
		c.producer.requestKeyframe(int(pkt.layer))
		return false
	case startSource:
		c.sw.gen, c.sw.layer, c.sw.chosen = pkt.gen, pkt.layer, true
		c.sw.publish(0, false)
		c.layerChanged(pkt.layer, false)
		return true
	}
	from := c.sw.layer
	last, ok := c.pipe.lastOf(c.sw.gen, from)
	sr, haveSR := uint32(0), false
	if pkt.gen == c.sw.gen && pkt.layer != from {
		sr, haveSR = c.producer.srOffset(pkt.gen, from, pkt.layer, b.clock)
	}
	c.sw.switchTo(pkt, c.lastTS, c.lastWall, now, b.clock, last, ok, sr, haveSR)
	if c.started {
		c.resync.Store(true)
	}
	c.sw.publish(c.lastOut+1, c.started)
	if pkt.layer != from || !c.started {
		c.layerChanged(pkt.layer, c.started)
	}
	return true
}

// sendReport writes an RTCP sender report from the consumer's counters (runs on the worker
// goroutine, so it reads them without locks).
func (c *Consumer) sendReport(now time.Time) {
	b := c.bind.Load()
	if b == nil || c.pc == nil || c.packets == 0 || c.paused.Load() {
		return // c.pc is nil for a relay sink: the edge's consumers report to subscribers
	}
	rtpTime := c.lastTS + uint32(now.Sub(c.lastWall).Seconds()*float64(b.clock))
	_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.SenderReport{
		SSRC: b.ssrc, NTPTime: ntpTime(now), RTPTime: rtpTime, PacketCount: c.packets, OctetCount: c.octets,
	}})
}

// readRTCP handles the subscriber's feedback: keyframe requests go to the producer (which
// throttles them), NACKs are answered from the producer's packet cache within the consumer's
// retransmission budget, receiver reports give the budget its round-trip estimate.
func (c *Consumer) readRTCP() {
	buf := make([]byte, rtcpBufferLen)
	var pkt []byte // the retransmission buffer, made at the first NACK: most consumers never get one
	for {
		n, _, err := c.sender.Read(buf)
		if err != nil {
			return
		}
		// Transport-cc feedback, most of what a subscriber sends, is read in place (twccparse.go).
		tcc, others, ok := scanCompound(buf[:n])
		var pkts []rtcp.Packet
		if ok && others {
			pkts, err = unmarshalOthers(buf[:n])
		}
		if !ok || err != nil {
			continue
		}
		now := time.Now()
		c.beginFeedback(now)
		if tcc {
			c.onTransportCC(buf[:n], now)
		}
		pli := false
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				pli = true
			case *rtcp.ReceiverReport:
				c.observeRTT(p.Reports, now)
			case *rtcp.TransportLayerNack:
				if pkt == nil {
					pkt = make([]byte, rtxBuffer)
				}
				c.nackPairs(p.Nacks, pkt)
			}
		}
		c.endFeedback(pli)
	}
}

// beginFeedback starts handling one feedback packet under the retransmission budget. The
// budget's media is the producer's: every consumer of it is sent the same packets, so the
// per-consumer path pays nothing for the budget.
func (c *Consumer) beginFeedback(now time.Time) {
	c.rtxMu.Lock()
	c.rtx.Begin(now, c.producer.media.Load())
	c.rtx.Clamp(c.rtxHeadroom(now)) // retransmissions within the subscriber's estimate (allocator.go)
	c.rtxMu.Unlock()
}

// endFeedback asks the producer for a keyframe when the subscriber did, or when the budget
// stopped retransmitting (the request is collapsed per producer).
func (c *Consumer) endFeedback(pli bool) {
	c.rtxMu.Lock()
	kf := c.rtx.Keyframe()
	c.rtxMu.Unlock()
	if kf && c.producer.kind == webrtc.RTPCodecTypeVideo {
		c.worker.rtxKeyframes.Add(1)
	}
	if kf || pli && !c.holdPLI(time.Now()) { // unless resends may still heal it (keyframes.go)
		c.requestKeyframe()
	}
}

// nackPairs answers the sequence numbers of one NACK, as far as the budget allows, newest first:
// past the budget's bound per NACK, what is left is the oldest, the least likely to still be of
// use (receivers list their losses in order, and a congested receiver lists seconds of them).
func (c *Consumer) nackPairs(pairs []rtcp.NackPair, buf []byte) {
	total, done := 0, 0
	for _, pair := range pairs {
		total += 1 + bits.OnesCount16(uint16(pair.LostPackets))
	}
pairs:
	for i := len(pairs) - 1; i >= 0; i-- {
		p := pairs[i]
		for b := 15; b >= -1; b-- { // the bitmask's packets, newest first, then PacketID
			if b >= 0 && p.LostPackets&(1<<b) == 0 {
				continue
			}
			if !c.resend(p.PacketID+uint16(b+1), buf) {
				break pairs
			}
			done++
		}
	}
	if done < total {
		c.worker.rtxRefused[rtxbudget.OutOfRange].Add(uint64(total - done))
	}
}

// observeRTT feeds the budget the round trip of a receiver report block about this consumer:
// now minus the sender report it echoes (LSR) minus the time the receiver held it (DLSR).
func (c *Consumer) observeRTT(reports []rtcp.ReceptionReport, now time.Time) {
	b := c.bind.Load()
	if b == nil {
		return
	}
	for _, r := range reports {
		if r.SSRC != b.ssrc || r.LastSenderReport == 0 {
			continue
		}
		if rtt, ok := rttFromReport(now, r.LastSenderReport, r.Delay); ok {
			c.rtxMu.Lock()
			c.rtx.ObserveRTT(rtt)
			c.rtxMu.Unlock()
		}
	}
}

// rttFromReport is the round trip of a report block received at now (RFC 3550 6.4.1).
func rttFromReport(now time.Time, lsr, dlsr uint32) (time.Duration, bool) {
	d := uint32(ntpTime(now)>>16) - lsr - dlsr // 1/65536 s
	if int32(d) < 0 {
		return 0, false
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16), true
}

// resend answers one NACKed sequence number (as the consumer sent it) from the producer's
// cache, if the budget allows; it reports false once the NACK's sequence numbers are past the
// budget's bound (the caller counts the rest).
func (c *Consumer) resend(outSeq uint16, buf []byte) bool {
	b := c.bind.Load()
	if b == nil || c.paused.Load() {
		return true
	}
	c.rtxMu.Lock()
	v := c.rtx.Admit(outSeq)
	c.rtxMu.Unlock()
	if v == rtxbudget.OutOfRange {
		return false
	}
	var p rtp.Packet
	n := 0
	x := c.sw.xlate.Load()
	cache := c.producer.cache
	if x != nil {
		cache = c.producer.cacheOf(x.layer)
	}
	if v == rtxbudget.Resend {
		size, age := 0, time.Duration(0)
		// A packet sent from a source the cache no longer holds is as good as uncached.
		if in, ok := c.inSeq(outSeq); ok && c.sameSource(x, outSeq) { // not padding (probe.go)
			if n = cache.Get(in, buf[:packetcache.MaxPacket]); n > 0 && p.Unmarshal(buf[:n]) == nil {
				size, age = len(p.Payload), cacheAge(cache, p.Timestamp, b.clock)
			}
		}
		c.rtxMu.Lock()
		v = c.rtx.Spend(outSeq, size, age)
		c.rtxMu.Unlock()
	}
	if v != rtxbudget.Resend {
		c.worker.rtxRefused[v].Add(1)
		return true
	}
	p.SSRC = b.ssrc
	if b.pt != 0 {
		p.PayloadType = b.pt
	}
	p.SequenceNumber = outSeq
	if x != nil {
		p.Timestamp += x.tsOff
		if x.rewrite && len(p.Payload) > 0 {
			out := buf[packetcache.MaxPacket:]
			p.Payload = out[:x.translate(out, p.Payload, c.sw.picAt.Load())]
		}
	}
	var ext ccExt
	c.stampRTX(&p.Header, b, len(p.Payload)+int(p.PaddingSize), time.Now(), &ext) // retransmissions are stamped too
	if _, err := b.writer.WriteRTP(&p.Header, p.Payload); err == nil {
		c.worker.rtxPackets.Add(1)
		c.worker.rtxBytes.Add(uint64(n))
		c.producer.node.metrics.nackRetransmits.Add(1)
	}
	return true
}

// rtxBuffer holds a cached packet and, after it, its payload rewritten for a retransmission.
const rtxBuffer = 2*packetcache.MaxPacket + 2

// sameSource tells whether outSeq was sent from the source whose packets the producer's cache
// holds (its current one): after a move the cache holds only the new source's packets, and a
// sequence number sent before the consumer switched to it is not among them.
func (c *Consumer) sameSource(x *xlate, outSeq uint16) bool {
	gen := uint32(0)
	if x != nil {
		gen = x.gen
		if x.hasFloor && int16(outSeq-x.floor) < 0 {
			return false
		}
	}
	return gen == c.producer.gen.Load()
}

// cacheAge is how far a cached packet's RTP time lags behind the newest packet of its cache.
func cacheAge(cache *packetcache.Cache, ts, clock uint32) time.Duration {
	newest, ok := cache.NewestTimestamp()
	if !ok || clock == 0 || int32(newest-ts) <= 0 {
		return 0
	}
	return time.Duration(newest-ts) * time.Second / time.Duration(clock)
}

// ConsumerInfo describes a consumer.
type ConsumerInfo struct {
	Producer string `json:"producer"`
	Worker   int    `json:"worker"`
}

// ntpTime converts a wall time to the 64-bit NTP format of RTCP sender reports.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return secs<<32 | frac
}
