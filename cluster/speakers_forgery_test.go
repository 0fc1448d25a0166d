package cluster

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/internal/talker"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestForgedSpeakers: speakers messages that are unsigned or vouched for by another secret are
// refused; one from a node of the cluster that names another node's producer changes nothing,
// and a malformed or oversized one is refused and counted; the same list from the producer's
// own node (the positive control) is heard.
func TestForgedSpeakers(t *testing.T) {
	net := NewMemNet()
	n1, n2 := pair(t, net)
	heard := talker.Listen(t, n1.n, "r", "alice")
	// carol's audio producer on n3, a node of the cluster that only announces it.
	n3, carol, prod := announceCarol(t, net, n1.n, node.ProducerInfo{Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2})
	subject := subjectRoom(roomToken("r"), "ev")
	list := speakersBody{Speakers: []proto.Speaker{{Participant: carol.ID, Producer: prod.ID, Level: 0.8}}}
	for _, f := range []struct {
		reason string
		as     *forger
	}{
		{"unsigned", unsignedForger(net, "n3")},
		{"voucher", newForger(t, net, "n3", secretWrong, WallClock{})},
	} {
		before := n1.c.Rejected()
		f.as.publish(t, subject, "", evSpeakers, list)
		refused(t, n1.c, f.reason, before)
	}
	// n2 is of the cluster, but carol's producer is not its own.
	n2.c.publish("r", evSpeakers, list)
	// Malformed and oversized lists from carol's own node.
	many := speakersBody{}
	for i := 0; i <= node.MaxSpeakers; i++ {
		many.Speakers = append(many.Speakers, proto.Speaker{Producer: fmt.Sprint("PR", i)})
	}
	for _, body := range []any{json.RawMessage(`{"speakers":"PR_carol"}`), many,
		map[string]string{"speakers": string(make([]byte, maxSpeakersBody))}} {
		before := n1.c.Rejected()
		n3.publish(t, subject, "", evSpeakers, body)
		refused(t, n1.c, "malformed", before)
	}
	time.Sleep(500 * time.Millisecond) // several ticks of n1's speaker loop
	if heard.Count() != 0 {
		t.Fatalf("alice heard a forged list: %s", heard)
	}
	// The positive control: carol's own node.
	n3.publish(t, subject, "", evSpeakers, list)
	harness.Eventually(t, 5*time.Second, func() error {
		if heard.Find(0, carol.ID) < 0 {
			return fmt.Errorf("alice did not hear n3's list: %s", heard)
		}
		return nil
	})
}
