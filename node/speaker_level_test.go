package node

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// levelHeader is a parsed RTP header carrying the audio level byte b under extension id.
func levelHeader(t testing.TB, id uint8, b byte) rtp.Header {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: []byte{0xfc, 1, 2}}
	if err := p.Header.SetExtension(id, []byte{b}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var h rtp.Header
	if _, err := h.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestAudioLevelObserve: the ingest counts packets, loud packets and their loudness, apart for
// those with the V bit; nothing without the extension's id; take resets.
func TestAudioLevelObserve(t *testing.T) {
	var a audioLevel
	loudV, quiet, other := levelHeader(t, 3, 0x80|10), levelHeader(t, 3, 127), levelHeader(t, 4, 0x80|10)
	a.observe(&loudV) // not measured yet: ext is 0
	if s := a.take(); s != (levelSample{}) {
		t.Fatalf("unmeasured producer counted %+v", s)
	}
	a.ext.Store(3)
	a.observe(&loudV)
	a.observe(&loudV)
	a.observe(&quiet)
	a.observe(&other) // another extension: not the level
	want := levelSample{packets: 3, loud: 2, sum: 2 * (voiceDBov - 10), vPackets: 2, vLoud: 2, vSum: 2 * (voiceDBov - 10)}
	if s := a.take(); s != want {
		t.Fatalf("sample %+v, want %+v", s, want)
	}
	if s := a.take(); s != (levelSample{}) {
		t.Fatalf("take did not reset: %+v", s)
	}
}

// TestAudioLevelAllocatesNothing pins the per-packet cost: no allocation.
func TestAudioLevelAllocatesNothing(t *testing.T) {
	var a audioLevel
	a.ext.Store(1)
	h := levelHeader(t, 1, 0x80|20)
	if n := testing.AllocsPerRun(1000, func() { a.observe(&h) }); n != 0 {
		t.Fatalf("observe allocates %v per packet", n)
	}
}

func BenchmarkAudioLevelObserve(b *testing.B) {
	var a audioLevel
	a.ext.Store(1)
	h := levelHeader(b, 1, 0x80|20)
	for b.Loop() {
		a.observe(&h)
	}
}

// ingestAudio is an audio producer piped to one worker and an Opus packet carrying the audio
// level under extension id 1 (with the transport-cc one, as a browser sends), for the ingest.
func ingestAudio(tb testing.TB) (*Producer, *Worker, []byte) {
	w := &Worker{jobs: make(chan job, 1)}
	pr := &Producer{id: "p", kind: webrtc.RTPCodecTypeAudio, cache: newCache(webrtc.RTPCodecTypeAudio)}
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	pr.pkind.Store(uint32(payloadOther))
	pipes := []*pipe{{worker: w}}
	pr.pipesView.Store(&pipes)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, Timestamp: 960, SSRC: 42}, Payload: make([]byte, 80)}
	if err := p.Header.SetExtension(3, []byte{0, 1}); err != nil {
		tb.Fatal(err)
	}
	if err := p.Header.SetExtension(1, []byte{0x80 | 20}); err != nil {
		tb.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return pr, w, raw
}

// TestIngestReadsAudioLevel: the ingest of a measured producer reads the level, allocating
// nothing.
func TestIngestReadsAudioLevel(t *testing.T) {
	pr, w, raw := ingestAudio(t)
	pr.level.ext.Store(1)
	one := func() {
		pr.Inject(raw) // the ingest, as for a relayed packet (a stable entry point)
		(<-w.jobs).pkt.release()
	}
	one()
	if s := pr.level.take(); s.packets != 1 || s.vLoud != 1 || s.vSum != voiceDBov-20 {
		t.Fatalf("ingest read %+v", s)
	}
	if n := testing.AllocsPerRun(1000, one); n != 0 {
		t.Fatalf("ingest of a measured audio packet allocates %v", n)
	}
}

// BenchmarkIngestAudio is a producer's per-packet work for an Opus packet with the audio
// level, its level read (measured) or not (a producer whose origin is another node).
func BenchmarkIngestAudio(b *testing.B) {
	for _, measured := range []bool{false, true} {
		name := map[bool]string{false: "unmeasured", true: "measured"}[measured]
		b.Run(name, func(b *testing.B) {
			pr, w, raw := ingestAudio(b)
			if measured {
				pr.level.ext.Store(1)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				raw[2], raw[3] = byte(i>>8), byte(i)
				pr.Inject(raw)
				(<-w.jobs).pkt.release()
			}
		})
	}
}
