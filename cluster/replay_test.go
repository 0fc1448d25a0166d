package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// capture records the messages the bus delivers to one receiver, by subject prefix, and can
// drop them.
type capture struct {
	mu   sync.Mutex
	got  []Msg
	drop func(m Msg, to string) bool
}

func (c *capture) install(net *MemNet, prefix, to string) {
	net.SetFault(func(m Msg, rcpt string) int {
		if rcpt != to || !strings.HasPrefix(m.Subject, prefix) {
			return 1
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got = append(c.got, m)
		if c.drop != nil && c.drop(m, rcpt) {
			return 0
		}
		return 1
	})
}

// last is the last captured message of type typ from node from.
func (c *capture) last(t *testing.T, from, typ string) Msg {
	t.Helper()
	var out Msg
	harness.Eventually(t, 5*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.got {
			if e, err := Open(m.Data); err == nil && e.Node == from && e.Type == typ {
				out = m
			}
		}
		if out.Data == nil {
			return fmt.Errorf("no %s of %s captured", typ, from)
		}
		return nil
	})
	return out
}

// TestReplayedHeartbeat: a heartbeat of n2 captured and sent again after n2 left does not make
// it a member again (a duplicate), and after n2 came back as a new incarnation, the old
// incarnation's heartbeat sent again does not retire the new one: neither on n1, which saw the
// old one retired, nor on n0, started since, which never saw the old one.
func TestReplayedHeartbeat(t *testing.T) {
	net := NewMemNet()
	var rec capture
	rec.install(net, HeartbeatSubject("", "n2"), "n1") // n1 is the region's primary aggregator
	n1, n2 := pair(t, net)
	beat := rec.last(t, "n2", typeHeartbeat)
	n2.c.Close()
	n2.bus.SetConnected(false)
	waitPeers(t, n1.c, "")
	attacker := net.Conn("attacker")
	before := n1.c.Rejected()
	_ = attacker.Publish(beat)
	refused(t, n1.c, "duplicate", before)
	time.Sleep(100 * time.Millisecond)
	if got := peers(n1.c); got != "" {
		t.Fatalf("a replayed heartbeat brought n2 back: %q", got)
	}

	n2b := startNode(t, net, "n2", secretOld) // n2 restarted: a new incarnation
	waitPeers(t, n1.c, "n2")
	before = n1.c.Rejected()
	_ = attacker.Publish(beat)
	refused(t, n1.c, "old_incarnation", before)
	time.Sleep(100 * time.Millisecond)
	if cert, ok := n1.c.verify.Peer("n2"); !ok || cert.Inc != n2b.c.Incarnation() {
		t.Fatalf("after the old incarnation's heartbeat replayed, n1 holds n2's cert %+v", cert)
	}
	waitPeers(t, n1.c, "n2")

	n0 := startNode(t, net, "n0", secretOld) // the lowest id: the new primary aggregator, which hears heartbeats
	waitPeers(t, n0.c, "n1,n2")
	before = n0.c.Rejected()
	_ = attacker.Publish(beat)
	refused(t, n0.c, "old_incarnation", before)
	if cert, ok := n0.c.verify.Peer("n2"); !ok || cert.Inc != n2b.c.Incarnation() {
		t.Fatalf("after the old incarnation's heartbeat replayed, n0 holds n2's cert %+v", cert)
	}
}

// TestReplayedRoomEvent: bob's participantJoined, captured and sent again after bob left,
// does not bring bob back on n1.
func TestReplayedRoomEvent(t *testing.T) {
	net := NewMemNet()
	var rec capture
	rec.install(net, subjectRoom(roomToken("r"), "ev"), "n1")
	n1, n2 := pair(t, net)
	if _, err := n1.n.Join("r", "alice", node.Grant{Subscribe: true}, false, &notes{}); err != nil {
		t.Fatal(err)
	}
	bob, err := n2.n.Join("r", "bob", node.Grant{Subscribe: true}, false, &notes{})
	if err != nil {
		t.Fatal(err)
	}
	carol, err := n2.n.Join("r", "carol", node.Grant{Subscribe: true}, false, &notes{}) // keeps the room open on n2
	if err != nil {
		t.Fatal(err)
	}
	joined := rec.last(t, "n2", evParticipantJoined)
	harness.Eventually(t, 5*time.Second, func() error {
		if !hasParticipant(n1.n, "r", bob.ID()) || !hasParticipant(n1.n, "r", carol.ID()) {
			return fmt.Errorf("n1 does not see bob and carol")
		}
		return nil
	})
	bob.Close()
	harness.Eventually(t, 5*time.Second, func() error {
		if hasParticipant(n1.n, "r", bob.ID()) {
			return fmt.Errorf("n1 still sees bob")
		}
		return nil
	})
	before := n1.c.Rejected()
	_ = net.Conn("attacker").Publish(joined)
	refused(t, n1.c, "duplicate", before)
	time.Sleep(100 * time.Millisecond)
	if hasParticipant(n1.n, "r", bob.ID()) || !hasParticipant(n1.n, "r", carol.ID()) {
		t.Fatalf("after the replay n1's room holds %v", roomOf(n1.n, "r").Participants())
	}
}

