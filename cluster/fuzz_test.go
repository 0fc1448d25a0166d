package cluster_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// frozenClock never moves: no peer times out between two looks at the state.
type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time { return c.t }

// countingListener counts what a local participant is told (forged chat would show here).
type countingListener struct{ n atomic.Int64 }

func (l *countingListener) Notify(string, any) { l.n.Add(1) }

// controlFuzz is one node joined to the cluster on an in-process bus that nothing drains but
// the test, with a local participant in room "r", and an attacker's connection to the bus.
type controlFuzz struct {
	net      *cluster.MemNet
	n        *node.Node
	c        *cluster.Cluster
	pipes    *relay.Pipes
	attacker *cluster.MemBus
	alice    *countingListener
	subjects []string // where the node listens: digests, the room's events and sync, its relay verbs, the room API, heartbeats
	evil     *cluster.Stamper
	evilCert cluster.Cert
}

func newControlFuzz(tb testing.TB) *controlFuzz {
	f := &controlFuzz{net: cluster.NewMemNet(), alice: &countingListener{}}
	var err error
	if f.n, err = node.New(node.Options{ID: "fz", LoopbackOnly: true, Workers: 1}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.n.Close)
	if f.pipes, err = relay.Open(relay.Options{Self: "fz", Producers: f.n}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.pipes.Close)
	clock := frozenClock{time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	secrets := cluster.Secrets{"fuzz-cluster-secret-0123456789abcdef"}
	if f.c, err = cluster.New(f.n, f.pipes, f.net.Conn("fz"), cluster.Options{Clock: clock, Secrets: secrets}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.c.Close)
	cluster.NewAPI(f.c) // the room API's questions are control messages too
	f.attacker = f.net.Conn("attacker")
	// The room's subject token: read off what the node publishes about the room when alice
	// joins (her participantJoined event, or a sync request).
	token := make(chan string, 1)
	sub, err := f.attacker.Subscribe("cascade.room.*.*", func(m cluster.Msg) {
		select {
		case token <- strings.Split(m.Subject, ".")[2]:
		default:
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	joined := make(chan error, 1)
	go func() {
		_, err := f.n.Join("r", "alice", node.Grant{Publish: true, Subscribe: true}, false, f.alice)
		joined <- err
	}()
	var tok string
	deadline := time.Now().Add(10 * time.Second)
	for tok == "" && time.Now().Before(deadline) {
		f.net.Drain()
		select {
		case tok = <-token:
		case <-time.After(10 * time.Millisecond):
		}
	}
	if tok == "" {
		tb.Fatal("the node published nothing about its room")
	}
	for done := false; !done; {
		f.net.Drain()
		select {
		case err := <-joined:
			if err != nil {
				tb.Fatal(err)
			}
			done = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	_ = sub.Unsubscribe()
	f.net.Drain()
	f.subjects = []string{cluster.DigestSubject(""), "cascade.room." + tok + ".ev", "cascade.room." + tok + ".sync",
		"cascade.relay.fz.pipe", "cascade.relay.fz.unpipe", "cascade.relay.fz.dropped", "cascade.syncreply.fz." + tok,
		"cascade.api.rooms", "cascade.apireply.fz.x", "cascade.relay.fz.layers", cluster.HeartbeatSubject("", "evil")}
	// evil is an insider: a node holding the cluster secret, so its sealed messages pass the
	// signature checks and reach the handlers (raw ones test the checks themselves).
	keys, err := cluster.NewNodeKeys("evil", cluster.NewIncarnation(), clock.Now(), secrets)
	if err != nil {
		tb.Fatal(err)
	}
	f.evil = cluster.NewSigningStamper(keys, clock)
	f.evilCert = keys.Cert()
	return f
}

// state is everything a control message could change, printed.
func (f *controlFuzz) state() string {
	var peers []string
	for _, p := range f.c.Peers() {
		peers = append(peers, p.ID)
	}
	slices.Sort(peers)
	var local []string
	if r := f.n.Room("r"); r != nil {
		for _, p := range r.Participants() {
			local = append(local, p.ID+"/"+p.Identity)
		}
	}
	slices.Sort(local)
	return fmt.Sprintf("peers %v; room state %v %v; local %v; piped %v; alice told %d",
		peers, f.c.Rooms().Participants("r"), f.c.Rooms().Producers("r"), local, f.pipes.Piped("r"), f.alice.n.Load())
}

// envelopeTypes are the types of control messages, for sealed bodies.
var envelopeTypes = []string{"heartbeat", node.EventParticipantJoined, node.EventParticipantLeft, node.EventProducerAdded,
	node.EventProducerRemoved, node.EventProducerMuted, node.EventMessage, "data", "piped", "unpiped", "pipe", "pipeReply",
	"unpipe", "dropped", "sync", "syncReply", "ask", "askAnswer", "layers"}

// FuzzControlMessage publishes messages on every subject a node listens to: raw bytes (the
// envelope itself fuzzed) and well-formed envelopes around fuzzed bodies. A message the
// envelope check refuses (cluster.Open) changes nothing: no peer, no room state, no local
// participant, no relay edge, no notification. Neither kind may panic or hang the node.
//
// Once envelopes are signed, nothing the fuzzer makes carries a valid signature, so every
// message must change nothing: tighten the oracle to that.
func FuzzControlMessage(f *testing.F) {
	f.Add(uint8(0), false, []byte(`{"node":"evil","inc":"1","seq":1,"time":1,"type":"heartbeat","body":{"id":"evil","relay_addr":"127.0.0.1:9"}}`))
	f.Add(uint8(1), false, []byte(`{"node":"evil","inc":"1","seq":2,"type":"participantJoined","body":{"participant":{"id":"p1","identity":"alice","joinedAt":99999999999999}}}`))
	f.Add(uint8(1), true, []byte(`{"participant":{"id":"p1","identity":"alice","joinedAt":99999999999999}}`))
	f.Add(uint8(1), false, []byte(`{"node":"","inc":"","seq":0}`))
	f.Add(uint8(3), true, []byte(`{"room":"r","producer":"x","key":"AAAA","relay":"127.0.0.1:9"}`))
	f.Add(uint8(2), true, []byte(`{"room":"r"}`))
	f.Add(uint8(0), false, []byte(`not json`))
	f.Add(uint8(6), true, []byte(`null`))
	for _, q := range []string{ // room API questions (type "ask": kind 16), on their verbs' subjects
		`{"verb":"rooms","reply":"cascade.apireply.evil.q","body":{"limit":10}}`,
		`{"verb":"room","reply":"cascade.apireply.evil.q","body":{"name":"r"}}`,
		`{"verb":"participants","reply":"cascade.apireply.evil.q","body":{"room":"r","limit":5}}`,
		`{"verb":"updateParticipant","reply":"cascade.apireply.evil.q","body":{"room":"r","identity":"alice","metadata":"x"}}`,
		`{"verb":"mute","reply":"cascade.apireply.evil.q","body":{"room":"r","identity":"alice","producer":"p"}}`,
		`{"verb":"roomLife","reply":"cascade.apireply.evil.q","body":"r"}`,
	} {
		f.Add(uint8(16), true, []byte(q))
	}
	cf := newControlFuzz(f)
	f.Fuzz(func(t *testing.T, kind uint8, sealed bool, data []byte) {
		subject := cf.subjects[int(kind)%len(cf.subjects)]
		msg := cluster.Msg{Subject: subject, Reply: "cascade.fuzz.reply", Data: data}
		typ := envelopeTypes[int(kind)%len(envelopeTypes)]
		if q := askOf(data); sealed && typ == "ask" && q.Verb != "" {
			msg.Subject, msg.Reply = "cascade.api."+q.Verb, q.Reply // where a question of that verb goes
		}
		if sealed {
			b, err := cf.evil.SealAs(cf.evil.Reserve(), typ, rawJSON(data))
			if err != nil {
				return // the body is not JSON: nothing to send
			}
			msg.Data = b
		}
		before := cf.state()
		if err := cf.attacker.Publish(msg); err != nil {
			t.Fatal(err)
		}
		cf.net.Drain()
		if _, err := cluster.Open(msg.Data); err != nil {
			if after := cf.state(); after != before {
				t.Fatalf("a refused control message (%v) on %s changed the node:\nbefore %s\nafter  %s", err, subject, before, after)
			}
		}
		_ = cf.n.Stats() // the node still answers (a deadlock hangs the fuzzer, which reports it)
	})
}

// askOf reads the verb and reply subject of a room API question's body, when they fit in a
// subject.
func askOf(data []byte) (q struct{ Verb, Reply string }) {
	if json.Unmarshal(data, &q) != nil || strings.ContainsAny(q.Verb+q.Reply, " *>\t\r\n") || strings.Contains(q.Verb, ".") {
		q.Verb = ""
	}
	return q
}

// rawJSON is a body sealed as it is.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// TestControlFuzzReachesTheNode guards FuzzControlMessage against testing nothing: its
// subjects reach the node's handlers (a well-formed heartbeat and room event change the
// state), so the refused messages that change nothing were heard and refused.
func TestControlFuzzReachesTheNode(t *testing.T) {
	cf := newControlFuzz(t)
	send := func(subject, typ string, body string) string {
		before := cf.state()
		b, err := cf.evil.SealAs(cf.evil.Reserve(), typ, rawJSON(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := cf.attacker.Publish(cluster.Msg{Subject: subject, Data: b}); err != nil {
			t.Fatal(err)
		}
		cf.net.Drain()
		if after := cf.state(); after != before {
			return after
		}
		return ""
	}
	cert, _ := json.Marshal(cf.evilCert)
	digest := fmt.Sprintf(`{"region":"","entries":[{"inc":%q,"age_ms":0,"stats":{"id":"evil","relay_addr":"127.0.0.1:9"},"cert":%s}]}`, cf.evilCert.Inc, cert)
	if send(cf.subjects[0], "digest", digest) == "" {
		t.Fatal("a digest on " + cf.subjects[0] + " changed nothing: the fuzzer's subjects miss the node")
	}
	if send(cf.subjects[1], node.EventParticipantJoined, `{"participant":{"id":"p-evil","identity":"mallory","joinedAt":1}}`) == "" {
		t.Fatal("a participantJoined on " + cf.subjects[1] + " changed nothing: the fuzzer's subjects miss the node")
	}
	// A room API question as the fuzzer routes it (askOf) reaches its handler: alice's metadata.
	body := `{"verb":"updateParticipant","reply":"cascade.apireply.evil.q","body":{"room":"r","identity":"alice","metadata":"set by a question"}}`
	q := askOf([]byte(body))
	b, err := cf.evil.SealAs(cf.evil.Reserve(), "ask", rawJSON(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.attacker.Publish(cluster.Msg{Subject: "cascade.api." + q.Verb, Reply: q.Reply, Data: b}); err != nil {
		t.Fatal(err)
	}
	cf.net.Drain()
	if ps := cf.n.Room("r").Participants(); len(ps) == 0 || !slices.ContainsFunc(ps, func(p node.ParticipantInfo) bool { return p.Metadata == "set by a question" }) {
		t.Fatalf("a room API question changed nothing: %+v", ps)
	}
}
