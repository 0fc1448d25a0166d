package cluster_test

import (
	"testing"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/talker"
	"github.com/cascade-sfu/cascade/node"
)

// TestSpeakersAcrossNodes: two nodes on embedded NATS. A speaker on n1 is heard as the room's
// active speaker by a listener on n2 (and one on n1); when a louder speaker on n2 joins in,
// both listeners hear the same list, the louder first; when both fall silent, both hear the
// empty list. Every notification is a change.
func TestSpeakersAcrossNodes(t *testing.T) {
	n1, ns1, c1 := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets})
	n2, _, c2 := member(t, node.Options{ID: "n2"}, cluster.NATSOptions{URL: ns1.ClientURL(), Secrets: natsSecrets})
	met(t, c1, c2)
	on1, on2 := talker.Listen(t, n1, "r", "listener1"), talker.Listen(t, n2, "r", "listener2")
	alice, aliceTalks := talker.Join(t, n1, "r", "alice", talker.Loud, quiet{})
	next1 := on1.Wait(t, "listener on n1", 0, alice.ID())
	next2 := on2.Wait(t, "listener on n2", 0, alice.ID())

	bob, bobTalks := talker.Join(t, n2, "r", "bob", talker.Loud, quiet{})
	aliceTalks.SetLevel(talker.Quiet)
	both := bob.ID() + "," + alice.ID()
	next1 = on1.Wait(t, "listener on n1", next1, both)
	next2 = on2.Wait(t, "listener on n2", next2, both)

	aliceTalks.SetLevel(talker.Silence)
	bobTalks.SetLevel(talker.Silence)
	on1.Wait(t, "listener on n1", next1, "")
	on2.Wait(t, "listener on n2", next2, "")
	for _, h := range []*talker.Heard{on1, on2} {
		if err := h.Check(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("n1 heard %s, n2 heard %s", on1, on2)
}
