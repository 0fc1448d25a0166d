package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

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

	closeOnce sync.Once
}

func newConsumer(p *Producer, sub *Participant, w *Worker, pc *webrtc.PeerConnection) *Consumer {
	return &Consumer{id: p.id, producer: p, sub: sub, worker: w, pc: pc, codec: p.codec()}
}

// Bind implements webrtc.TrackLocal.
func (c *Consumer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, cp := range ctx.CodecParameters() {
		if sameCodec(cp.RTPCodecCapability, c.codec) {
			c.bind.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(cp.PayloadType), clock: cp.ClockRate, writer: ctx.WriteStream()})
			c.resync.Store(true)
			c.producer.RequestKeyframe()
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
	h.Extension = false
	h.Extensions = nil
	if _, err := b.writer.WriteRTP(h, pkt.payload); err != nil {
		return false
	}
	if int16(out-c.lastOut) > 0 || c.packets == 0 {
		c.lastOut = out
		c.lastTS = h.Timestamp
		c.lastWall = now
	}
	c.packets++
	c.octets += uint32(len(pkt.payload))
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
// throttles them), NACKs are answered from the producer's packet cache.
func (c *Consumer) readRTCP() {
	buf := make([]byte, 1500)
	pkt := make([]byte, 1500)
	for {
		n, _, err := c.sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				c.producer.RequestKeyframe()
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool {
						c.retransmit(seq, pkt)
						return true
					})
				}
			}
		}
	}
}

func (c *Consumer) retransmit(outSeq uint16, buf []byte) {
	b := c.bind.Load()
	if b == nil || c.paused.Load() {
		return
	}
	n := c.producer.cache.Get(outSeq+uint16(c.offset.Load()), buf)
	if n == 0 {
		return
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		return
	}
	p.SSRC = b.ssrc
	if b.pt != 0 {
		p.PayloadType = b.pt
	}
	p.SequenceNumber = outSeq
	p.Extension = false
	p.Extensions = nil
	if _, err := b.writer.WriteRTP(&p.Header, p.Payload); err == nil {
		c.producer.node.metrics.nackRetransmits.Add(1)
	}
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
