package node

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// The keyframe-gated switch. A consumer forwards one source of its producer at a time (a
// generation: the publisher's session on one node). When packets of a newer source arrive it
// keeps forwarding the old one (make-before-break), drops the new one's until a keyframe of it
// starts, and then switches: its sequence numbers, timestamps and VP8 PictureID/TL0PICIDX go
// on from the last ones it sent, so the subscriber's decoder sees one stream. A simulcast
// producer's layers are sources too: a source is a (generation, layer), and a consumer switches
// to its target layer the same way (resume and simulcast share this one switch).
//
// Without a switch the consumer pays one comparison per packet (the packet's generation and
// layer against the ones it forwards); after one, a timestamp offset and, for VP8 streams whose
// descriptor changes, a copy of the payload into the consumer's scratch buffer.

// payloadKind is what the switch needs to know of a codec: where its keyframes start and
// whether its payload carries picture numbers.
type payloadKind uint8

const (
	payloadOther payloadKind = iota // switched at once
	payloadAudio                    // every packet starts a frame that decodes alone
	payloadVP8
	payloadH264
)

func kindOf(c webrtc.RTPCodecCapability) payloadKind {
	switch {
	case strings.EqualFold(c.MimeType, webrtc.MimeTypeVP8):
		return payloadVP8
	case strings.EqualFold(c.MimeType, webrtc.MimeTypeH264):
		return payloadH264
	case strings.HasPrefix(strings.ToLower(c.MimeType), "audio/"):
		return payloadAudio
	}
	return payloadOther
}

// vp8Desc is what the switch reads of a VP8 payload descriptor (RFC 7741 4.2), parsed once per
// packet by the producer.
type vp8Desc struct {
	ok     bool   // a descriptor was parsed
	picLen uint8  // 0: no PictureID, 1: 7 bits, 2: 15 bits
	pic    uint16 // PictureID
	hasTL0 bool
	tl0    uint8 // TL0PICIDX
	key    bool  // the first packet of a keyframe (S=1, partition 0, P=0)
	size   uint8 // the descriptor's length
}

