package node

import (
	"bytes"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sent is one packet a consumer wrote.
type sent struct {
	seq     uint16
	ts      uint32
	payload []byte // a copy
	aliased bool   // the payload written was the packet's own (nothing copied)
}

// tape records what a consumer writes.
type tape struct {
	in  []byte // the payload of the packet being forwarded
	out []sent
}

func (t *tape) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	a := len(p) > 0 && len(t.in) > 0 && &p[0] == &t.in[0]
	t.out = append(t.out, sent{h.SequenceNumber, h.Timestamp, append([]byte(nil), p...), a})
	return len(p), nil
}
func (t *tape) Write(b []byte) (int, error) { return len(b), nil }

// switchRig is a remote producer of one codec with a relay sink attached, fed synthetic
// packets on an injected clock: the fan-out's steps (ingest, forward, note) run inline.
type switchRig struct {
	t   *testing.T
	p   *Producer
	c   *Consumer
	out *tape
	up  *countingUpstream
	now time.Time
}

func newSwitchRig(t *testing.T, codec webrtc.RTPCodecCapability) *switchRig {
	n := &Node{rtx: rtxbudget.Config{}.WithDefaults()}
	n.metrics = newMetrics(n)
	w := &Worker{consumers: make(map[*Consumer]struct{})}
	n.workers = []*Worker{w}
	kind := webrtc.RTPCodecTypeVideo
	if kindOf(codec) == payloadAudio {
		kind = webrtc.RTPCodecTypeAudio
	}
	p := &Producer{id: "p", kind: kind, node: n, home: w, cache: newCache(kind), codecCap: codec}
	p.pool.New = func() any { return &packet{pool: &p.pool} }
	p.src.Store(&source{origin: "a"})
	p.pkind.Store(uint32(kindOf(codec)))
	up := &countingUpstream{}
	p.SetUpstream(up)
	out := &tape{}
	c, err := p.Attach(out, 99)
	if err != nil {
		t.Fatal(err)
	}
	return &switchRig{t: t, p: p, c: c, out: out, up: up, now: time.Unix(1000, 0)}
}

// move makes the producer come from another origin; the sink is kept.
func (r *switchRig) move(origin string) uint32 {
	gen := r.p.moveTo(&source{origin: origin}, 0)
	r.p.SetUpstream(r.up)
	return gen
}

// send feeds one packet of generation gen, after = the time since the last one, and reports
// whether the consumer forwarded it.
func (r *switchRig) send(gen uint32, seq uint16, ts uint32, payload []byte, after time.Duration) bool {
	r.t.Helper()
	r.now = r.now.Add(after)
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 5}, Payload: payload}).Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	r.p.InjectFrom(gen, raw) // the cache (the worker has no queue here: the post is dropped)
	pkt := &packet{}
	n := copy(pkt.buf[:], raw)
	if _, err := pkt.header.Unmarshal(pkt.buf[:n]); err != nil {
		r.t.Fatal(err)
	}
	pkt.payload, pkt.size, pkt.gen = pkt.buf[12:n], n, gen
	if kindOf(r.p.codecCap) == payloadVP8 {
		pkt.vp8 = parseVP8(pkt.payload)
	}
	r.out.in = pkt.payload
	ok := r.c.forward(pkt, r.now)
	r.c.pipe.note(pkt)
	return ok
}

// last is the last packet written.
func (r *switchRig) last() sent {
	r.t.Helper()
	if len(r.out.out) == 0 {
		r.t.Fatal("nothing sent")
	}
	return r.out.out[len(r.out.out)-1]
}

var vp8Codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// vp8 builds a one-packet VP8 frame: descriptor with PictureID (picLen bytes) and TL0PICIDX,
// the payload header (P=0 on a keyframe) and some data.
func vp8(picLen int, pic uint16, tl0 uint8, key bool) []byte {
	b := []byte{0x90, 0xc0} // X, S, partition 0; I, L
	switch picLen {
	case 2:
		b = append(b, 0x80|byte(pic>>8), byte(pic))
	case 1:
		b = append(b, byte(pic)&0x7f)
	}
	b = append(b, tl0)
	hdr := byte(0x01) // P=1: an interframe
	if key {
		hdr = 0x00
	}
	return append(b, hdr, 0xaa, 0xbb, 0xcc)
}

