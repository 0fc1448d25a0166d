package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

func rs(id, region string) node.Stats { return node.Stats{ID: id, Region: region} }

// role is the role of node self, whose membership lists peers, after it listened to (heard)
// heartbeats of its region.
func role(self string, draining bool, peers, heard []node.Stats) Role {
	m := NewMembership(self, time.Second, 3*time.Second)
	for _, p := range peers {
		m.Heartbeat("i"+p.ID, p, t0)
	}
	a := NewAggregator(self, "eu", time.Second, 3*time.Second)
	a.Tick(t0, m, draining)
	for _, h := range heard {
		a.Heard("i"+h.ID, h, nil, t0)
	}
	return a.Tick(t0.Add(time.Second/10), m, draining).Role
}

// TestAggregatorRole: the two lowest ids among the region's live, non-draining nodes
// aggregate; other regions' nodes and draining ones do not count; a node that does not know
// its region yet (a cold start) ranks itself among the heartbeats it heard while listening.
func TestAggregatorRole(t *testing.T) {
	all := []node.Stats{rs("a", "us"), rs("b", "eu"), rs("c", "eu"), {ID: "d", Region: "eu", Draining: true}, rs("f", "eu")}
	for _, c := range []struct {
		self     string
		draining bool
		want     Role
	}{
		{"b", false, RolePrimary},
		{"c", false, RoleBackup},
		{"e", false, RoleNone},
		{"a0", false, RolePrimary}, // a newcomer below every id
		{"b", true, RoleNone},      // draining: hands the role over
	} {
		var ps []node.Stats
		for _, p := range all {
			if p.ID != c.self {
				ps = append(ps, p)
			}
		}
		if got := role(c.self, c.draining, ps, nil); got != c.want {
			t.Errorf("role of %s (draining %v) = %v, want %v", c.self, c.draining, got, c.want)
		}
	}
	// b draining: c is the primary, f the backup.
	ps := []node.Stats{{ID: "b", Region: "eu", Draining: true}, rs("c", "eu"), rs("f", "eu")}
	if role("c", false, ps[:1], nil) != RolePrimary || role("f", false, ps[:2], nil) != RoleBackup {
		t.Fatal("a draining node still counts")
	}
	// Cold start: an empty table, but the heartbeats heard rank the node.
	if got := role("f", false, nil, []node.Stats{rs("b", "eu"), rs("c", "eu"), rs("f", "eu")}); got != RoleNone {
		t.Fatalf("cold start, f above b and c heard: %v", got)
	}
	if got := role("c", false, []node.Stats{rs("b", "eu")}, []node.Stats{rs("b", "eu"), rs("g", "eu"), rs("a", "us")}); got != RoleBackup {
		t.Fatalf("cold start, c above b, known and heard: %v", got)
	}
}

