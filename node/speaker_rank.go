package node

import (
	"math"
	"sort"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// Speaker detection (PROTOCOL.md, "Simulcast, bandwidth and speakers"): every speakerTick the
// origin node of each audio producer smooths what the ingest measured (voice), decides who
// speaks with hysteresis, and ranks them; lists change at most every speakerDebounce.
const (
	// MaxSpeakers is how many speakers activeSpeakers lists at most, per node and per room.
	MaxSpeakers = 3
	// speakerTick is how often levels are read and lists decided.
	speakerTick = 100 * time.Millisecond
	// speakerSmoothing is the weight of one tick in the moving averages: a time constant of
	// about 450 ms, so a syllable or a pause between words changes little.
	speakerSmoothing = 0.2
	// startSpeaking and stopSpeaking: a producer starts speaking once about a third of its
	// recent packets are voice, and stops only when fewer than a tenth are (hysteresis: no
	// flapping at the threshold). Speech started from silence is seen after about 200 ms, its
	// end after about 1 s; talk spurts with pauses (or Chromium's fake microphone, a beep a
	// third of the time) speak steadily.
	startSpeaking = 0.35
	stopSpeaking  = 0.1
	// orderMargin is how much louder (in level, 0..1) a speaker must be than the one before it
	// to move ahead: two voices of about the same level keep their order.
	orderMargin = 0.08
	// speakerDebounce is the least time between two changes of a list.
	speakerDebounce = 500 * time.Millisecond
	// levelResend is the least time between two sendings of a node's list whose speakers did
	// not change, only their levels.
	levelResend = time.Second
)

// voice is the smoothed speech of one audio producer, kept by the speaker loop of its origin.
type voice struct {
	activity float64 // moving average of the fraction of packets that are voice
	level    float64 // moving average of the loudness, 0..1 (silence and missing packets count 0)
	speaking bool
	// vad: the sender sets the RFC 6464 V bit, so it runs voice activity detection: from then
	// on only packets it flagged count as voice (a loud cough or a door is not speech). A
	// sender that never sets it is judged by level alone.
	vad bool
}

// update folds one tick's sample into the averages. A tick without packets (a muted
// microphone, Opus DTX) is silence.
func (v *voice) update(s levelSample) {
	if s.vPackets > 0 {
		v.vad = true
	}
	loud, sum := s.loud, s.sum
	if v.vad {
		loud, sum = s.vLoud, s.vSum
	}
	var act, lvl float64
	if s.packets > 0 {
		act = math.Min(1, float64(loud)/float64(s.packets))
		lvl = math.Min(1, float64(sum)/float64(s.packets*voiceDBov))
	}
	v.activity += speakerSmoothing * (act - v.activity)
	v.level += speakerSmoothing * (lvl - v.level)
	switch {
	case !v.speaking && v.activity >= startSpeaking:
		v.speaking = true
	case v.speaking && v.activity < stopSpeaking:
		v.speaking = false
	}
}

// rankSpeakers orders the speaking producers (any order, each once): those of prev keep
// their order, newcomers follow, loudest first; then a speaker moves ahead of the one before it
// only if louder by orderMargin. At most MaxSpeakers; levels are the current ones.
func rankSpeakers(prev, speaking []proto.Speaker) []proto.Speaker {
	now := make(map[string]proto.Speaker, len(speaking))
	for _, s := range speaking {
		now[s.Producer] = s
	}
	out := make([]proto.Speaker, 0, len(speaking))
	for _, p := range prev {
		if s, ok := now[p.Producer]; ok {
			out = append(out, s)
			delete(now, p.Producer)
		}
	}
	fresh := make([]proto.Speaker, 0, len(now))
	for _, s := range now {
		fresh = append(fresh, s)
	}
	sortSpeakers(fresh)
	out = append(out, fresh...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Level > out[j-1].Level+orderMargin; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if len(out) > MaxSpeakers {
		out = out[:MaxSpeakers]
	}
	return out
}

// sortSpeakers sorts loudest first, then by producer id (every node sorts alike).
func sortSpeakers(s []proto.Speaker) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Level != s[j].Level {
			return s[i].Level > s[j].Level
		}
		return s[i].Producer < s[j].Producer
	})
}

// sameSpeakers tells whether two lists name the same producers in the same order (levels
// aside: a level alone changes no list).
func sameSpeakers(a, b []proto.Speaker) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Producer != b[i].Producer || a[i].Participant != b[i].Participant {
			return false
		}
	}
	return true
}

// debounced is a list that changes at most every speakerDebounce: the first change after a
// quiet spell at once, later ones when the interval has passed (the newest proposal then).
type debounced struct {
	list []proto.Speaker
	at   time.Time // of the last change
}

// propose offers the list as it is now; it reports whether the list changed to it.
func (d *debounced) propose(list []proto.Speaker, now time.Time) bool {
	if sameSpeakers(d.list, list) || now.Sub(d.at) < speakerDebounce {
		return false
	}
	d.list, d.at = list, now
	return true
}

// sentList is a node's own list as it sends it to the other nodes: debounced, and sent again with
// fresh levels when they drifted by half the order margin (the other nodes rank with them: at
// most every levelResend) or after speakerRefresh. A node sends at most 2 messages a second per
// room while its speakers change, 1 while only their levels do.
type sentList struct {
	debounced
	sentAt time.Time
}

// send offers the node's list as it is now; it reports whether to send the list (l.list).
func (l *sentList) send(list []proto.Speaker, now time.Time) bool {
	if l.propose(list, now) {
		l.sentAt = now
		return true
	}
	if len(l.list) == 0 || !sameSpeakers(l.list, list) || now.Sub(l.sentAt) < levelResend {
		return false
	}
	drift := false
	for i := range list {
		drift = drift || math.Abs(list[i].Level-l.list[i].Level) > orderMargin/2
	}
	if !drift && now.Sub(l.sentAt) < speakerRefresh {
		return false
	}
	l.list, l.sentAt = list, now
	return true
}

// roundLevel keeps two decimals of a level in [0, 1] (NaN is 0): the notification need not
// carry noise.
func roundLevel(l float64) float64 {
	if !(l > 0) {
		return 0
	}
	if l > 1 {
		return 1
	}
	return math.Round(l*100) / 100
}