// parseVP8 reads the descriptor at the start of a VP8 payload.
func parseVP8(b []byte) vp8Desc {
	var d vp8Desc
	if len(b) < 1 {
		return d
	}
	i := 1
	if b[0]&0x80 != 0 { // X: extended control bits
		if len(b) <= i {
			return d
		}
		x := b[i]
		i++
		if x&0x80 != 0 { // I: PictureID
			if len(b) <= i {
				return d
			}
			if b[i]&0x80 != 0 { // M: 15 bits
				if len(b) <= i+1 {
					return d
				}
				d.pic, d.picLen = uint16(b[i]&0x7f)<<8|uint16(b[i+1]), 2
				i += 2
			} else {
				d.pic, d.picLen = uint16(b[i]), 1
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(b) <= i {
				return d
			}
			d.tl0, d.hasTL0 = b[i], true
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			if len(b) <= i {
				return d
			}
			i++
		}
	}
	d.ok, d.size = true, uint8(i)
	// S=1 and partition 0 start a frame; the payload header's P bit is 0 on a keyframe.
	d.key = b[0]&0x10 != 0 && b[0]&0x07 == 0 && len(b) > i && b[i]&0x01 == 0
	return d
}

// h264Keyframe tells whether an H264 payload (RFC 6184) starts an IDR picture or carries a
// sequence parameter set: a single NAL unit, a STAP-A holding one, or the start of a FU-A.
func h264Keyframe(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	key := func(t byte) bool { return t == 5 || t == 7 }
	switch t := b[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return key(t)
	case t == 24: // STAP-A: 16-bit sizes, then NAL units
		for i := 1; i+2 < len(b); {
			n := int(b[i])<<8 | int(b[i+1])
			if n == 0 || i+2+n > len(b) {
				return false
			}
			if key(b[i+2] & 0x1f) {
				return true
			}
			i += 2 + n
		}
	case t == 28: // FU-A: the start fragment of a NAL unit
		return len(b) > 1 && b[1]&0x80 != 0 && key(b[1]&0x1f)
	}
	return false
}

// startsKeyframe tells whether the switch may start a source at pkt.
func startsKeyframe(k payloadKind, pkt *packet) bool {
	switch k {
	case payloadVP8:
		return pkt.vp8.key
	case payloadH264:
		return h264Keyframe(pkt.payload)
	}
	return true // audio (each packet decodes alone) and anything unknown
}

// lastDesc is the VP8 descriptor of the last packet of one generation fanned out on a pipe: a
// consumer that forwarded it unchanged continues its picture numbers from there.
type lastDesc struct {
	gen uint32
	d   vp8Desc
}

// note records pkt as the last of its generation and layer on the pipe (worker goroutine only).
func (pp *pipe) note(pkt *packet) {
	pp.last[pkt.gen&1][pkt.layer%proto.MaxLayers] = lastDesc{gen: pkt.gen, d: pkt.vp8}
}

// lastOf is the last descriptor of generation gen's layer fanned out on the pipe.
func (pp *pipe) lastOf(gen uint32, layer uint8) (vp8Desc, bool) {
	if pp == nil {
		return vp8Desc{}, false
	}
	l := pp.last[gen&1][layer%proto.MaxLayers]
	return l.d, l.gen == gen && l.d.ok
}

// switcher is a consumer's choice of source and the translation of the one it switched to.
// It is owned by the worker goroutine; what the NACK handler needs is published in xlate.
type switcher struct {
	gen     uint32 // the source forwarded: a generation
	layer   uint8  // and its simulcast layer
	chosen  bool   // a first packet chose gen
	tsOff   uint32 // added to the source's timestamps
	rewrite bool   // VP8 descriptors are rewritten (picture numbers or their width)
	picLen  uint8  // the PictureID width the subscriber sees (1 or 2), 0: as the source
	lastIn  uint16 // the last source PictureID rewritten, and what it became
	lastOut uint16
	tl0Off  uint8
	lastTL0 uint8  // the last TL0PICIDX sent while rewriting
	scratch []byte // the rewritten payload, allocated at the first rewrite

	xlate atomic.Pointer[xlate] // nil until the first switch
	picAt atomic.Uint32         // lastIn<<16 | lastOut, for retransmissions
}

// xlate is what a retransmission needs to translate a packet of the source the consumer
// switched to, published once per switch.
type xlate struct {
	gen      uint32
	layer    uint8
	floor    uint16 // the first sequence number sent from this source: NACKs below it are of the old one
	hasFloor bool
	tsOff    uint32
	rewrite  bool
	picLen   uint8
	tl0Off   uint8
}

// begin sets the source a new consumer starts with: the producer's current one, so that a
// consumer made during a move never starts on the source being replaced.
func (s *switcher) begin(gen uint32) {
	s.gen = gen
	if gen != 0 {
		s.publish(0, false)
	}
}

// verdict is what the switch makes of a packet whose generation is not the one forwarded.
type verdict uint8

const (
	dropOld     verdict = iota // a replaced source: dropped
	waitKey                    // a new source before its keyframe: dropped, keyframe asked for
	switchNow                  // the new source starts here
	startSource                // the consumer's first packet, of a source newer than its first: forwarded as it is
)

// decide classifies a packet of generation pkt.gen != s.gen; fresh: the consumer has sent
// nothing yet.
func (s *switcher) decide(k payloadKind, pkt *packet, fresh bool) verdict {
	switch {
	case int32(pkt.gen-s.gen) < 0:
		return dropOld
	case fresh && !s.chosen:
		return startSource
	case !startsKeyframe(k, pkt):
		return waitKey
	}
	return switchNow
}

// switchTo makes pkt's source the one forwarded. lastTS, lastWall: the consumer's last
// timestamp sent and when; clock: the codec's; last: the old source's last VP8 descriptor on
// the pipe (haveLast: the consumer sent it unchanged); sr (haveSR): what maps the new layer's
// timestamps onto the old one's clock, from their sender reports (Producer.srOffset). The
// sequence numbers are the consumer's: it resynchronises them itself.
//
// Timestamps: with sender reports, the new layer's frames keep the instants they were
// captured at (layers of one publisher share its clock), so the subscriber's playout does not
// jump; without them (another generation, a relayed producer, no report yet), the new source
// starts as far after the last timestamp sent as wall-clock time has passed.
func (s *switcher) switchTo(pkt *packet, lastTS uint32, lastWall, now time.Time, clock uint32, last vp8Desc, haveLast bool, sr uint32, haveSR bool) {
	step := uint32(1)
	if clock > 0 && !lastWall.IsZero() {
		if d := now.Sub(lastWall); d > 0 {
			if n := uint32(d.Seconds() * float64(clock)); n > step {
				step = n
			}
		}
	}
	off := lastTS + step - pkt.header.Timestamp
	if haveSR && clock > 0 {
		// A frame captured after the last one sent keeps its instant (up to a second ahead);
		// one of the same instant or a little before (the new layer's keyframe of the frame
		// just sent) goes one tick after it: timestamps never go back.
		o := s.tsOff + sr
		switch d := int32(pkt.header.Timestamp + o - lastTS); {
		case d > 0 && d <= int32(clock):
			off = o
		case d <= 0 && d > -int32(clock):
			off = lastTS + 1 - pkt.header.Timestamp
		}
	}
	s.tsOff = off
	s.gen, s.layer, s.chosen = pkt.gen, pkt.layer, true
	in := pkt.vp8
	if !in.ok || (in.picLen == 0 && !in.hasTL0) {
		s.rewrite = false // nothing to number
		return
	}
	// The subscriber's last picture numbers: the ones it was sent.
	var outPic uint16
	var outTL0 uint8
	known, picLen := false, s.picLen
	switch {
	case s.rewrite:
		outPic, outTL0, known = s.lastOut, s.lastTL0, true
	case haveLast && (last.picLen > 0 || last.hasTL0):
		outPic, outTL0, known, picLen = last.pic, last.tl0, true, last.picLen
	}
	if !known || picLen == 0 || in.picLen == 0 {
		picLen = in.picLen
	}
	s.picLen = picLen
	if !known {
		s.rewrite = false
		return
	}
	s.lastIn, s.lastOut = in.pic, (outPic+1)&picMask(picLen)
	s.tl0Off = outTL0 + 1 - in.tl0
	s.lastTL0 = outTL0 + 1
	// With the same width and no offsets the payload goes out as it came: nothing is copied.
	s.rewrite = (in.picLen > 0 && (s.lastOut != in.pic || picLen != in.picLen)) || (in.hasTL0 && s.tl0Off != 0)
	s.picAt.Store(uint32(s.lastIn)<<16 | uint32(s.lastOut))
}

// publish tells the NACK handler how to translate the source now forwarded; floor is the
// sequence number the consumer sends its first packet under.
func (s *switcher) publish(floor uint16, hasFloor bool) {
	s.xlate.Store(&xlate{gen: s.gen, layer: s.layer, floor: floor, hasFloor: hasFloor, tsOff: s.tsOff, rewrite: s.rewrite, picLen: s.picLen, tl0Off: s.tl0Off})
}

// payload is the payload to send for pkt: the packet's own, or, while VP8 descriptors are
// rewritten, its copy with the subscriber's picture numbers in the scratch buffer.
func (s *switcher) payload(pkt *packet) []byte {
	in := pkt.vp8
	if !s.rewrite || !in.ok {
		return pkt.payload
	}
	pic := in.pic
	if in.picLen > 0 {
		d := picDelta(in.pic, s.lastIn, in.picLen)
		pic = (s.lastOut + uint16(d)) & picMask(s.picLen)
		if d > 0 {
			s.lastIn, s.lastOut = in.pic, pic
			s.picAt.Store(uint32(s.lastIn)<<16 | uint32(s.lastOut))
		}
	}
	tl0 := in.tl0 + s.tl0Off
	if in.hasTL0 && int8(tl0-s.lastTL0) > 0 {
		s.lastTL0 = tl0
	}
	if s.scratch == nil {
		s.scratch = make([]byte, packetcache.MaxPacket+2)
	}
	return s.scratch[:writeVP8(s.scratch, pkt.payload, in, pic, s.picLen, tl0)]
}

// picDelta is a-b for PictureIDs of width l, as a signed distance.
func picDelta(a, b uint16, l uint8) int {
	m := int(picMask(l)) + 1
	d := int(a-b) & (m - 1)
	if d >= m/2 {
		d -= m
	}
	return d
}

// writeVP8 writes src (a VP8 payload whose descriptor is in) to dst with PictureID pic in
// picLen bytes and TL0PICIDX tl0; it returns the length written. dst has room for one byte
// more than src (a 7-bit PictureID written in 15 bits).
func writeVP8(dst, src []byte, in vp8Desc, pic uint16, picLen uint8, tl0 uint8) int {
	if src[0]&0x80 == 0 {
		return copy(dst, src)
	}
	dst[0], dst[1] = src[0], src[1]
	x := src[1]
	i, o := 2, 2
	if x&0x80 != 0 {
		if picLen == 2 {
			dst[o], dst[o+1] = 0x80|byte(pic>>8)&0x7f, byte(pic)
			o += 2
		} else {
			dst[o] = byte(pic) & 0x7f
			o++
		}
		i += int(in.picLen)
	}
	if x&0x40 != 0 {
		dst[o] = tl0
		o, i = o+1, i+1
	}
	return o + copy(dst[o:], src[i:])
}

// translate rewrites a retransmitted VP8 payload (src, from the cache) into dst as the
// forward path would now; it returns dst's length.
func (x *xlate) translate(dst, src []byte, picAt uint32) int {
	in := parseVP8(src)
	if !in.ok {
		return copy(dst, src)
	}
	pic := in.pic
	if in.picLen > 0 {
		lastIn, lastOut := uint16(picAt>>16), uint16(picAt)
		pic = (lastOut + uint16(picDelta(in.pic, lastIn, in.picLen))) & picMask(x.picLen)
	}
	return writeVP8(dst, src, in, pic, x.picLen, in.tl0+x.tl0Off)
}

func picMask(l uint8) uint16 {
	if l == 1 {
		return 0x7f
	}
	return 0x7fff
}
