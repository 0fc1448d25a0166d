package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/prometheus/client_golang/prometheus"
)

// entryOf is a digest entry of the forger's node, fresh, with its cert.
func (f *forger) entryOf(region string) DigestEntry {
	cert := f.keys.Cert()
	return DigestEntry{Inc: cert.Inc, Stats: node.Stats{ID: cert.Node, Region: region, HTTPURL: "http://" + cert.Node + ".example"}, Cert: &cert}
}

// TestForgedDigest: a digest unsigned, vouched for by another secret, or without its sender's
// own entry is refused whole; in an insider's digest, an entry of another region, or one whose
// cert is vouched for by another secret, or names another node, is ignored; n2 never counts
// the nodes those name as members. The insider's own entry (the positive control) makes it a
// member, as its heartbeat through an aggregator would.
func TestForgedDigest(t *testing.T) {
	net := NewMemNet()
	_, n2 := pair(t, net)
	subject := DigestSubject("")
	insider := newForger(t, net, "evil", secretOld, WallClock{})
	outsider := newForger(t, net, "ghost", secretWrong, WallClock{})
	other := newForger(t, net, "far", secretOld, WallClock{})
	own := insider.entryOf("")
	for _, c := range []struct {
		reason string
		send   func()
	}{
		{"unsigned", func() {
			unsignedForger(net, "evil").publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{own}})
		}},
		{"voucher", func() {
			outsider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{outsider.entryOf("")}})
		}},
		{"mismatch", func() { // speaks only for another node
			insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{other.entryOf("")}})
		}},
		{"mismatch", func() { // its own entry in another region than the digest's
			insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{insider.entryOf("eu"), other.entryOf("")}})
		}},
		{"voucher", func() { // an entry whose cert another secret vouches for
			insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{own, outsider.entryOf("")}})
		}},
		{"cert_mismatch", func() { // far's cert under the name ghost
			e := other.entryOf("")
			e.Stats.ID = "ghost"
			insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{own, e}})
		}},
	} {
		before := n2.c.Rejected()
		c.send()
		refused(t, n2.c, c.reason, before)
	}
	// An entry of another region in the insider's digest of region "": ignored, not counted.
	insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{own, other.entryOf("eu")}})
	time.Sleep(100 * time.Millisecond)
	if got := peers(n2.c); strings.Contains(got, "ghost") || strings.Contains(got, "far") {
		t.Fatalf("n2's peers after forged digests: %q", got)
	}
	// The positive control: the insider's own entry makes it a member (sent until seen: it
	// leaves again after the timeout, as nobody reports it any more).
	harness.Eventually(t, 5*time.Second, func() error {
		insider.publish(t, subject, "", typeDigest, Digest{Entries: []DigestEntry{own}})
		if got := peers(n2.c); got != "evil,n1" {
			return fmt.Errorf("n2's peers %q, want evil,n1", got)
		}
		return nil
	})
	if cert, ok := n2.c.verify.Peer("evil"); !ok || cert.Inc != own.Inc {
		t.Fatalf("n2 holds evil's cert %+v: pipe requests to it could not be sealed", cert)
	}
}

// TestReplayedDigest: a digest of n1 captured and sent again after n1 left does not make it a
// member again (a duplicate), nor does it refresh the nodes it listed.
func TestReplayedDigest(t *testing.T) {
	net := NewMemNet()
	var rec capture
	rec.install(net, DigestSubject(""), "n2")
	n1, n2 := pair(t, net)
	digest := rec.last(t, "n1", typeDigest)
	n1.c.Close()
	n1.bus.SetConnected(false)
	waitPeers(t, n2.c, "")
	before := n2.c.Rejected()
	_ = net.Conn("attacker").Publish(digest)
	refused(t, n2.c, "duplicate", before)
	time.Sleep(100 * time.Millisecond)
	if got := peers(n2.c); got != "" {
		t.Fatalf("a replayed digest brought n1 back: %q", got)
	}
	if role := n2.c.Aggregation(); role != RolePrimary {
		t.Fatalf("n2, alone, is %v", role)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(n2.c, NewPlacer(n2.c)))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() == "cascade_cluster_aggregator" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if got["primary"] != 1 || got["backup"] != 0 || len(got) != 2 {
		t.Fatalf("cascade_cluster_aggregator on n2: %v", got)
	}
}