// TestSwitchVP8Continues: a VP8 consumer keeps forwarding the old source while the new one
// waits for its keyframe (and asks for one), then switches at it: sequence numbers, timestamps
// (by the wall time since), 15-bit PictureIDs and TL0PICIDX go on from the last ones sent;
// the old source is dropped after; a NACK after the switch is answered with the new source's
// packet translated, one from before it is not answered from the new source's cache.
func TestSwitchVP8Continues(t *testing.T) {
	r := newSwitchRig(t, vp8Codec)
	frame := 33 * time.Millisecond
	for f := uint16(0); f < 3; f++ {
		if !r.send(0, 100+f, 3000*uint32(f+1), vp8(2, 1000+f, uint8(50+f), f == 0), frame) {
			t.Fatalf("frame %d not forwarded", f)
		}
	}
	if s := r.last(); s.seq != 102 || !s.aliased {
		t.Fatalf("before a move: seq %d, aliased %v; want 102 and the packet's own payload", s.seq, s.aliased)
	}
	gen := r.move("b")
	kf := r.up.n.Load()
	if r.send(gen, 5000, 900000, vp8(2, 7, 200, false), 0) {
		t.Fatal("the new source was forwarded before its keyframe")
	}
	if r.up.n.Load() == kf {
		t.Fatal("no keyframe asked of the new source")
	}
	if !r.send(0, 103, 12000, vp8(2, 1003, 53, false), frame) {
		t.Fatal("the old source stopped before the new one's keyframe (make-before-break)")
	}
	if !r.send(gen, 5001, 903000, vp8(2, 8, 200, true), frame) {
		t.Fatal("the new source's keyframe was not forwarded")
	}
	key := r.last()
	if d := parseVP8(key.payload); key.seq != 104 || key.ts != 12000+2970 || d.pic != 1004 || d.picLen != 2 || d.tl0 != 54 || !d.key {
		t.Fatalf("keyframe went out as seq %d ts %d pic %d/%d tl0 %d key %v; want 104, %d, 1004/2, 54, true", key.seq, key.ts, d.pic, d.picLen, d.tl0, d.key, 12000+2970)
	}
	if !r.send(gen, 5002, 906000, vp8(2, 9, 201, false), frame) {
		t.Fatal("the new source's next frame was not forwarded")
	}
	next := r.last()
	if d := parseVP8(next.payload); next.seq != 105 || next.ts != 12000+2970+3000 || d.pic != 1005 || d.tl0 != 55 {
		t.Fatalf("next frame: seq %d ts %d pic %d tl0 %d; want 105, %d, 1005, 55", next.seq, next.ts, d.pic, d.tl0, 12000+2970+3000)
	}
	if !bytes.Equal(next.payload[5:], []byte{0x01, 0xaa, 0xbb, 0xcc}) || next.aliased {
		t.Fatalf("rewritten payload %x: the data after the descriptor changed, or the shared payload was written", next.payload)
	}
	if r.send(0, 104, 15000, vp8(2, 1004, 54, false), frame) {
		t.Fatal("the old source was forwarded after the switch")
	}
	n := len(r.out.out)
	r.c.nack(r.now, []uint16{105})
	if len(r.out.out) != n+1 {
		t.Fatalf("NACK of a packet of the new source: %d retransmissions, want 1", len(r.out.out)-n)
	}
	if rt := r.last(); rt.seq != 105 || rt.ts != next.ts || !bytes.Equal(rt.payload, next.payload) {
		t.Fatalf("retransmission seq %d ts %d payload %x; want the packet as sent: 105 %d %x", rt.seq, rt.ts, rt.payload, next.ts, next.payload)
	}
	r.c.nack(r.now, []uint16{103})
	if len(r.out.out) != n+1 {
		t.Fatal("a NACK of the old source's packet was answered from the new source's cache")
	}
}

