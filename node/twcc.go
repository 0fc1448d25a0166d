package node

import (
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/bwe"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Transport-wide congestion control on subscriber transports (issue 15): the worker stamps
// every packet it sends a subscriber (media, padding, retransmissions) with the transport's
// next transport-wide sequence number as it forwards, and records when it sent it and how
// large it was; the subscriber's TransportLayerCC feedback says when each arrived, and the
// transport's estimator (package bwe) turns that into the subscriber's bandwidth estimate.
//
// This is not pion's twcc header-extension interceptor: the lean path has no interceptor chain
// (the bench's naive pion path costs 2.6x). Per packet it costs one atomic add (the sequence is
// shared with the retransmissions, sent from the feedback goroutines) and one plain store into
// the worker's ring: the feedback is handed to the worker goroutine, which alone reads the ring
// and runs the estimator, so the media path takes no lock and no store barrier.

// ccRtxRing is how many retransmissions a transport remembers (a power of two).
const ccRtxRing = 256

// ccRing is how many sent packets a transport remembers for feedback (a power of two): about
// five seconds of a 2 Mbit/s subscriber, more than any feedback delay. 8 KiB per subscriber.
const ccRing = 1024

// ccOverhead is what a packet costs on the wire beyond its payload and padding: RTP header,
// the one-byte extension block, the SRTP tag, UDP and IP.
const ccOverhead = 12 + 8 + 16 + 28

// A ring slot is one sent packet in one word (one atomic store per packet): the transport-wide
// sequence number (16 bits), the size in bytes (12 bits, never 0: it includes the overhead),
// and the send time in microseconds since the sender's epoch (36 bits, 19 hours, unwrapped
// against the time of the feedback).
const (
	slotTimeBits = 36
	slotSizeMax  = 1<<12 - 1
)

func packSlot(seq uint16, size int, us int64) uint64 {
	return uint64(seq)<<48 | uint64(min(size, slotSizeMax))<<slotTimeBits | uint64(us)&(1<<slotTimeBits-1)
}

// A ccSender is one subscriber transport's transport-wide sequence and its estimator. The
// sequence is shared by the worker goroutine (media and padding, recorded in ring) and the
// feedback goroutines (retransmissions, recorded in rtxRing); everything else belongs to the
// worker goroutine, which handles the transport's feedback (Worker.handleFeedback).
type ccSender struct {
	epoch   time.Time
	next    atomic.Uint32
	rtxRing [ccRtxRing]atomic.Uint64 // packSlot
	rtxSent atomic.Uint64            // bytes retransmitted

	estimate atomic.Int64  // bits/s, the estimator's last answer
	rate     atomic.Int64  // bits/s the transport sent lately (all it stamped)
	state    atomic.Uint32 // bwe.State
	received atomic.Int64  // bits/s the subscriber received lately, by its feedback
	queue    atomic.Int64  // µs of standing queue on the path (bwe.Estimator.Queue)
	loss     atomic.Uint32 // the last loss reading, in 1/1000
	dropped  chan struct{} // signalled when the estimate falls by a tenth or more, or the path starts to queue

	// Owned by the worker goroutine.
	ring     [ccRing]uint64 // packSlot
	sent     uint64         // bytes stamped by the worker
	rateAt   time.Time
	rateFrom uint64 // sent + rtxSent at rateAt
	est      *bwe.Estimator
	acks     []bwe.Ack // reused; grows to the largest feedback seen (not preallocated: 8 KiB a subscriber)
	last     uint16    // the newest sequence number reported
	heard    bool
}

func newCCSender(now time.Time) *ccSender {
	s := &ccSender{epoch: now, est: bwe.New(bwe.Config{}), dropped: make(chan struct{}, 1)}
	s.estimate.Store(s.est.Estimate())
	return s
}

// record takes the transport's next sequence number for a packet of size bytes sent at now.
// It runs on the worker goroutine.
func (s *ccSender) record(size int, now time.Time) uint16 {
	seq := uint16(s.next.Add(1) - 1)
	s.ring[seq&(ccRing-1)] = packSlot(seq, size, now.Sub(s.epoch).Microseconds())
	s.sent += uint64(size)
	return seq
}

// recordRTX is record for a retransmission, on a feedback goroutine.
func (s *ccSender) recordRTX(size int, now time.Time) uint16 {
	seq := uint16(s.next.Add(1) - 1)
	s.rtxRing[seq&(ccRtxRing-1)].Store(packSlot(seq, size, now.Sub(s.epoch).Microseconds()))
	s.rtxSent.Add(uint64(size))
	return seq
}

// lookup is the send time (since the epoch) and size of seq, if the ring still holds it; now
// is a time after it was sent.
func (s *ccSender) lookup(seq uint16, now time.Duration) (time.Duration, int, bool) {
	m := s.ring[seq&(ccRing-1)]
	if uint16(m>>48) != seq || m>>slotTimeBits&slotSizeMax == 0 {
		m = s.rtxRing[seq&(ccRtxRing-1)].Load()
	}
	size := int(m >> slotTimeBits & slotSizeMax)
	if size == 0 || uint16(m>>48) != seq {
		return 0, 0, false
	}
	const mask = 1<<slotTimeBits - 1
	nowUS := now.Microseconds()
	at := nowUS - (nowUS-int64(m&mask))&mask
	return time.Duration(at) * time.Microsecond, size, true
}

// feedbackCompound hands the transport-cc feedback of a compound RTCP packet, whose headers
// scanCompound checked, to the estimator. It runs on the worker goroutine.
func (s *ccSender) feedbackCompound(b []byte, now time.Time) {
	for len(b) > 0 {
		n, _ := rtcpPacketLen(b)
		if isTCC(b) {
			if t, ok := parseTCC(b[:n]); ok {
				s.feedback(t, now)
			}
		}
		b = b[n:]
	}
}

// feedback hands one transport-cc feedback packet to the estimator, and measures the rate the
// transport sends at. It runs on the worker goroutine.
func (s *ccSender) feedback(t tccPacket, now time.Time) {
	s.measure(now)
	acks := s.acks[:0]
	arrived := time.Duration(t.referenceTime()) * 64 * time.Millisecond
	for it := t.iter(); it.next(); {
		received := it.received()
		arrived += time.Duration(it.delta) * time.Microsecond
		if !s.heard || int16(it.seq-s.last) > 0 {
			if sent, size, ok := s.lookup(it.seq, now.Sub(s.epoch)); ok {
				acks = append(acks, bwe.Ack{Sent: sent, Arrived: arrived, Size: size, Lost: !received})
				s.last, s.heard = it.seq, true
			}
		}
	}
	s.acks = acks
	if len(acks) == 0 {
		return
	}
	old, e := s.estimate.Load(), s.est.Update(now.Sub(s.epoch), acks)
	st := uint32(s.est.State())
	s.estimate.Store(e)
	s.received.Store(s.est.Received())
	s.loss.Store(uint32(s.est.Loss() * 1000))
	s.queue.Store(int64(s.est.Queue() * 1000))
	if wasNormal := s.state.Swap(st) == uint32(bwe.Normal); e < old*9/10 || wasNormal && st != uint32(bwe.Normal) {
		select {
		case s.dropped <- struct{}{}:
		default:
		}
	}
}

// measure updates the rate the transport sends at, over at least rateEvery.
func (s *ccSender) measure(now time.Time) {
	const rateEvery = 200 * time.Millisecond
	total := s.sent + s.rtxSent.Load()
	if s.rateAt.IsZero() {
		s.rateAt, s.rateFrom = now, total
		return
	}
	if dt := now.Sub(s.rateAt); dt >= rateEvery {
		s.rate.Store(int64(float64(total-s.rateFrom) * 8 / dt.Seconds()))
		s.rateAt, s.rateFrom = now, total
	}
}

// ccFeedback is a transport's feedback on its way to the worker goroutine: a copy of the
// compound RTCP packet that holds it, in a buffer of the worker's pool (ccSet.bufs).
type ccFeedback struct {
	cc  *ccSender
	buf *[rtcpBufferLen]byte
	n   int
	now time.Time
}

// rtcpBufferLen is the size of a consumer's RTCP read buffer, and so of a feedback's copy.
const rtcpBufferLen = 1500

// ccExt is a packet's transport-wide sequence number extension: the header points into it, so
// the consumer's reused header needs no allocation.
type ccExt struct {
	ext [1]rtp.Extension
	buf [2]byte
	id  uint8 // the id ext holds (0: not set up)
}

// ccExtID is the negotiated id of the transport-wide sequence number extension (0: none).
func ccExtID(exts []webrtc.RTPHeaderExtensionParameter) uint8 {
	for _, e := range exts {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 15 {
			return uint8(e.ID)
		}
	}
	return 0
}

// stampRTX is stamp for a retransmission, on a feedback goroutine.
func (c *Consumer) stampRTX(h *rtp.Header, b *binding, size int, now time.Time, x *ccExt) {
	c.noteResend(now)
	if c.bw.cc == nil || b.ccID == 0 {
		h.Extension = false
		h.Extensions = nil
		return
	}
	x.setup(h, b.ccID, c.bw.cc.recordRTX(size+ccOverhead, now))
}

// stamp sets the header's extensions for a packet of size bytes (payload and padding) sent at
// now: the transport-wide sequence number when the subscriber's transport estimates bandwidth,
// nothing otherwise (the producer's extensions are never forwarded). x holds the extension.
func (c *Consumer) stamp(h *rtp.Header, b *binding, size int, now time.Time, x *ccExt) {
	if c.bw.cc == nil || b.ccID == 0 {
		h.Extension = false
		h.Extensions = nil
		return
	}
	x.setup(h, b.ccID, c.bw.cc.record(size+ccOverhead, now))
}

// setup points h's extensions at x, which carries seq in the extension id.
func (x *ccExt) setup(h *rtp.Header, id uint8, seq uint16) {
	x.buf[0], x.buf[1] = byte(seq>>8), byte(seq)
	h.Extension = true
	h.ExtensionProfile = rtp.ExtensionProfileOneByte
	if x.id != id { // once per binding: the extension's payload is x.buf
		h.Extensions = x.ext[:0]
		_ = h.SetExtension(id, x.buf[:]) // appends within x.ext's capacity
		x.id = id
	}
	h.Extensions = x.ext[:]
}

// onTransportCC hands a subscriber's transport-wide feedback, the compound RTCP packet b that
// holds it, to its transport's estimator on the worker goroutine (whichever consumer's RTCP it
// arrives on: it is about the whole transport). A full queue drops it: the next feedback
// covers the same path. The copy's buffer comes from the worker's pool, which the worker
// refills: no allocation per feedback once the pool holds what is in flight.
func (c *Consumer) onTransportCC(b []byte, now time.Time) {
	if c.bw.cc == nil || len(b) > rtcpBufferLen {
		return
	}
	set := &c.worker.ccs
	buf, _ := set.bufs.Get().(*[rtcpBufferLen]byte)
	if buf == nil {
		buf = new([rtcpBufferLen]byte)
	}
	n := copy(buf[:], b)
	select {
	case set.feedback <- ccFeedback{cc: c.bw.cc, buf: buf, n: n, now: now}:
	default:
		set.bufs.Put(buf)
	}
}

// handle runs f on the worker goroutine, and returns its buffer to the pool.
func (f ccFeedback) handle(set *ccSet) {
	f.cc.feedbackCompound(f.buf[:f.n], f.now)
	set.bufs.Put(f.buf)
}
