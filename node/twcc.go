package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/bwe"
	"github.com/pion/rtcp"
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
// (the bench's naive pion path costs 2.6x). Per packet it costs one atomic add and two atomic
// stores into a ring, no lock and no allocation.

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

// A ccSender is one subscriber transport's transport-wide sequence and its estimator. next
// and ring are written by the worker goroutine (forward) and the feedback goroutines
// (retransmissions); mu guards the estimator, taken only per feedback packet.
type ccSender struct {
	epoch time.Time
	next  atomic.Uint32
	ring  [ccRing]atomic.Uint64 // packSlot

	estimate atomic.Int64 // bits/s, the estimator's last answer
	rate     atomic.Int64 // bits/s the transport sent lately (the allocator measures it)
	state    atomic.Uint32

	mu    sync.Mutex
	est   *bwe.Estimator
	acks  []bwe.Ack
	last  uint16 // the newest sequence number reported
	heard bool
}

func newCCSender(now time.Time) *ccSender {
	s := &ccSender{epoch: now, est: bwe.New(bwe.Config{}), acks: make([]bwe.Ack, 0, 256)}
	s.estimate.Store(s.est.Estimate())
	return s
}

// record takes the transport's next sequence number for a packet of size bytes sent at now.
func (s *ccSender) record(size int, now time.Time) uint16 {
	seq := uint16(s.next.Add(1) - 1)
	s.ring[seq&(ccRing-1)].Store(packSlot(seq, size, now.Sub(s.epoch).Microseconds()))
	return seq
}

// lookup is the send time (since the epoch) and size of seq, if the ring still holds it; now
// is a time after it was sent.
func (s *ccSender) lookup(seq uint16, now time.Duration) (time.Duration, int, bool) {
	m := s.ring[seq&(ccRing-1)].Load()
	size := int(m >> slotTimeBits & slotSizeMax)
	if size == 0 || uint16(m>>48) != seq {
		return 0, 0, false
	}
	const mask = 1<<slotTimeBits - 1
	nowUS := now.Microseconds()
	at := nowUS - (nowUS-int64(m&mask))&mask
	return time.Duration(at) * time.Microsecond, size, true
}

// sentSince adds up the bytes of the packets stamped from sequence number from on, and returns
// the next sequence number: the allocator's measure of what the transport sends (media,
// padding and retransmissions), read from the ring instead of counted per packet.
func (s *ccSender) sentSince(from uint16) (bytes int, next uint16) {
	next = uint16(s.next.Load())
	if d := next - from; d > ccRing {
		from = next - ccRing
	}
	for q := from; q != next; q++ {
		m := s.ring[q&(ccRing-1)].Load()
		if uint16(m>>48) == q {
			bytes += int(m >> slotTimeBits & slotSizeMax)
		}
	}
	return bytes, next
}

// feedback hands one TransportLayerCC to the estimator.
func (s *ccSender) feedback(fb *rtcp.TransportLayerCC, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acks := s.acks[:0]
	arrived := time.Duration(fb.ReferenceTime) * 64 * time.Millisecond
	seq, left, di := fb.BaseSequenceNumber, int(fb.PacketStatusCount), 0
	one := func(sym uint16) {
		received := sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta
		if received && di < len(fb.RecvDeltas) {
			arrived += time.Duration(fb.RecvDeltas[di].Delta) * time.Microsecond
			di++
		}
		if !s.heard || int16(seq-s.last) > 0 {
			if sent, size, ok := s.lookup(seq, now.Sub(s.epoch)); ok {
				acks = append(acks, bwe.Ack{Sent: sent, Arrived: arrived, Size: size, Lost: !received})
				s.last, s.heard = seq, true
			}
		}
		seq++
		left--
	}
	for _, ch := range fb.PacketChunks {
		switch ch := ch.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(ch.RunLength) && left > 0; i++ {
				one(ch.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range ch.SymbolList {
				if left == 0 {
					break
				}
				one(sym)
			}
		}
	}
	s.acks = acks
	if len(acks) == 0 {
		return
	}
	s.estimate.Store(s.est.Update(now.Sub(s.epoch), acks))
	s.state.Store(uint32(s.est.State()))
}

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

// stamp sets the header's extensions for a packet of size bytes (payload and padding) sent at
// now: the transport-wide sequence number when the subscriber's transport estimates bandwidth,
// nothing otherwise (the producer's extensions are never forwarded). x holds the extension.
func (c *Consumer) stamp(h *rtp.Header, b *binding, size int, now time.Time, x *ccExt) {
	if c.bw.cc == nil || b.ccID == 0 {
		h.Extension = false
		h.Extensions = nil
		return
	}
	seq := c.bw.cc.record(size+ccOverhead, now)
	x.buf[0], x.buf[1] = byte(seq>>8), byte(seq)
	h.Extension = true
	h.ExtensionProfile = rtp.ExtensionProfileOneByte
	if x.id != b.ccID { // once per binding: the extension's payload is x.buf
		h.Extensions = x.ext[:0]
		_ = h.SetExtension(b.ccID, x.buf[:]) // appends within x.ext's capacity
		x.id = b.ccID
	}
	h.Extensions = x.ext[:]
}

// onTransportCC hands a subscriber's transport-wide feedback to its transport's estimator
// (whichever consumer's RTCP it arrives on: it is about the whole transport).
func (c *Consumer) onTransportCC(fb *rtcp.TransportLayerCC, now time.Time) {
	if c.bw.cc != nil {
		c.bw.cc.feedback(fb, now)
	}
}