// TestSwitchVP8KeepsSubscribersWidth: the subscriber saw 7-bit PictureIDs; a new source with
// 15-bit ones is sent in 7 bits (and the reverse in 15), wrapping where the subscriber's width
// wraps.
func TestSwitchVP8KeepsSubscribersWidth(t *testing.T) {
	for _, tc := range []struct {
		name           string
		oldLen, newLen int
		oldPic, newPic uint16
		want           []uint16 // the PictureIDs of the new source's keyframe and next two frames
	}{
		{"7 bits seen, 15 bits new", 1, 2, 126, 3000, []uint16{127, 0, 1}},
		{"15 bits seen, 7 bits new", 2, 1, 32766, 126, []uint16{32767, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSwitchRig(t, vp8Codec)
			r.send(0, 1, 3000, vp8(tc.oldLen, tc.oldPic, 9, true), 0)
			gen := r.move("b")
			for i, want := range tc.want {
				in := vp8(tc.newLen, tc.newPic+uint16(i), uint8(i), i == 0)
				if tc.newLen == 1 {
					in = vp8(1, (tc.newPic+uint16(i))&0x7f, uint8(i), i == 0)
				}
				if !r.send(gen, 700+uint16(i), 90000*uint32(i), in, 33*time.Millisecond) {
					t.Fatalf("frame %d not forwarded", i)
				}
				s := r.last()
				d := parseVP8(s.payload)
				if d.pic != want || int(d.picLen) != tc.oldLen || d.tl0 != uint8(10+i) || s.seq != uint16(2+i) {
					t.Fatalf("frame %d: pic %d in %d bytes, tl0 %d, seq %d; want %d in %d, %d, %d", i, d.pic, d.picLen, d.tl0, s.seq, want, tc.oldLen, 10+i, 2+i)
				}
				if !bytes.Equal(s.payload[len(s.payload)-3:], []byte{0xaa, 0xbb, 0xcc}) {
					t.Fatalf("frame %d: data changed: %x", i, s.payload)
				}
			}
		})
	}
}

// TestSwitchNoCopyWithoutOffsets: a consumer that never switched, and one whose new source's
// picture numbers happen to go on from its own, write the packet's own payload: no copy.
func TestSwitchNoCopyWithoutOffsets(t *testing.T) {
	r := newSwitchRig(t, vp8Codec)
	r.send(0, 10, 3000, vp8(2, 41, 5, true), 0)
	r.send(0, 11, 6000, vp8(2, 42, 6, false), 33*time.Millisecond)
	gen := r.move("b")
	r.send(gen, 12, 9000, vp8(2, 43, 7, true), 33*time.Millisecond)
	r.send(gen, 13, 12000, vp8(2, 44, 8, false), 33*time.Millisecond)
	for i, s := range r.out.out {
		if !s.aliased {
			t.Fatalf("packet %d was copied", i)
		}
	}
	if r.c.sw.scratch != nil || r.c.sw.rewrite {
		t.Fatal("a scratch buffer was made without a rewrite")
	}
}

