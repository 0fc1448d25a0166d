package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// TestMembershipDraining: the relay's view of draining peers follows their heartbeats, and a
// node never lists itself.
func TestMembershipDraining(t *testing.T) {
	m := NewMembership("me", time.Second, 3*time.Second)
	now := time.Unix(1000, 0)
	m.Heartbeat("i", node.Stats{ID: "a"}, now)
	m.Heartbeat("i", node.Stats{ID: "b", Draining: true}, now)
	m.Heartbeat("i", node.Stats{ID: "me", Draining: true}, now)
	if got := m.Draining(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("draining %v, want [b]", got)
	}
	m.Heartbeat("i", node.Stats{ID: "a", Draining: true}, now.Add(time.Second))
	if got := m.Draining(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("draining %v, want [a b]", got)
	}
	m.Remove("b")
	if got := m.Draining(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("draining %v after b left, want [a]", got)
	}
}