// TestAggregatorDigest: the primary listens at once, publishes once it listened for an
// interval and heard itself, one digest per interval: every region node's stats, incarnation
// and heartbeat age, its own entry first; other regions' heartbeats are not in it; a node
// silent for the timeout leaves it; without its own heartbeat coming back it publishes nothing.
func TestAggregatorDigest(t *testing.T) {
	const iv, to = time.Second, 3 * time.Second
	a := NewAggregator("b", "eu", iv, to)
	peers := NewMembership("b", iv, to)
	for _, p := range []node.Stats{rs("c", "eu"), rs("d", "eu"), rs("x", "us")} {
		peers.Heartbeat("i"+p.ID, p, t0)
	}
	p := a.Tick(t0, peers, false)
	if p.Role != RolePrimary || !p.Listen || len(p.Publish) != 0 {
		t.Fatalf("first tick: %+v", p)
	}
	a.Heard("ib", rs("b", "eu"), nil, t0.Add(100*time.Millisecond))
	a.Heard("ic", rs("c", "eu"), nil, t0.Add(300*time.Millisecond))
	a.Heard("id", rs("d", "eu"), nil, t0.Add(700*time.Millisecond))
	a.Heard("ix", rs("x", "us"), nil, t0.Add(700*time.Millisecond))
	if p := a.Tick(t0.Add(900*time.Millisecond), peers, false); len(p.Publish) != 0 {
		t.Fatal("published before it listened for an interval")
	}
	p = a.Tick(t0.Add(iv), peers, false)
	if len(p.Publish) != 1 {
		t.Fatalf("no digest after an interval: %+v", p)
	}
	got := describe(p.Publish[0])
	if want := "eu: b/ib@900 c/ic@700 d/id@300"; got != want {
		t.Fatalf("digest %q, want %q", got, want)
	}
	if p := a.Tick(t0.Add(iv+500*time.Millisecond), peers, false); len(p.Publish) != 0 {
		t.Fatal("two digests within an interval")
	}
	a.Heard("ib", rs("b", "eu"), nil, t0.Add(iv+100*time.Millisecond))
	a.Heard("ic2", rs("c", "eu"), nil, t0.Add(iv+300*time.Millisecond)) // c restarted
	p = a.Tick(t0.Add(2*iv), peers, false)
	if got, want := describe(p.Publish[0]), "eu: b/ib@900 c/ic2@700 d/id@1300"; got != want {
		t.Fatalf("second digest %q, want %q", got, want)
	}
	// d silent past the timeout leaves the digest; b's own heartbeat stops coming back: no digest.
	a.Heard("ib", rs("b", "eu"), nil, t0.Add(3*iv+100*time.Millisecond))
	a.Heard("ic2", rs("c", "eu"), nil, t0.Add(3*iv+300*time.Millisecond))
	p = a.Tick(t0.Add(3*iv+800*time.Millisecond), peers, false)
	if got, want := describe(p.Publish[0]), "eu: b/ib@700 c/ic2@500"; got != want {
		t.Fatalf("third digest %q, want %q", got, want)
	}
	if p := a.Tick(t0.Add(6*iv), peers, false); p.Listen != true || len(p.Publish) != 0 {
		t.Fatalf("published while its own heartbeat does not come back: %+v", p)
	}
	// A lower id joined: b is the backup, still listening; draining: no role, not listening.
	peers.Heartbeat("ia", rs("a", "eu"), t0.Add(7*iv))
	if p := a.Tick(t0.Add(7*iv), peers, false); p.Role != RoleBackup || !p.Listen {
		t.Fatalf("after a joined: %+v", p)
	}
	if p := a.Tick(t0.Add(8*iv), peers, true); p.Role != RoleNone || p.Listen {
		t.Fatalf("draining: %+v", p)
	}
}

// describe is a digest as "region: id/inc@ageMs ...".
func describe(d Digest) string {
	var b strings.Builder
	b.WriteString(d.Region + ":")
	for _, e := range d.Entries {
		fmt.Fprintf(&b, " %s/%s@%d", e.Stats.ID, e.Inc, e.AgeMs)
	}
	return b.String()
}

// TestAggregatorBackup: the backup listens from the start but publishes only once no other
// node's digest of the region came for 1.25 intervals, every interval then, and stops as soon
// as the primary's digests come again.
func TestAggregatorBackup(t *testing.T) {
	const iv = time.Second
	a := NewAggregator("c", "eu", iv, 3*iv)
	peers := NewMembership("c", iv, 3*iv)
	peers.Heartbeat("ib", rs("b", "eu"), t0)
	peers.Heartbeat("id", rs("d", "eu"), t0)
	published := func(at time.Duration) bool {
		now := t0.Add(at)
		a.Heard("ic", rs("c", "eu"), nil, now.Add(-10*time.Millisecond))
		p := a.Tick(now, peers, false)
		if p.Role != RoleBackup || !p.Listen {
			t.Fatalf("at %v: %+v", at, p)
		}
		return len(p.Publish) > 0
	}
	step := iv / 10
	var first time.Duration
	for at := time.Duration(0); at <= 10*iv; at += step {
		if at%iv == 0 { // b and d keep beating (what the test cuts is b's digests)
			peers.Heartbeat("ib", rs("b", "eu"), t0.Add(at))
			peers.Heartbeat("id", rs("d", "eu"), t0.Add(at))
		}
		if at <= 4*iv { // the primary's digests come every interval until 4 s
			if at%iv == 0 {
				a.Digested("b", t0.Add(at))
			}
			if published(at) {
				t.Fatalf("the backup published at %v while the primary's digests come", at)
			}
			continue
		}
		if published(at) && first == 0 {
			first = at
		}
		if at == 8*iv {
			break
		}
	}
	if first != 5*iv+3*step { // the first check 1.25 intervals after the last digest
		t.Fatalf("the backup took over at %v, want 5.3s", first)
	}
	for at := 8*iv + step; at < 10*iv; at += step {
		if at%iv == 2*step { // the primary is back
			a.Digested("b", t0.Add(at))
		}
		if at > 8*iv+2*step && published(at) {
			t.Fatalf("the backup published at %v after the primary came back", at)
		}
	}
}

