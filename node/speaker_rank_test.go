package node

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
)

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
	if ticks < 5 || ticks > 15 {
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

// TestVoiceSteady: talk spurts (a random 70 % of ticks voiced) and Chromium's fake microphone
// (what it sent, measured: a beep in two ticks out of five, every packet with the V bit) are
// each one stretch of speech, without flapping; silence after them ends it.
func TestVoiceSteady(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	chromium := []levelSample{{5, 2, 71, 5, 2, 71}, {6, 6, 88, 6, 6, 88}, {5, 1, 1, 5, 1, 1}, {5, 0, 0, 5, 0, 0}, {5, 0, 0, 5, 0, 0}}
	for name, source := range map[string]func(i int) levelSample{
		"spurts": func(int) levelSample {
			if rng.IntN(10) < 7 {
				return sample(5, 5, 20, true)
			}
			return sample(5, 0, 0, true)
		},
		"chromium": func(i int) levelSample { return chromium[i%len(chromium)] },
	} {
		var v voice
		changes := 0
		for i := 0; i < 300; i++ {
			was := v.speaking
			v.update(source(i))
			if v.speaking != was {
				changes++
			}
		}
		for i := 0; i < 20; i++ {
			v.update(sample(5, 0, 0, true))
		}
		if changes != 1 || v.speaking {
			t.Errorf("%s: %d changes in 30 s, speaking %v after 2 s of silence: want one start, then the end", name, changes, v.speaking)
		}
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

// TestSentList: a node sends its list on a change (at most every speakerDebounce), again when
// the levels drift enough to reorder the room (at most every levelResend), and every
// speakerRefresh.
func TestSentList(t *testing.T) {
	var l sentList
	t0 := time.Unix(1000, 0)
	if !l.send([]proto.Speaker{sp("a", 0.5)}, t0) {
		t.Fatal("a change not sent")
	}
	if l.send([]proto.Speaker{sp("a", 0.52)}, t0.Add(levelResend)) {
		t.Fatal("a small drift sent")
	}
	if l.send([]proto.Speaker{sp("a", 0.8)}, t0.Add(levelResend/2)) {
		t.Fatal("a drift sent within levelResend")
	}
	if l.send([]proto.Speaker{sp("b", 0.8)}, t0.Add(speakerDebounce/2)) {
		t.Fatal("a change sent within the debounce interval")
	}
	if !l.send([]proto.Speaker{sp("a", 0.8)}, t0.Add(levelResend)) || l.list[0].Level != 0.8 {
		t.Fatalf("a drift not sent: %+v", l.list)
	}
	if !l.send([]proto.Speaker{sp("a", 0.8)}, t0.Add(levelResend+speakerRefresh)) {
		t.Fatal("no refresh")
	}
	if !l.send([]proto.Speaker{sp("b", 0.8)}, t0.Add(levelResend+speakerRefresh+speakerDebounce)) {
		t.Fatal("a change not sent")
	}
	var empty sentList
	if empty.send(nil, t0) || empty.send(nil, t0.Add(time.Hour)) {
		t.Fatal("an empty list that never changed was sent")
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

// FuzzRemoteSpeakers: whatever list another node sends (decoded from JSON, as the cluster layer
// does), the room keeps at most MaxSpeakers distinct entries with levels in [0, 1], and counts
// only those naming that node's own audio producers, with their real publisher.
func FuzzRemoteSpeakers(f *testing.F) {
	f.Add([]byte(`[{"participant":"PAb","producer":"PRb","level":0.5}]`))
	f.Add([]byte(`[{"producer":"PRc","level":1e308},{"producer":"PRb","level":-1},{"producer":"PRb"},{"producer":"PRv"},{"producer":"PRx"}]`))
	f.Add([]byte(`[{"producer":"","level":0.1}]`))
	n, err := New(Options{LoopbackOnly: true, Workers: 1, TCPPort: TCPDisabled})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(n.Close)
	p, err := n.Join("r", "listener", Grant{Subscribe: true}, false, nopNotes{})
	if err != nil {
		f.Fatal(err)
	}
	r := p.Room()
	for _, info := range []struct{ id, kind, codec, origin string }{
		{"PRb", "audio", "audio/opus", "nb"}, {"PRc", "audio", "audio/opus", "nc"}, {"PRv", "video", "video/VP8", "nb"}} {
		if _, err := r.AddRemoteProducer(ProducerInfo{ID: info.id, Participant: "PA" + info.id[2:], Kind: info.kind, Codec: info.codec}, info.origin); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var list []proto.Speaker
		if json.Unmarshal(data, &list) != nil {
			return
		}
		r.SetRemoteSpeakers("nb", list)
		got := n.speakers.remoteOf(r, time.Now())["nb"]
		seen := map[string]bool{}
		for _, s := range got {
			if seen[s.Producer] || !(s.Level >= 0 && s.Level <= 1) || s.Producer == "" {
				t.Fatalf("kept %+v", got)
			}
			seen[s.Producer] = true
		}
		if len(got) > MaxSpeakers {
			t.Fatalf("kept %d entries", len(got))
		}
		for _, s := range validSpeakers(r, "nb", got) {
			if s.Producer != "PRb" || s.Participant != "PAb" {
				t.Fatalf("counted %+v of another node, or of a video producer", s)
			}
		}
	})
}

type nopNotes struct{}

func (nopNotes) Notify(string, any) {}