// TestSwitchAudioAtOnce: audio switches at the new source's first packet, its timestamps going
// on by the wall time since the last packet sent (20 ms: 960 at 48 kHz).
func TestSwitchAudioAtOnce(t *testing.T) {
	r := newSwitchRig(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	r.send(0, 500, 48000, []byte{1, 2, 3}, 0)
	gen := r.move("b")
	if !r.send(gen, 9, 7, []byte{4, 5, 6}, 20*time.Millisecond) {
		t.Fatal("audio of the new source waited")
	}
	if s := r.last(); s.seq != 501 || s.ts != 48000+960 || !s.aliased {
		t.Fatalf("seq %d ts %d aliased %v; want 501, %d, true", s.seq, s.ts, s.aliased, 48000+960)
	}
	if r.send(0, 501, 48960, []byte{7}, 0) {
		t.Fatal("the old source was forwarded after the switch")
	}
	// Two packets in the same instant: the timestamp still moves on.
	r2 := newSwitchRig(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	r2.send(0, 1, 100, []byte{1}, 0)
	r2.send(r2.move("b"), 2, 100, []byte{1}, 0)
	if s := r2.last(); s.ts != 101 {
		t.Fatalf("timestamp %d after a switch in the same instant, want 101", s.ts)
	}
}

// TestSwitchH264WaitsForIDR: an H264 consumer switches at an IDR (or SPS) only.
func TestSwitchH264WaitsForIDR(t *testing.T) {
	r := newSwitchRig(t, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000})
	r.send(0, 1, 3000, []byte{0x65, 1}, 0)
	gen := r.move("b")
	if r.send(gen, 50, 9, []byte{0x41, 1}, 0) || r.send(gen, 51, 9, []byte{0x7c, 0x05, 1}, 0) {
		t.Fatal("switched at a non-IDR packet")
	}
	if !r.send(gen, 52, 3009, []byte{0x7c, 0x85, 1}, 33*time.Millisecond) {
		t.Fatal("did not switch at the start of an IDR")
	}
	if s := r.last(); s.seq != 2 || s.ts != 3000+2970 {
		t.Fatalf("seq %d ts %d, want 2, %d", s.seq, s.ts, 3000+2970)
	}
}

func TestH264Keyframe(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"IDR", []byte{0x65, 0x88}, true},
		{"SPS", []byte{0x67, 0x42}, true},
		{"non-IDR", []byte{0x41, 0x9a}, false},
		{"PPS alone", []byte{0x68, 0xce}, false},
		{"STAP-A with SPS", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"STAP-A without", []byte{0x78, 0, 2, 0x06, 0x05, 0, 2, 0x68, 0xce}, false},
		{"STAP-A truncated", []byte{0x78, 0, 9, 0x67}, false},
		{"FU-A IDR start", []byte{0x7c, 0x85, 0}, true},
		{"FU-A IDR middle", []byte{0x7c, 0x05, 0}, false},
		{"FU-A non-IDR start", []byte{0x7c, 0x81, 0}, false},
		{"empty", nil, false},
	} {
		if got := h264Keyframe(tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseVP8(t *testing.T) {
	if d := parseVP8(vp8(2, 0x1234, 7, true)); !d.ok || d.picLen != 2 || d.pic != 0x1234 || d.tl0 != 7 || !d.key || d.size != 5 {
		t.Fatalf("15-bit: %+v", d)
	}
	if d := parseVP8(vp8(1, 0x55, 7, false)); !d.ok || d.picLen != 1 || d.pic != 0x55 || d.key || d.size != 4 {
		t.Fatalf("7-bit interframe: %+v", d)
	}
	if d := parseVP8([]byte{0x00, 0x00}); !d.ok || d.key {
		t.Fatalf("no start bit: %+v", d)
	}
	if d := parseVP8([]byte{0x10, 0x00}); !d.ok || !d.key || d.size != 1 {
		t.Fatalf("short descriptor keyframe: %+v", d)
	}
	for _, b := range [][]byte{{0x80}, {0x80, 0x80}, {0x80, 0x80, 0x80}, {0x80, 0x40}} {
		if d := parseVP8(b); d.ok {
			t.Fatalf("truncated %x parsed: %+v", b, d)
		}
	}
}

// TestInjectFromDropsStaleGenerations: a relay of a source two moves old feeds nothing.
func TestInjectFromDropsStaleGenerations(t *testing.T) {
	r := newSwitchRig(t, vp8Codec)
	r.move("b")
	r.move("c") // generation 2: 1 is the one it replaced, 0 is stale
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 9}, Payload: []byte{1}}).Marshal()
	before := r.p.media.Load()
	r.p.InjectFrom(0, raw)
	if r.p.media.Load() != before {
		t.Fatal("a packet of a stale generation was fanned out")
	}
	r.p.InjectFrom(1, raw)
	if r.p.media.Load() == before {
		t.Fatal("a packet of the replaced generation was dropped (make-before-break)")
	}
}

