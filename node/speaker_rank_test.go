package node

import (
	"math"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
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

// sample is a tick of n packets of which loud are at dBov level (with the V bit if vad).
func sample(n, loud uint64, dbov uint64, vad bool) levelSample {
	s := levelSample{packets: n, loud: loud, sum: loud * (voiceDBov - dbov)}
	if vad {
		s.vPackets, s.vLoud, s.vSum = loud, loud, s.sum
	}
	return s
}

// TestVoiceHysteresis: speech starts after a few ticks, is not ended by a short pause between
// words nor started by one loud tick, and ends some ticks after the voice does.
func TestVoiceHysteresis(t *testing.T) {
	var v voice
	v.update(sample(5, 5, 10, false)) // one loud tick (a cough) starts nothing
	if v.speaking {
		t.Fatal("one loud tick started speech")
	}
	for i := 0; i < 5 && !v.speaking; i++ {
		v.update(sample(5, 5, 10, false))
	}
	if !v.speaking {
		t.Fatalf("continuous voice not speaking: %+v", v)
	}
	for i := 0; i < 10; i++ { // a second of speech
		v.update(sample(5, 4, 20, false))
	}
	v.update(sample(5, 0, 0, false)) // a pause between words
	v.update(sample(0, 0, 0, false)) // DTX: no packets
	if !v.speaking {
		t.Fatalf("a 200 ms pause ended speech: %+v", v)
	}
	ticks := 0
	for v.speaking {
		v.update(sample(5, 0, 0, false))
		ticks++
	}
	if ticks < 3 || ticks > 10 {
		t.Fatalf("speech ended %d ticks after the voice", ticks)
	}
	// A sender that sets the V bit: its loud packets without it are not speech.
	var w voice
	w.update(sample(5, 1, 10, true))
	for i := 0; i < 20; i++ {
		w.update(levelSample{packets: 5, loud: 5, sum: 5 * 40}) // loud, but not flagged as voice
	}
	if w.speaking || !w.vad {
		t.Fatalf("loud packets without the V bit of a VAD sender: %+v", w)
	}
}

func sp(id string, level float64) proto.Speaker {
	return proto.Speaker{Participant: "PA" + id, Producer: id, Level: level}
}

func ids(l []proto.Speaker) string {
	s := ""
	for _, x := range l {
		s += x.Producer
	}
	return s
}

// TestRankSpeakers: newcomers loudest first; an established order changes only for a clear
// margin; at most MaxSpeakers.
func TestRankSpeakers(t *testing.T) {
	cases := []struct {
		prev, now []proto.Speaker
		want      string
	}{
		{nil, []proto.Speaker{sp("a", 0.2), sp("b", 0.6), sp("c", 0.4)}, "bca"},
		{[]proto.Speaker{sp("a", 0.5)}, []proto.Speaker{sp("b", 0.55), sp("a", 0.5)}, "ab"}, // within the margin
		{[]proto.Speaker{sp("a", 0.5)}, []proto.Speaker{sp("b", 0.7), sp("a", 0.5)}, "ba"},  // clearly louder
		{[]proto.Speaker{sp("a", 0.5), sp("b", 0.4)}, []proto.Speaker{sp("b", 0.4)}, "b"},
		{nil, []proto.Speaker{sp("a", 0.1), sp("b", 0.2), sp("c", 0.3), sp("d", 0.4)}, "dcb"},
		{[]proto.Speaker{sp("a", 0.1), sp("b", 0.1), sp("c", 0.1)}, []proto.Speaker{sp("a", 0.1), sp("b", 0.1), sp("c", 0.1), sp("d", 0.5)}, "dab"},
	}
	for i, c := range cases {
		if got := ids(rankSpeakers(c.prev, c.now)); got != c.want {
			t.Errorf("case %d: %s, want %s", i, got, c.want)
		}
	}
}

// TestMergeSpeakers: the nodes' lists merge loudest head first, each keeping its order, into the
// same list whatever the order of the lists.
func TestMergeSpeakers(t *testing.T) {
	x := []proto.Speaker{sp("a", 0.5), sp("b", 0.6)} // ranked by its node with hysteresis
	y := []proto.Speaker{sp("c", 0.55), sp("d", 0.1)}
	if got, rev := ids(mergeSpeakers(x, y)), ids(mergeSpeakers(y, x)); got != "cab" || rev != got {
		t.Fatalf("merged %s and %s, want cab", got, rev)
	}
	if got := mergeSpeakers(nil, nil); len(got) != 0 {
		t.Fatalf("merged nothing into %v", got)
	}
}

// TestDebounced: the first change at once, then at most one per speakerDebounce; a level alone
// is no change.
func TestDebounced(t *testing.T) {
	var d debounced
	t0 := time.Unix(1000, 0)
	if !d.propose([]proto.Speaker{sp("a", 0.5)}, t0) {
		t.Fatal("first change held")
	}
	if d.propose([]proto.Speaker{sp("a", 0.9)}, t0.Add(time.Second)) {
		t.Fatal("a level change counted")
	}
	if d.propose([]proto.Speaker{sp("b", 0.5)}, t0.Add(speakerDebounce/2)) {
		t.Fatal("a change within the debounce interval")
	}
	if !d.propose([]proto.Speaker{sp("b", 0.5)}, t0.Add(speakerDebounce)) || ids(d.list) != "b" {
		t.Fatal("a change after the interval held")
	}
	if !d.propose(nil, t0.Add(3*speakerDebounce)) || len(d.list) != 0 {
		t.Fatal("the empty list is a change")
	}
}

func TestRoundLevel(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{math.NaN(), 0}, {-1, 0}, {2, 1}, {0.1234, 0.12}, {math.Inf(1), 1}} {
		if got := roundLevel(c.in); got != c.want {
			t.Errorf("roundLevel(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
