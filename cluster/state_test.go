package cluster

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// These tests drive the state machines directly: no NATS, no network, no sleeps; time is a
// fake clock the test advances.

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func env(t *testing.T, s *Stamper, typ string, body any) Envelope {
	t.Helper()
	b, err := s.Seal(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEnvelopeSealOpen(t *testing.T) {
	clock := &fakeClock{t: time.UnixMilli(1_000_000)}
	s := NewStamper("n1", "inc1", clock)
	e1 := env(t, s, "heartbeat", node.Stats{ID: "n1"})
	clock.advance(time.Second)
	e2 := env(t, s, "piped", pipedBody{Producer: "p"})
	if e1.Node != "n1" || e1.Inc != "inc1" || e1.Seq != 1 || e2.Seq != 2 || e1.Time != 1_000_000 || e2.Time != 1_001_000 {
		t.Fatalf("envelopes %+v %+v", e1, e2)
	}
	var b pipedBody
	if json.Unmarshal(e2.Body, &b) != nil || b.Producer != "p" {
		t.Fatalf("body %s", e2.Body)
	}
	for _, bad := range []string{`{}`, `not json`, `{"node":"n","inc":"i","seq":0,"type":"x"}`, `{"node":"n","inc":"i","seq":1}`} {
		if _, err := Open([]byte(bad)); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestDedupIdempotent: repeated and late messages (nats.go replaying its reconnect buffer)
// change nothing; reordered ones within the window still count once.
func TestDedupIdempotent(t *testing.T) {
	s := NewStamper("n1", "a", &fakeClock{})
	var es []Envelope
	for i := 0; i < 5; i++ {
		es = append(es, env(t, s, "x", i))
	}
	d := NewDedup()
	for _, i := range []int{0, 2, 1, 4, 3} { // out of order: all new
		if _, err := d.Accept(es[i]); err != nil {
			t.Fatalf("seq %d: %v", es[i].Seq, err)
		}
	}
	for _, e := range es { // the replay: all duplicates
		if _, err := d.Accept(e); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("replayed seq %d: %v", e.Seq, err)
		}
	}
	for i := 0; i < window+10; i++ {
		if _, err := d.Accept(env(t, s, "x", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Accept(es[0]); !errors.Is(err, ErrStale) {
		t.Fatalf("a message older than the window: %v", err)
	}
}

// TestDedupIncarnations: a node restarted under the same id is a new incarnation: its first
// message says so, and the old incarnation's late messages are stale from then on.
func TestDedupIncarnations(t *testing.T) {
	old, fresh := NewStamper("n1", "old", &fakeClock{}), NewStamper("n1", "new", &fakeClock{})
	d := NewDedup()
	late := env(t, old, "x", 0)
	if r, err := d.Accept(env(t, old, "x", 1)); r || err != nil {
		t.Fatal(r, err)
	}
	if r, err := d.Accept(env(t, fresh, "x", 0)); !r || err != nil { // seq 1 again, new incarnation
		t.Fatalf("restart not seen: %v %v", r, err)
	}
	if r, err := d.Accept(late); r || !errors.Is(err, ErrStale) {
		t.Fatalf("the old incarnation's late message: %v %v", r, err)
	}
}

// TestMembershipTick: a peer joins with its first heartbeat, stays while it beats, leaves after
// the timeout of silence, and a new incarnation is reported as a restart.
func TestMembershipTick(t *testing.T) {
	clock := &fakeClock{t: time.Unix(100, 0)}
	m := NewMembership("me", time.Second, 3*time.Second)
	if ch := m.Heartbeat("i1", node.Stats{ID: "me"}, clock.Now()); ch != Unchanged || m.Len() != 0 {
		t.Fatal("own heartbeat counted")
	}
	if ch := m.Heartbeat("i1", node.Stats{ID: "a", Region: "eu", RelayAddr: "127.0.0.1:1"}, clock.Now()); ch != Joined {
		t.Fatalf("first heartbeat: %v", ch)
	}
	m.Heartbeat("j1", node.Stats{ID: "b", Region: "us"}, clock.Now())
	for i := 0; i < 5; i++ {
		clock.advance(time.Second)
		m.Self(clock.Now())
		if ch := m.Heartbeat("i1", node.Stats{ID: "a", Region: "eu"}, clock.Now()); ch != Unchanged {
			t.Fatalf("beat %d: %v", i, ch)
		}
		var want []string
		if i == 3 { // b silent for more than 3 s
			want = []string{"b"}
		}
		if gone := m.Tick(clock.Now()); !slices.Equal(gone, want) {
			t.Fatalf("tick %d: gone %v, want %v", i, gone, want)
		}
	}
	if p, ok := m.Peer("a"); !ok || p.Region != "eu" {
		t.Fatalf("peer a: %+v %v", p, ok)
	}
	if got := m.Regions(); len(got) != 1 || got["a"] != "eu" {
		t.Fatalf("regions %v", got)
	}
	if ch := m.Heartbeat("i2", node.Stats{ID: "a"}, clock.Now()); ch != Restarted || m.Incarnation("a") != "i2" {
		t.Fatalf("restart: %v", ch)
	}
	// This node hears nobody, itself included (its NATS is away): nobody expires.
	for range 60 {
		clock.advance(time.Second)
		if gone := m.Tick(clock.Now()); len(gone) != 0 {
			t.Fatalf("expired %v while this node heard not even itself", gone)
		}
	}
	if !m.Self(clock.Now()) { // its own heartbeat is back, a's is not: a is gone
		t.Fatal("own heartbeat back after a minute: not reported as returned")
	}
	if gone := m.Tick(clock.Now()); !slices.Equal(gone, []string{"a"}) {
		t.Fatalf("gone %v, want [a]", gone)
	}
}

// TestMembershipRelayKeepsPeer: a peer whose heartbeats stop but whose relay link still
// answers stays (NATS is what failed: a route, or a one-sided partition); once the link falls
// silent too it leaves, even when this node does not hear itself (both paths are down).
func TestMembershipRelayKeepsPeer(t *testing.T) {
	clock := &fakeClock{t: time.Unix(100, 0)}
	m := NewMembership("me", time.Second, 3*time.Second)
	m.Heartbeat("i1", node.Stats{ID: "a"}, clock.Now())
	m.Heartbeat("i1", node.Stats{ID: "b"}, clock.Now())
	m.Relayed("a", clock.Now())
	m.Relayed("x", clock.Now()) // not a member: ignored
	for i := range 10 {
		clock.advance(time.Second)
		m.Self(clock.Now())
		m.Relayed("a", clock.Now())
		var want []string
		if i == 3 {
			want = []string{"b"} // no link: its heartbeats decide
		}
		if gone := m.Tick(clock.Now()); !slices.Equal(gone, want) {
			t.Fatalf("tick %d: gone %v, want %v", i, gone, want)
		}
	}
	if m.Len() != 1 {
		t.Fatalf("peers %v, want a", m.Peers())
	}
	if ch := m.Heartbeat("i1", node.Stats{ID: "a"}, clock.Now()); ch != Returned {
		t.Fatalf("a's heartbeat after 10 s of silence: %v, want Returned", ch)
	}
	// Now a's link and heartbeats stop, and this node does not hear itself either.
	var gone []string
	for i := 0; len(gone) == 0 && i < 10; i++ {
		clock.advance(time.Second)
		gone = m.Tick(clock.Now())
		if len(gone) > 0 && i != 3 {
			t.Fatalf("a gone after %d s silent on both paths, want 4", i+1)
		}
	}
	if !slices.Equal(gone, []string{"a"}) {
		t.Fatalf("gone %v, want [a]", gone)
	}
}

// TestMembershipCarried: media of a peer's producers arriving through another node proves it
// alive while its heartbeats are lost (a partition of NATS only); once the media stops, the
// heartbeats decide again, as for a peer without a link.
func TestMembershipCarried(t *testing.T) {
	clock := &fakeClock{t: time.Unix(100, 0)}
	m := NewMembership("me", time.Second, 3*time.Second)
	m.Heartbeat("i1", node.Stats{ID: "o"}, clock.Now())
	for range 10 {
		clock.advance(time.Second)
		m.Self(clock.Now())
		m.Carried("o", clock.Now())
		if gone := m.Tick(clock.Now()); len(gone) != 0 {
			t.Fatalf("gone %v while its media flows", gone)
		}
	}
	for i := range 5 { // the media stops: the heartbeats decide again (this node hears itself)
		clock.advance(time.Second)
		gone := m.Tick(clock.Now())
		if want := i == 3; want != (len(gone) == 1) {
			t.Fatalf("%d s after the media stopped: gone %v", i+1, gone)
		}
	}
}

// TestMembershipPause: a node that did not run for a while (its process stopped, or starved)
// does not count that time as its peers' silence: they get a timeout to be heard again.
func TestMembershipPause(t *testing.T) {
	clock := &fakeClock{t: time.Unix(100, 0)}
	m := NewMembership("me", time.Second, 3*time.Second)
	m.Heartbeat("i1", node.Stats{ID: "a"}, clock.Now())
	m.Relayed("a", clock.Now())
	m.Self(clock.Now())
	m.Tick(clock.Now())
	clock.advance(20 * time.Second) // paused
	m.Self(clock.Now())             // its own heartbeat, still queued, is read first
	if gone := m.Tick(clock.Now()); len(gone) != 0 {
		t.Fatalf("after a pause: gone %v", gone)
	}
	for i := range 4 {
		clock.advance(time.Second)
		m.Self(clock.Now())
		gone := m.Tick(clock.Now())
		if want := i == 2; want != (len(gone) == 1) {
			t.Fatalf("%d s after the pause: gone %v", i+1, gone)
		}
	}
}

func stats(id, region string, consumers int64) node.Stats {
	return node.Stats{ID: id, Region: region, Consumers: consumers, HTTPURL: "http://" + id}
}

// TestPlace pins the placement policy, a pure function of the loads, the room's nodes and the
// client's region.
func TestPlace(t *testing.T) {
	self := stats("me", "eu", 100)
	for _, c := range []struct {
		name string
		in   PlacementInput
		want Decision
	}{
		{"alone", PlacementInput{Self: self}, Decision{}},
		{"region hint", PlacementInput{Self: self, Peers: []node.Stats{stats("us1", "us", 500)}, Region: "us"},
			Decision{Redirect: true, Node: "us1", HTTPURL: "http://us1"}},
		{"unknown region: any", PlacementInput{Self: self, Peers: []node.Stats{stats("us1", "us", 0)}, Region: "ap"},
			Decision{Redirect: true, Node: "us1", HTTPURL: "http://us1"}},
		{"hysteresis keeps a near tie here", PlacementInput{Self: self, Peers: []node.Stats{stats("b", "eu", 85)}}, Decision{}},
		{"clearly less loaded", PlacementInput{Self: self, Peers: []node.Stats{stats("b", "eu", 10)}},
			Decision{Redirect: true, Node: "b", HTTPURL: "http://b"}},
		{"carrying the room first", PlacementInput{Self: stats("me", "eu", 0), Peers: []node.Stats{stats("b", "eu", 900)}, Carrying: map[string]bool{"b": true}},
			Decision{Redirect: true, Node: "b", HTTPURL: "http://b"}},
		{"draining self", PlacementInput{Self: node.Stats{ID: "me", Draining: true}, Peers: []node.Stats{stats("b", "eu", 900)}},
			Decision{Redirect: true, Node: "b", HTTPURL: "http://b"}},
		{"never a draining peer", PlacementInput{Self: self, Peers: []node.Stats{{ID: "b", Draining: true, HTTPURL: "http://b"}}}, Decision{}},
		{"never a peer without URL", PlacementInput{Self: self, Peers: []node.Stats{{ID: "b"}}}, Decision{}},
	} {
		if got := Place(c.in); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
