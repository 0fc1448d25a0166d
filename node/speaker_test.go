package node_test

import (
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/talker"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// TestActiveSpeakers: two pion publishers send Opus with the audio-level extension, one loud
// and one silent; a listener hears activeSpeakers with the loud one, then nothing while nothing
// changes; they swap and the listener hears the other lead; a participant joining meanwhile
// hears the current list at once; when both speak, the louder comes first; when both are
// silent, the empty list. Every notification is a change.
func TestActiveSpeakers(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	heard := talker.Listen(t, n, "r", "listener")
	alice, aliceTalks := talker.Join(t, n, "r", "alice", talker.Loud, nopListener{})
	bob, bobTalks := talker.Join(t, n, "r", "bob", talker.Silence, nopListener{})

	next := heard.Wait(t, "listener", 0, alice.ID())
	if next != 1 {
		t.Fatalf("activeSpeakers before alice alone: %s", heard)
	}
	if s := heard.Data(0).Speakers[0]; s.Level < 0.2 || s.Level > 1 || s.Producer == "" {
		t.Fatalf("alice's entry %+v: a loud voice's level is high, with its producer", s)
	}
	// Nothing changes for a while: nothing is sent.
	time.Sleep(1500 * time.Millisecond)
	if heard.Count() != next {
		t.Fatalf("activeSpeakers while nothing changed: %s", heard)
	}

	aliceTalks.SetLevel(talker.Silence)
	bobTalks.SetLevel(talker.Loud)
	next = heard.Wait(t, "listener", next, bob.ID())
	late := talker.Listen(t, n, "r", "late")
	late.Wait(t, "late joiner", 0, bob.ID())

	// Both speak, alice quietly: the loud one first.
	aliceTalks.SetLevel(talker.Quiet)
	next = heard.Wait(t, "listener", next, bob.ID()+","+alice.ID())

	aliceTalks.SetLevel(talker.Silence)
	bobTalks.SetLevel(talker.Silence)
	heard.Wait(t, "listener", next, "")
	for _, h := range []*talker.Heard{heard, late} {
		if err := h.Check(); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricSum(t, reg, "cascade_active_speakers_notifications_total", nil); got < float64(heard.Count()+late.Count()) {
		t.Fatalf("cascade_active_speakers_notifications_total %v, below the %d notifications heard", got, heard.Count()+late.Count())
	}
	t.Logf("listener heard %s", heard)
}

// TestRemoteSpeakers: another node's list counts only for that node's own audio producers:
// an entry naming a producer of a third node, a video producer, an unknown one, or a duplicate
// is ignored; a list of that node is heard, with levels clamped; its empty list clears it.
func TestRemoteSpeakers(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	heard := &talker.Heard{}
	p, err := n.Join("r", "listener", node.Grant{Subscribe: true}, false, heard)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Room()
	add := func(id, kind, codec, participant, origin string) {
		if _, err := r.AddRemoteProducer(node.ProducerInfo{ID: id, Participant: participant, Kind: kind, Codec: codec, ClockRate: 48000}, origin); err != nil {
			t.Fatal(err)
		}
	}
	add("PRa", "audio", "audio/opus", "PAa", "nb")
	add("PRc", "audio", "audio/opus", "PAc", "nc")
	add("PRv", "video", "video/VP8", "PAa", "nb")
	forged := []proto.Speaker{{Participant: "PAc", Producer: "PRc", Level: 0.9}, {Producer: "PRv", Level: 0.9}, {Producer: "PRx", Level: 0.9}}
	r.SetRemoteSpeakers("nb", forged)
	r.SetRemoteSpeakers(n.ID(), []proto.Speaker{{Producer: "PRa", Level: 1}}) // not from another node
	time.Sleep(500 * time.Millisecond)                                        // several ticks of the speaker loop
	if heard.Count() != 0 {
		t.Fatalf("entries not of the sender's own audio producers were heard: %s", heard)
	}
	r.SetRemoteSpeakers("nb", []proto.Speaker{{Participant: "someone else", Producer: "PRa", Level: 7}, {Producer: "PRa", Level: 0.5}})
	heard.Wait(t, "listener", 0, "PAa")
	if s := heard.Data(0).Speakers; len(s) != 1 || s[0].Level != 1 || s[0].Producer != "PRa" {
		t.Fatalf("heard %+v: one entry, its participant the producer's, its level clamped", s)
	}
	r.SetRemoteSpeakers("nb", []proto.Speaker{})
	heard.Wait(t, "listener", 1, "")
	if err := heard.Check(); err != nil {
		t.Fatal(err)
	}
}
