package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// The tests of this file and replay_test.go start real nodes (node.Node, relay sockets on
// loopback) joined by the in-process bus, and an attacker on the same bus: anyone who can
// publish and subscribe on NATS. Each forgery is also sent signed by a node of the cluster (a
// positive control: the same message, authentic, has its effect), so that a test whose
// forgery were refused for another reason, or had no effect anyway, fails.

// notes records a participant's notifications.
type notes struct {
	mu  sync.Mutex
	got []string
}

func (n *notes) Notify(method string, data any) {
	b, _ := json.Marshal(data)
	n.mu.Lock()
	n.got = append(n.got, method+" "+string(b))
	n.mu.Unlock()
}

func (n *notes) count(method, contains string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.got {
		if strings.HasPrefix(s, method+" ") && strings.Contains(s, contains) {
			c++
		}
	}
	return c
}

type testNode struct {
	n   *node.Node
	bus *MemBus
	c   *Cluster
}

// startNode starts node id on net, holding secrets, at a 50 ms heartbeat.
func startNode(t *testing.T, net *MemNet, id string, secrets Secrets) *testNode {
	t.Helper()
	n, err := node.New(node.Options{ID: id, LoopbackOnly: true, Workers: 1, HTTPURL: "http://" + id + ".example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	pipes, err := relay.Open(relay.Options{Self: id, Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	bus := net.Conn(id)
	c, err := New(n, pipes, bus, Options{Heartbeat: 50 * time.Millisecond, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &testNode{n: n, bus: bus, c: c}
}

// pair starts n1 and n2 on a running net and waits until they see each other.
func pair(t *testing.T, net *MemNet) (*testNode, *testNode) {
	t.Helper()
	net.Start()
	t.Cleanup(net.Close) // after the nodes
	a, b := startNode(t, net, "n1", secretOld), startNode(t, net, "n2", secretOld)
	waitPeers(t, a.c, "n2")
	waitPeers(t, b.c, "n1")
	return a, b
}

// peers lists c's peers' ids, sorted as Membership lists them.
func peers(c *Cluster) string {
	var ids []string
	for _, p := range c.Peers() {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ",")
}

func waitPeers(t *testing.T, c *Cluster, want string) {
	t.Helper()
	harness.Eventually(t, 5*time.Second, func() error {
		if got := peers(c); got != want {
			return fmt.Errorf("%s has peers %q, want %q", c.me, got, want)
		}
		return nil
	})
}

// refused waits until c has refused one more message for reason than before.
func refused(t *testing.T, c *Cluster, reason string, before map[string]uint64) {
	t.Helper()
	harness.Eventually(t, 5*time.Second, func() error {
		if got := c.Rejected(); got[reason] <= before[reason] {
			return fmt.Errorf("%s refused %v, want one more %s than %v", c.me, got, reason, before)
		}
		return nil
	})
}

// forger publishes on the bus as node id: signed with keys vouched for by secrets (the wrong
// ones for a forgery, the cluster's for an insider), or unsigned.
type forger struct {
	bus   *MemBus
	keys  *NodeKeys
	stamp *Stamper
}

func newForger(t *testing.T, net *MemNet, id string, secrets Secrets, clock Clock) *forger {
	k := mustKeys(t, id, secrets)
	return &forger{bus: net.Conn("attacker-" + id), keys: k, stamp: NewSigningStamper(k, clock)}
}

func unsignedForger(net *MemNet, id string) *forger {
	return &forger{bus: net.Conn("attacker-" + id), stamp: NewStamper(id, NewIncarnation(), WallClock{})}
}

func (f *forger) publish(t *testing.T, subject, reply, typ string, body any) {
	t.Helper()
	b, err := f.stamp.Seal(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.bus.Publish(Msg{Subject: subject, Reply: reply, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// rejectedMetric is cascade_cluster_rejected_total{reason} as c's collector exports it.
func rejectedMetric(t *testing.T, c *Cluster, reason string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(c, NewPlacer(c)))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "cascade_cluster_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no cascade_cluster_rejected_total{reason=%q}", reason)
	return 0
}

func closed(p *node.Participant) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

func roomOf(n *node.Node, name string) *node.Room {
	for _, r := range n.Rooms() {
		if r.Name() == name {
			return r
		}
	}
	return nil
}

func hasParticipant(n *node.Node, room, id string) bool {
	r := roomOf(n, room)
	if r == nil {
		return false
	}
	for _, p := range r.Participants() {
		if p.ID == id {
			return true
		}
	}
	return false
}

// announceCarol starts n3, a node of the cluster (its keys vouched for) that only announces:
// carol joined room r and publishes prod (its id, participant and mid filled in here), with no
// media. It returns once on lists the producer.
func announceCarol(t *testing.T, net *MemNet, on *node.Node, prod node.ProducerInfo) (*forger, node.ParticipantInfo, node.ProducerInfo) {
	t.Helper()
	n3 := newForger(t, net, "n3", secretOld, WallClock{})
	carol := node.ParticipantInfo{ID: "PA_carol", Identity: "carol", JoinedAt: time.Now().UnixMilli()}
	prod.ID, prod.Participant, prod.Mid = "PR_carol", carol.ID, "0"
	subject := subjectRoom(roomToken("r"), "ev")
	n3.publish(t, subject, "", evParticipantJoined, joinedBody{Participant: carol})
	n3.publish(t, subject, "", evProducerAdded, prod)
	harness.Eventually(t, 5*time.Second, func() error {
		if !hasProducer(on, "r", prod.ID) {
			return fmt.Errorf("%s does not list carol's producer", on.ID())
		}
		return nil
	})
	return n3, carol, prod
}

func hasProducer(n *node.Node, room, id string) bool {
	r := roomOf(n, room)
	if r == nil {
		return false
	}
	for _, p := range r.Producers() {
		if p.ID == id {
			return true
		}
	}
	return false
}

// TestForgedRoomEvents: on the room's subject an attacker forges, in n2's name, a
// participantJoined of alice's identity with a later joinedAt (which would close alice's
// session on n1), a chat message and a data message, and in n3's name a producerRemoved of
// n3's producer:
// unsigned, and signed with keys vouched for by another secret. n1 refuses each (counted by
// reason), alice stays, hears no chat, the producer stays, and n2 stays a member (a forged
// incarnation of n2 does not retire the real one). The same messages from n2 and n3 act.
func TestForgedRoomEvents(t *testing.T) {
	net := NewMemNet()
	n1, n2 := pair(t, net)
	aliceNotes := &notes{}
	alice, err := n1.n.Join("r", "alice", node.Grant{Subscribe: true}, false, aliceNotes)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n2.n.Join("r", "bob", node.Grant{Publish: true}, false, &notes{})
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 5*time.Second, func() error {
		if !hasParticipant(n1.n, "r", bob.ID()) {
			return fmt.Errorf("n1 does not see bob")
		}
		return nil
	})
	// A producer of carol's on n3, a node of the cluster (its keys are vouched for) that only
	// announces it: n1 lists it with no media (n2's real state would lack it at a re-sync).
	n3, carol, prod := announceCarol(t, net, n1.n, node.ProducerInfo{Kind: "video", Codec: "video/VP8", ClockRate: 90000})
	subject := subjectRoom(roomToken("r"), "ev")

	kick := joinedBody{Participant: node.ParticipantInfo{ID: "PA_forged", Identity: "alice", JoinedAt: time.Now().Add(time.Hour).UnixMilli()}, Replaces: []string{alice.ID()}}
	chat := messageBody{From: "PA_forged", Identity: "mallory", Data: json.RawMessage(`"forged chat"`)}
	data := dataBody{Data: []byte("forged data")}
	removed := idBody{ID: prod.ID, Participant: carol.ID}
	for _, f := range []struct {
		reason string
		as     func(id string) *forger
	}{
		{"unsigned", func(id string) *forger { return unsignedForger(net, id) }},
		{"voucher", func(id string) *forger { return newForger(t, net, id, secretWrong, WallClock{}) }},
	} {
		for _, ev := range []struct {
			as, typ string
			body    any
		}{{"n2", evParticipantJoined, kick}, {"n2", evMessage, chat}, {"n2", evData, data}, {"n3", evProducerRemoved, removed}} {
			before := n1.c.Rejected()
			f.as(ev.as).publish(t, subject, "", ev.typ, ev.body)
			refused(t, n1.c, f.reason, before)
		}
	}
	time.Sleep(100 * time.Millisecond) // two heartbeats: a forged incarnation would have shown
	if !hasParticipant(n1.n, "r", alice.ID()) || closed(alice) {
		t.Fatal("a forged participantJoined closed alice")
	}
	if aliceNotes.count(node.EventMessage, "") != 0 {
		t.Fatalf("alice heard forged chat: %v", aliceNotes.got)
	}
	if !hasProducer(n1.n, "r", prod.ID) {
		t.Fatal("a forged producerRemoved removed carol's producer")
	}
	if cert, ok := n1.c.verify.Peer("n2"); !ok || cert.Inc != n2.c.Incarnation() || n1.c.Rejected()["old_incarnation"] != 0 {
		t.Fatalf("a forged incarnation of n2 retired the real one: cert %+v, refused %v", cert, n1.c.Rejected())
	}

	// The positive control: the same messages from n2 and n3.
	n2.c.publish("r", evMessage, messageBody{From: bob.ID(), Identity: "bob", Data: json.RawMessage(`"real chat"`)})
	n3.publish(t, subject, "", evProducerRemoved, removed)
	n2.c.publish("r", evParticipantJoined, kick)
	harness.Eventually(t, 5*time.Second, func() error {
		switch {
		case aliceNotes.count(node.EventMessage, "real chat") != 1:
			return fmt.Errorf("alice did not hear n2's chat")
		case hasProducer(n1.n, "r", prod.ID):
			return fmt.Errorf("n2's producerRemoved did not remove the producer")
		case hasParticipant(n1.n, "r", alice.ID()):
			return fmt.Errorf("n2's participantJoined of a newer alice did not replace alice")
		}
		return nil
	})
}

// TestForgedHeartbeat: a heartbeat of a node "evil" with its own http_url, unsigned, vouched
// for by another secret, or tampered with (a real insider's heartbeat with the http_url
// changed), never makes evil a member, so never a placement target; a heartbeat claiming a
// real node's id with a cert of another node, and one outside the freshness window, are refused
// too. An insider's heartbeat (keys vouched for by the cluster secret) makes it a member.
func TestForgedHeartbeat(t *testing.T) {
	net := NewMemNet()
	n1, _ := pair(t, net)
	stats := node.Stats{ID: "evil", HTTPURL: "http://evil.example", RelayAddr: "127.0.0.1:9"}
	subject := HeartbeatSubject("", "evil") // n1, the region's primary aggregator, hears it
	insider := newForger(t, net, "evil", secretOld, WallClock{})
	tampered := func() []byte {
		b, err := insider.stamp.Seal(typeHeartbeat, node.Stats{ID: "evil", HTTPURL: "http://good.example"})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(strings.Replace(string(b), "good.example", "evil.example", 1))
	}()
	mismatch := func() []byte { // insider's cert, in n2's name
		e, err := Open(signed(t, insider.keys, WallClock{}))
		if err != nil {
			t.Fatal(err)
		}
		e.Node = "n2"
		b, _ := json.Marshal(e)
		return b
	}()
	for _, c := range []struct {
		reason string
		send   func()
	}{
		{"unsigned", func() { unsignedForger(net, "evil").publish(t, subject, "", typeHeartbeat, stats) }},
		{"voucher", func() {
			newForger(t, net, "evil", secretWrong, WallClock{}).publish(t, subject, "", typeHeartbeat, stats)
		}},
		{"signature", func() { _ = insider.bus.Publish(Msg{Subject: subject, Data: tampered}) }},
		{"cert_mismatch", func() { _ = insider.bus.Publish(Msg{Subject: HeartbeatSubject("", "n2"), Data: mismatch}) }},
		{"stale_time", func() {
			newForger(t, net, "evil", secretOld, skewClock{-2 * Freshness}).publish(t, subject, "", typeHeartbeat, stats)
		}},
		{"stale_time", func() {
			newForger(t, net, "evil", secretOld, skewClock{2 * Freshness}).publish(t, subject, "", typeHeartbeat, stats)
		}},
	} {
		before := n1.c.Rejected()
		c.send()
		refused(t, n1.c, c.reason, before)
	}
	time.Sleep(100 * time.Millisecond)
	if got := peers(n1.c); strings.Contains(got, "evil") {
		t.Fatalf("n1's peers after forged heartbeats: %q", got)
	}
	if got := rejectedMetric(t, n1.c, "voucher"); got < 1 {
		t.Fatalf("cascade_cluster_rejected_total{reason=\"voucher\"} is %v", got)
	}
	insider.publish(t, subject, "", typeHeartbeat, stats) // the positive control
	waitPeers(t, n1.c, "evil,n2")
}

// TestForgedPipeRequest: a pipe request in n2's name with the attacker's relay address and key,
// unsigned or vouched for by another secret, gets no reply, so no key. A real request
// between the nodes is answered, and what crosses the bus never holds the asker's link key in
// clear: the request and reply bodies are sealed.
func TestForgedPipeRequest(t *testing.T) {
	net := NewMemNet()
	var mu sync.Mutex
	var seen [][]byte
	net.SetFault(func(m Msg, to string) int {
		if strings.HasPrefix(m.Subject, "cascade.relay.") || strings.HasPrefix(m.Subject, "_INBOX.") {
			mu.Lock()
			seen = append(seen, m.Data)
			mu.Unlock()
		}
		return 1
	})
	n1, n2 := pair(t, net)
	key := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789") // the asker's link key
	req := relay.PipeRequest{Room: "r", Producer: "PR_x", From: "n2", RelayAddr: "127.0.0.1:9", Key: key, SSRC: 1234}
	for _, f := range []struct {
		reason string
		f      *forger
	}{
		{"unsigned", unsignedForger(net, "n2")},
		{"voucher", newForger(t, net, "n2", secretWrong, WallClock{})},
	} {
		b, err := f.f.stamp.Seal(typePipe, req)
		if err != nil {
			t.Fatal(err)
		}
		before := n1.c.Rejected()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		rep, err := f.f.bus.Request(ctx, subjectRelay("n1", typePipe), b)
		cancel()
		if err == nil {
			t.Fatalf("%s forged pipe request answered: %s", f.reason, rep)
		}
		refused(t, n1.c, f.reason, before)
	}
	// The positive control: n2 asks n1 for a producer n1 does not carry; n1 answers (no).
	mu.Lock()
	seen = nil
	mu.Unlock()
	rep, err := n2.c.RequestPipe(context.Background(), "n1", req)
	if err != nil || rep.OK || rep.Error == "" {
		t.Fatalf("real pipe request: %+v %v", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("saw %d relay messages, want the request and the reply", len(seen))
	}
	clear, _ := json.Marshal(key) // as JSON carries it: base64
	for _, b := range seen {
		if strings.Contains(string(b), strings.Trim(string(clear), `"`)) {
			t.Fatalf("the link key crossed the bus in clear: %s", b)
		}
		e, err := Open(b)
		if err != nil {
			t.Fatal(err)
		}
		var s Sealed
		if err := json.Unmarshal(e.Body, &s); err != nil || len(s.Box) == 0 {
			t.Fatalf("%s body is not sealed: %s", e.Type, e.Body)
		}
	}
}

// TestForgedSyncRequest: a request for a room's state in n2's name, unsigned or vouched for
// by another secret, is not answered; nor is an insider's request whose reply subject was
// changed on the way (the subject is signed in the body). The insider's own request is.
func TestForgedSyncRequest(t *testing.T) {
	net := NewMemNet()
	n1, _ := pair(t, net)
	if _, err := n1.n.Join("r", "alice", node.Grant{Subscribe: true}, false, &notes{}); err != nil {
		t.Fatal(err)
	}
	listen := func(f *forger, token string) (string, func() int) {
		var mu sync.Mutex
		n := 0
		subj := subjectSyncReply(f.stamp.node, token)
		sub, err := f.bus.Subscribe(subj, func(Msg) { mu.Lock(); n++; mu.Unlock() })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		return subj, func() int { mu.Lock(); defer mu.Unlock(); return n }
	}
	subject := subjectRoom(roomToken("r"), "sync")
	insider := newForger(t, net, "n3", secretOld, WallClock{})
	for _, c := range []struct {
		reason string
		f      *forger
		divert bool
	}{
		{"unsigned", unsignedForger(net, "n2"), false},
		{"voucher", newForger(t, net, "n2", secretWrong, WallClock{}), false},
		{"mismatch", insider, true},
	} {
		reply, answers := listen(c.f, "t-"+c.reason)
		signedReply := reply
		if c.divert {
			signedReply = subjectSyncReply("n3", "elsewhere")
		}
		before := n1.c.Rejected()
		c.f.publish(t, subject, reply, typeSync, syncRequest{Room: "r", Reply: signedReply})
		refused(t, n1.c, c.reason, before)
		time.Sleep(50 * time.Millisecond)
		if answers() != 0 {
			t.Fatalf("%s sync request answered", c.reason)
		}
	}
	reply, answers := listen(insider, "t-ok") // the positive control
	insider.publish(t, subject, reply, typeSync, syncRequest{Room: "r", Reply: reply})
	harness.Eventually(t, 5*time.Second, func() error {
		if answers() != 2 { // n1 with its part of the room, n2 with none
			return fmt.Errorf("the insider's sync request got %d answers, want 2", answers())
		}
		return nil
	})
}