// TestReplayedPipeRequest: n2's pipe request, captured and sent again, is not answered.
func TestReplayedPipeRequest(t *testing.T) {
	net := NewMemNet()
	var rec capture
	rec.install(net, subjectRelay("n1", typePipe), "n1")
	n1, n2 := pair(t, net)
	req := relay.PipeRequest{Room: "r", Producer: "PR_x", From: "n2", RelayAddr: "127.0.0.1:9", Key: make([]byte, 30), SSRC: 1234}
	if rep, err := n2.c.RequestPipe(context.Background(), "n1", req); err != nil || rep.Error == "" {
		t.Fatalf("real pipe request: %+v %v", rep, err) // answered: "not carried"
	}
	m := rec.last(t, "n2", typePipe)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	before := n1.c.Rejected()
	if rep, err := net.Conn("attacker").Request(ctx, m.Subject, m.Data); err == nil {
		t.Fatalf("a replayed pipe request was answered: %s", rep)
	}
	refused(t, n1.c, "duplicate", before)
}

// TestReplayedPipeReply: n1's reply to n2's first pipe request, captured and delivered as the
// answer to n2's second request (whose real answer is lost), is refused: n2's request fails
// rather than take it.
func TestReplayedPipeReply(t *testing.T) {
	net := NewMemNet()
	var rec capture
	var inbox chan string
	rec.install(net, "_INBOX.n2.", "n2")
	_, n2 := pair(t, net)
	req := relay.PipeRequest{Room: "r", Producer: "PR_x", From: "n2", RelayAddr: "127.0.0.1:9", Key: make([]byte, 30), SSRC: 1234}
	if rep, err := n2.c.RequestPipe(context.Background(), "n1", req); err != nil || rep.Error == "" {
		t.Fatalf("real pipe request: %+v %v", rep, err)
	}
	reply := rec.last(t, "n1", typePipeReply)
	inbox = make(chan string, 1)
	rec.mu.Lock()
	rec.drop = func(m Msg, _ string) bool { // the real answer to the second request is lost
		select {
		case inbox <- m.Subject:
		default:
		}
		return true
	}
	rec.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		rep, err := n2.c.RequestPipe(ctx, "n1", req)
		if err == nil {
			err = fmt.Errorf("took %+v", rep)
		}
		done <- err
	}()
	subj := <-inbox
	rec.mu.Lock()
	rec.drop = nil
	rec.mu.Unlock()
	before := n2.c.Rejected()
	_ = net.Conn("attacker").Publish(Msg{Subject: subj, Data: reply.Data})
	if err := <-done; !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("second pipe request with the first reply replayed: %v, want ErrBadEnvelope", err)
	}
	refused(t, n2.c, "duplicate", before)

}

// TestRotation: during a secret rotation a node holding [new, old] and one holding [old] see
// each other and pipe requests between them are answered; a node holding [new] only meets the
// first but not the second.
func TestRotation(t *testing.T) {
	net := NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	n1 := startNode(t, net, "n1", Secrets{secretNew[0], secretOld[0]})
	n2 := startNode(t, net, "n2", secretOld)
	waitPeers(t, n1.c, "n2")
	waitPeers(t, n2.c, "n1")
	req := relay.PipeRequest{Room: "r", Producer: "PR_x", RelayAddr: "127.0.0.1:9", Key: make([]byte, 30), SSRC: 1234}
	for _, c := range []struct {
		from *testNode
		to   string
	}{{n1, "n2"}, {n2, "n1"}} {
		req.From = c.from.c.me
		if rep, err := c.from.c.RequestPipe(context.Background(), c.to, req); err != nil || rep.Error == "" {
			t.Fatalf("pipe request %s to %s: %+v %v", req.From, c.to, rep, err)
		}
	}
	before := n2.c.Rejected()
	n3 := startNode(t, net, "n3", secretNew)
	waitPeers(t, n1.c, "n2,n3")
	waitPeers(t, n3.c, "n1")
	refused(t, n2.c, "voucher", before)
	if got := peers(n2.c); strings.Contains(got, "n3") {
		t.Fatalf("n2 (old secret only) has peers %q", got)
	}
	req.From = "n2"
	if _, err := n2.c.RequestPipe(context.Background(), "n3", req); !errors.Is(err, ErrNoPeerKey) {
		t.Fatalf("pipe request to a node whose keys n2 does not accept: %v, want ErrNoPeerKey", err)
	}
}