// BenchmarkForwardSwitched is BenchmarkForwardOne after a move whose VP8 picture numbers are
// rewritten: the per-consumer copy of the payload into its scratch buffer.
func BenchmarkForwardSwitched(b *testing.B) {
	_, pp, pkt := benchConsumers(1)
	c := (*pp.consumers.Load())[0]
	c.pipe, c.kind = pp, payloadVP8
	set := func(pic uint16) {
		n := copy(pkt.buf[12:], vp8(2, pic, 1, true))
		pkt.payload = pkt.buf[12 : 12+n+1100]
		pkt.vp8 = parseVP8(pkt.payload)
	}
	now := time.Now()
	set(100)
	c.forward(pkt, now)
	pp.note(pkt)
	set(5000)
	pkt.gen = 1
	if !c.forward(pkt, now) || !c.sw.rewrite {
		b.Fatal("no switch with a rewrite")
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt.header.SequenceNumber = uint16(i)
		c.forward(pkt, now)
	}
}

// BenchmarkIngestVP8 is BenchmarkIngest for a VP8 producer: the descriptor is parsed once per
// packet for the consumers' switches.
func BenchmarkIngestVP8(b *testing.B) {
	benchIngest(b, payloadVP8, append(vp8(2, 100, 1, false), make([]byte, 1180)...))
}

// TestSwitchNewConsumerDuringMove: a consumer made after a move starts on the new source: the
// old one's packets (still flowing, make-before-break) are dropped, and its NACKs are answered
// from the new source's cache.
func TestSwitchNewConsumerDuringMove(t *testing.T) {
	r := newSwitchRig(t, vp8Codec)
	gen := r.move("b")
	out := &tape{}
	c, err := r.p.Attach(out, 100)
	if err != nil {
		t.Fatal(err)
	}
	r.c, r.out = c, out
	if r.send(0, 10, 3000, vp8(2, 41, 5, false), 0) {
		t.Fatal("a new consumer started on the source being replaced")
	}
	for i := uint16(0); i < 3; i++ {
		if !r.send(gen, 500+i, 9000+3000*uint32(i), vp8(2, 7+i, 1, i == 0), 33*time.Millisecond) {
			t.Fatalf("packet %d of the current source was not forwarded", i)
		}
	}
	n := len(out.out)
	c.nack(r.now, []uint16{501})
	if len(out.out) != n+1 || out.out[n].seq != 501 {
		t.Fatalf("NACK of the current source's packet: %d retransmissions", len(out.out)-n)
	}
}

// FuzzVP8Rewrite: a publisher's VP8 payload is outside input. Whatever it holds, the parse never
// reads past it, and a rewrite (in either PictureID width) never writes past the scratch buffer
// and reads back as written, with the rest of the payload unchanged.
func FuzzVP8Rewrite(f *testing.F) {
	f.Add(vp8(2, 1234, 5, true), uint16(77), uint8(9), true)
	f.Add(vp8(1, 12, 5, false), uint16(30000), uint8(0), false)
	f.Add([]byte{0x80, 0x80, 0x80}, uint16(1), uint8(1), true)
	f.Fuzz(func(t *testing.T, b []byte, pic uint16, tl0 uint8, wide bool) {
		if len(b) > 1400 {
			return
		}
		in := parseVP8(b)
		if !in.ok || b[0]&0x80 == 0 {
			return
		}
		picLen := uint8(1)
		if wide {
			picLen = 2
		}
		pic &= picMask(picLen)
		dst := make([]byte, len(b)+2)
		n := writeVP8(dst, b, in, pic, picLen, tl0)
		out := parseVP8(dst[:n])
		if !out.ok || out.hasTL0 != in.hasTL0 || (in.hasTL0 && out.tl0 != tl0) {
			t.Fatalf("%x -> %x: %+v", b, dst[:n], out)
		}
		if in.picLen > 0 && (out.picLen != picLen || out.pic != pic) {
			t.Fatalf("%x -> %x: PictureID %d/%d, want %d/%d", b, dst[:n], out.pic, out.picLen, pic, picLen)
		}
		if !bytes.Equal(dst[out.size:n], b[in.size:]) {
			t.Fatalf("%x -> %x: the payload after the descriptor changed", b, dst[:n])
		}
	})
}