// TestApplyDigest: entries become heartbeats heard at now - age: a peer joins, the same
// heartbeat reported again changes nothing, a new incarnation restarts it, beats missed are
// Returned; entries of another region and a digest without its sender's entry are ignored;
// the own fresh entry proves the NATS path, and a peer whose entries stop is dropped after the
// timeout while it does, and kept while the own entry stops too.
func TestApplyDigest(t *testing.T) {
	const iv, to = time.Second, 3 * time.Second
	m := NewMembership("a", iv, to)
	entry := func(id, region, inc string, ageMs int64) DigestEntry {
		return DigestEntry{Inc: inc, AgeMs: ageMs, Stats: rs(id, region)}
	}
	apply := func(now time.Time, from string, es ...DigestEntry) Applied {
		t.Helper()
		got, err := ApplyDigest(m, from, Digest{Region: "eu", Entries: es}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := apply(t0, "b", entry("b", "eu", "ib", 100), entry("a", "eu", "ia", 300), entry("c", "eu", "ic", 500), entry("x", "us", "ix", 0))
	if !got.Self || len(got.Changes) != 2 || got.Changes[0].Change != Joined || got.Changes[1].ID != "c" {
		t.Fatalf("first digest: %+v", got)
	}
	if ids := ids(m.Peers()); ids != "b,c" {
		t.Fatalf("peers %q after an entry of another region", ids)
	}
	if seen, _ := m.lastSeen("c"); !seen.Equal(t0.Add(-500 * time.Millisecond)) {
		t.Fatalf("c seen at %v, want now - age", seen)
	}
	if !m.Reachable(t0) {
		t.Fatal("own fresh entry did not make the NATS path work")
	}
	// The same heartbeats reported again (another aggregator, or the next digest before c beat).
	if got := apply(t0.Add(iv), "c", entry("c", "eu", "ic", 1500), entry("b", "eu", "ib", 1100)); len(got.Changes) != 0 || got.Self {
		t.Fatalf("a repeated report: %+v", got)
	}
	if seen, _ := m.lastSeen("c"); !seen.Equal(t0.Add(-500 * time.Millisecond)) {
		t.Fatalf("a repeated report moved c's heartbeat to %v", seen)
	}
	// c restarted; b missed beats.
	got = apply(t0.Add(3*iv), "b", entry("b", "eu", "ib", 0), entry("c", "eu", "ic2", 200))
	if len(got.Changes) != 2 || got.Changes[0].Change != Returned || got.Changes[1].Change != Restarted {
		t.Fatalf("restart and return: %+v", got)
	}
	if _, err := ApplyDigest(m, "x", Digest{Region: "eu", Entries: []DigestEntry{entry("b", "eu", "ib", 0), entry("x", "us", "ix", 0)}}, t0, nil); err != ErrDigestSender {
		t.Fatalf("a digest of eu by a node of us: %v", err)
	}
	// b's own entries keep coming, c's stop: c is dropped after the timeout, b is not.
	var gone []string
	for s := 4; s <= 8; s++ {
		now := t0.Add(time.Duration(s) * iv)
		apply(now, "b", entry("b", "eu", "ib", 100), entry("a", "eu", "ia", 200))
		gone = append(gone, m.Tick(now)...)
	}
	if strings.Join(gone, ",") != "c" {
		t.Fatalf("dropped %v, want c", gone)
	}
	// Then the own entry stops too (this node's path, or its aggregators, are down): nobody is dropped.
	m2 := NewMembership("a", iv, to)
	_, _ = ApplyDigest(m2, "b", Digest{Region: "eu", Entries: []DigestEntry{entry("b", "eu", "ib", 0), entry("a", "eu", "ia", 0)}}, t0, nil)
	for s := 1; s <= 10; s++ {
		if g := m2.Tick(t0.Add(time.Duration(s) * iv)); len(g) != 0 {
			t.Fatalf("dropped %v while its own entries did not come", g)
		}
	}
}

func ids(ps []node.Stats) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return strings.Join(out, ",")
}

// TestDigestSize: a realistic entry (a node of two workers, with its cert) is about a kilobyte;
// a region too large for one message is split into parts under the budget, each starting with
// the sender's entry, together holding every entry once.
func TestDigestSize(t *testing.T) {
	keys := mustKeys(t, "eu-west-017", secretOld)
	cert := keys.Cert()
	st := node.Stats{ID: "eu-west-017", Region: "eu-west", HTTPURL: "https://eu-west-017.cascade.example.com",
		RelayAddr: "10.1.0.17:7882", Rooms: 3, Participants: 2000, Consumers: 4000, Producers: 2, UptimeSec: 86400}
	for i := range 2 {
		st.Workers = append(st.Workers, node.WorkerStats{Index: i, UDP: fmt.Sprintf("10.1.0.17:%d", 50000+i), Routers: 2,
			Consumers: 2000, Packets: 1 << 40, Bytes: 1 << 50, UDP4: 1000})
	}
	e := DigestEntry{Inc: "0123456789abcdef", AgeMs: 734, Stats: st, Cert: &cert}
	b, _ := json.Marshal(e)
	t.Logf("digest entry: %d bytes", len(b))
	if len(b) > 1500 {
		t.Fatalf("a digest entry is %d bytes", len(b))
	}
	others := make([]DigestEntry, 400)
	for i := range others {
		others[i] = e
		others[i].Stats.ID = fmt.Sprintf("eu-west-%03d", i)
	}
	const budget = 64 << 10
	parts := SplitDigest("eu-west", e, others, budget)
	seen := map[string]int{}
	for _, p := range parts {
		raw, _ := json.Marshal(p)
		if len(raw) > budget {
			t.Fatalf("a part of %d bytes, budget %d", len(raw), budget)
		}
		if p.Entries[0].Stats.ID != "eu-west-017" {
			t.Fatal("a part without the sender's entry first")
		}
		for _, e := range p.Entries[1:] {
			seen[e.Stats.ID]++
		}
	}
	if len(seen) != 400 || len(parts) < 7 {
		t.Fatalf("%d parts hold %d entries", len(parts), len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s in %d parts", id, n)
		}
	}
	if one := SplitDigest("eu-west", e, others[:150], DigestBudget); len(one) != 1 {
		t.Fatalf("a region of 150 nodes takes %d parts under DigestBudget", len(one))
	}
}

// TestAggregatorBothDie: both aggregators of a region die at once, so no digest comes to drop
// them from the table. Once their last heartbeats are older than the timeout they no longer
// rank: the next node listens, ranks itself among the heartbeats it hears (the lower d it hears
// makes e the backup), and publishes an interval later.
func TestAggregatorBothDie(t *testing.T) {
	const iv, to = time.Second, 3 * time.Second
	m, me := NewMembership("c", iv, to), NewMembership("e", iv, to)
	for _, id := range []string{"a", "b", "c", "e"} {
		m.Heartbeat("i"+id, rs(id, "eu"), t0)
		me.Heartbeat("i"+id, rs(id, "eu"), t0)
	}
	c := NewAggregator("c", "eu", iv, to)
	e := NewAggregator("e", "eu", iv, to)
	var first time.Duration
	for at := time.Duration(0); at <= 6*iv && first == 0; at += iv / 10 {
		now := t0.Add(at)
		if at%iv == iv/2 { // c and e beat; a and b are dead
			for _, x := range []*Aggregator{c, e} {
				x.Heard("ic", rs("c", "eu"), nil, now)
				x.Heard("ie", rs("e", "eu"), nil, now)
			}
		}
		p := c.Tick(now, m, false)
		if at <= to && p.Role != RoleNone {
			t.Fatalf("at %v, with a and b within the timeout, c is %v", at, p.Role)
		}
		if len(p.Publish) > 0 {
			first = at
		}
		if q := e.Tick(now, me, false); len(q.Publish) > 0 && q.Role == RolePrimary && at > to+iv {
			t.Fatalf("at %v, e still counts itself the primary after it heard c", at)
		}
	}
	if first < to || first > to+2*iv {
		t.Fatalf("c published first at %v, want within an interval or two of the timeout", first)
	}
	if e.Role() != RoleBackup {
		t.Fatalf("e is %v, want the backup", e.Role())
	}
}
