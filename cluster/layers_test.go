package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestForgedLayerDemand: a layer demand (dynacast) in n2's name, unsigned or vouched for by
// another secret, is refused and counted; so is one an insider signs in its own name but that
// names n2 as the asker (it would narrow n2's pipe), and one too large to be a real demand.
// None reaches the relay. n2's own demand
// does (it names no pipe here, so it is counted as stray and changes nothing; its effect on a
// real pipe: signal's TestDynacastTwoNodes, and relay's TestPipeLayerDemand).
func TestForgedLayerDemand(t *testing.T) {
	net := NewMemNet()
	n1, n2 := pair(t, net)
	req := relay.PipeRequest{Room: "r", Producer: "PR_x", From: "n2", SSRC: 1234, Demand: 0b001}
	subject := subjectRelay("n1", typeLayers)
	for _, f := range []struct {
		reason string
		f      *forger
	}{
		{"unsigned", unsignedForger(net, "n2")},
		{"voucher", newForger(t, net, "n2", secretWrong, WallClock{})},
		{"mismatch", newForger(t, net, "n3", secretOld, WallClock{})},
	} {
		before := n1.c.Rejected()
		f.f.publish(t, subject, "", typeLayers, req)
		refused(t, n1.c, f.reason, before)
	}
	// The largest real demand (a room name of proto.MaxName bytes that JSON escapes) fits.
	longest := req
	longest.Room = strings.Repeat("\x01", proto.MaxName)
	if b, err := n2.c.stamp.Seal(typeLayers, longest); err != nil || len(b) > maxDemand {
		t.Fatalf("the largest real demand is %d bytes (%v), over %d", len(b), err, maxDemand)
	}
	// An insider's demand in its own name, too large to be a real one.
	big := req
	big.From, big.Producer = "n3", strings.Repeat("x", maxDemand)
	before := n1.c.Rejected()
	newForger(t, net, "n3", secretOld, WallClock{}).publish(t, subject, "", typeLayers, big)
	refused(t, n1.c, "malformed", before)
	if n := n1.c.pipes.StrayDemands.Load(); n != 0 {
		t.Fatalf("%d forged demands reached the relay", n)
	}
	// The positive control: the same demand from n2 itself passes every check.
	n2.c.Layers("n1", req)
	harness.Eventually(t, 5*time.Second, func() error {
		if n := n1.c.pipes.StrayDemands.Load(); n != 1 {
			return fmt.Errorf("n2's demand reached n1's relay %d times, want 1", n)
		}
		return nil
	})
}
