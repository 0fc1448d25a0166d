package node

import (
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// voiceDBov is the loudest level (in -dBov, RFC 6464: 0 is the loudest, 127 silence) a packet
// may have and still count as silence: speech into a browser's microphone is typically 10 to
// 40 dB below overload, a quiet room's noise 60 and more.
const voiceDBov = 50

// Packing of the accumulators of audioLevel: packets in the top 16 bits, loud packets (louder
// than voiceDBov) in the next 16, the sum of the loud packets' loudness (voiceDBov - level) in
// the low 32. One atomic add per packet updates all three; the speaker loop swaps the word
// every tick (about 5 packets of 20 ms), far from overflowing any field.
const (
	levelPacket = uint64(1) << 48
	levelLoud   = uint64(1) << 32
)

// audioLevel reads the RFC 6464 audio level of an audio producer's packets at ingest. It is
// fixed-size and lock-free: the ingest adds to two words, the speaker loop swaps them out.
// Only a producer whose publisher is connected here (its origin) measures: the speaker loop
// sets ext, the extension's id negotiated on the publisher's send transport, and clears it
// when the producer moves away.
type audioLevel struct {
	ext atomic.Uint32 // 0: not measured (no extension, not an audio producer, or not local)
	all atomic.Uint64 // every packet with the extension
	vad atomic.Uint64 // those whose V bit (voice activity) is set
}

// levelSample is what the ingest saw of one producer since the last tick, both ways: over all
// packets with the extension, and over those its sender flagged as voice (the V bit).
type levelSample struct {
	packets, loud, sum    uint64
	vPackets, vLoud, vSum uint64
}

// observe reads the audio level of one packet: one atomic load for a producer that is not
// measured, one or two atomic adds for one that is. No allocation.
func (a *audioLevel) observe(h *rtp.Header) {
	id := a.ext.Load()
	if id == 0 {
		return
	}
	b := h.GetExtension(uint8(id))
	if len(b) == 0 {
		return
	}
	inc := levelPacket
	if dbov := uint64(b[0] & 0x7f); dbov < voiceDBov {
		inc += levelLoud + voiceDBov - dbov
	}
	a.all.Add(inc)
	if b[0]&0x80 != 0 {
		a.vad.Add(inc)
	}
}

// take returns and resets what was observed since the last take.
func (a *audioLevel) take() levelSample {
	all, vad := a.all.Swap(0), a.vad.Swap(0)
	return levelSample{
		packets: all >> 48, loud: all >> 32 & 0xffff, sum: all & 0xffffffff,
		vPackets: vad >> 48, vLoud: vad >> 32 & 0xffff, vSum: vad & 0xffffffff,
	}
}

// audioLevelExt is the id of the audio-level extension negotiated for the media section mid
// of a publisher's send transport (0: none, or not negotiated yet).
func audioLevelExt(pc *webrtc.PeerConnection, mid string) uint32 {
	if pc == nil {
		return 0
	}
	for _, tr := range pc.GetTransceivers() {
		if tr.Mid() != mid || tr.Receiver() == nil {
			continue
		}
		for _, e := range tr.Receiver().GetParameters().HeaderExtensions {
			if e.URI == sdp.AudioLevelURI && e.ID > 0 && e.ID < 256 {
				return uint32(e.ID)
			}
		}
	}
	return 0
}
