package node

import (
	"sync/atomic"
	"time"
)

// Probing: an estimator only learns what the path can carry from what is sent over it, and its
// estimate grows to at most a multiple of the rate the subscriber receives. A subscriber held on
// a low layer would stay there; to climb back, the allocator asks a video consumer to send
// padding (padding-only RTP packets on its stream, stamped like media) for a while. The padding
// is paced by the frames: after each packet that ends a frame, the worker sends what the
// padding rate allows since the last frame.
//
// Padding takes sequence numbers of the consumer's stream, so the stream stays continuous: the
// consumer's mapping (outSeq = inSeq - offset) shifts by the packets inserted, and a short
// history of the shifts lets a NACK of an earlier packet find the packet it names (and ignore a
// NACK of padding).

// padSize is the padding of one padding-only packet (the most the RTP padding length allows).
const padSize = 255

// maxPadBurst caps the padding packets sent after one frame.
const maxPadBurst = 24

// padHistory is how many padding insertions a consumer remembers for NACKs (a power of two):
// two seconds of frames at 30 fps, longer than any NACK is useful.
const padHistory = 64

// consumerBWE is a consumer's part in bandwidth estimation.
type consumerBWE struct {
	cc      *ccSender     // the subscriber transport's, nil without estimation
	padRate atomic.Int64  // bits/s of padding wanted (0: none), set by the allocator
	wants   atomic.Uint32 // mask of paused layers the allocator would take (pausedlayer.go)

	// Keyframe requests (keyframes.go), unix ns: the last retransmission, the last request held.
	lastResend, heldPLI atomic.Int64

	// Owned by the worker goroutine.
	ext       ccExt
	padAt     time.Time
	padCredit float64

	// Padding insertions, written by the worker goroutine, read by the NACK handler: each is
	// 1<<48 | from<<32 | end<<16 | offsetBefore (the padding took [from, end)).
	hist  [padHistory]atomic.Uint64
	histN atomic.Uint32
}

// SetPadding sets the padding rate in bits/s the consumer sends after its frames (0: none).
func (c *Consumer) SetPadding(bps int64) { c.bw.padRate.Store(bps) }

// afterForward sends the padding due after a media packet that ends a frame. It runs on the
// worker goroutine, after forward updated the consumer's counters; c.out is the packet's header.
func (c *Consumer) afterForward(b *binding, now time.Time) {
	r := c.bw.padRate.Load()
	if r <= 0 || c.bw.cc == nil || b.ccID == 0 {
		c.bw.padAt, c.bw.padCredit = time.Time{}, 0
		return
	}
	if !c.out.Marker {
		return
	}
	if !c.bw.padAt.IsZero() {
		c.bw.padCredit = min(c.bw.padCredit+float64(r)/8*now.Sub(c.bw.padAt).Seconds(), float64(r)/8/10)
	}
	c.bw.padAt = now
	n := min(int(c.bw.padCredit/(padSize+ccOverhead)), maxPadBurst)
	if n == 0 {
		return
	}
	c.bw.padCredit -= float64(n * (padSize + ccOverhead))
	h := &c.out
	h.Marker, h.Padding, h.PaddingSize = false, true, padSize
	first := c.lastOut + 1
	sent := uint16(0)
	for i := 0; i < n; i++ {
		h.SequenceNumber = first + sent
		c.stamp(h, b, padSize, now, &c.bw.ext)
		if _, err := b.writer.WriteRTP(h, nil); err != nil {
			break
		}
		sent++
	}
	h.Padding, h.PaddingSize = false, 0
	if sent == 0 {
		return
	}
	off := uint16(c.offset.Load())
	i := c.bw.histN.Load()
	c.bw.hist[i%padHistory].Store(1<<48 | uint64(first)<<32 | uint64(first+sent)<<16 | uint64(off))
	c.bw.histN.Store(i + 1)
	c.offset.Store(uint32(off - sent)) // after the history: a reader of the new offset sees it
	c.lastOut = first + sent - 1
}

// inSeq is the producer's sequence number of the packet the consumer sent as outSeq; false
// for padding, or a packet older than the padding history.
func (c *Consumer) inSeq(outSeq uint16) (uint16, bool) {
	off := uint16(c.offset.Load())
	n := c.bw.histN.Load()
	for k := uint32(0); k < n; k++ {
		if k == padHistory {
			return 0, false
		}
		e := c.bw.hist[(n-1-k)%padHistory].Load()
		from, end := uint16(e>>32), uint16(e>>16)
		if int16(outSeq-end) >= 0 {
			break
		}
		if int16(outSeq-from) >= 0 {
			return 0, false // padding
		}
		off = uint16(e)
	}
	return outSeq + off, true
}
