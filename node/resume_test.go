package node_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// TestResumeSameNode: a session resumed on the node that still holds it keeps its id, gets the
// next epoch, supersedes the old copy (told "resumed", no leave and no join for anyone), and
// its credential cannot be used a second time.
func TestResumeSameNode(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	g := node.Grant{Publish: true, Subscribe: true}
	bob, bobHeard := join(t, n, "r", "bob", g)
	alice, aliceHeard := join(t, n, "r", "alice", g)
	res := node.Resume{ID: alice.ID(), Epoch: alice.Epoch(), JoinedAt: alice.Info().JoinedAt, Node: n.ID()}
	heardBefore := bobHeard.count(node.EventParticipantLeft) + bobHeard.count(node.EventParticipantJoined)

	again := &recorder{}
	p, err := n.JoinResumed("r", "alice", g, false, again, res)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != alice.ID() || p.Epoch() != 1 || p.Info().JoinedAt != alice.Info().JoinedAt {
		t.Fatalf("resumed as %+v, want id %s epoch 1", p.Info(), alice.ID())
	}
	checkFor(t, 5*time.Second, func() error {
		select {
		case <-alice.Done():
		default:
			return errors.New("old copy not closed")
		}
		return nil
	})
	if !aliceHeard.has(node.EventClosed, `{"reason":"resumed"}`) {
		t.Fatalf("old copy not told it resumed:\n%s", aliceHeard)
	}
	if c := bobHeard.count(node.EventParticipantLeft) + bobHeard.count(node.EventParticipantJoined); c != heardBefore {
		t.Fatalf("bob heard a leave or a join:\n%s", bobHeard)
	}
	if c := ev.count("ParticipantLeft"); c != 0 {
		t.Fatalf("%d ParticipantLeft events", c)
	}
	var resumed *node.ParticipantJoined
	ev.mu.Lock()
	for _, e := range ev.events {
		if j, ok := e.(node.ParticipantJoined); ok && j.Resumed {
			resumed = &j
		}
	}
	ev.mu.Unlock()
	if resumed == nil || resumed.Participant.Epoch != 1 || resumed.Participant.ID != alice.ID() {
		t.Fatalf("no ParticipantJoined with Resumed and epoch 1: %+v", resumed)
	}
	if ps := n.Room("r").Participants(); len(ps) != 2 {
		t.Fatalf("participants %v, want bob and alice", ps)
	}
	// The same credential again: refused, and the session is untouched.
	if _, err := n.JoinResumed("r", "alice", g, false, &recorder{}, res); !errors.Is(err, node.ErrResume) {
		t.Fatalf("second use of a credential: %v, want ErrResume", err)
	}
	select {
	case <-p.Done():
		t.Fatal("the session closed on a refused resume")
	default:
	}
	_ = bob
}

// TestResumeOfRemote: a session the room knows on another node becomes local without a join
// for the local participants; a stale announcement of the old copy changes nothing, a newer
// copy announced elsewhere fences the local one.
func TestResumeOfRemote(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	g := node.Grant{Subscribe: true}
	_, bobHeard := join(t, n, "r", "bob", g)
	r := n.Room("r")
	old := node.ParticipantInfo{ID: "PAREMOTE", Identity: "alice", JoinedAt: 1000, Epoch: 2}
	r.AddRemoteParticipant(old, "N2")
	if bobHeard.count(node.EventParticipantJoined) != 1 {
		t.Fatalf("bob not told of the remote join:\n%s", bobHeard)
	}
	// A stale credential (epoch 1, the session is at 2) is refused.
	if _, err := n.JoinResumed("r", "alice", g, false, &recorder{}, node.Resume{ID: old.ID, Epoch: 1, JoinedAt: 1000, Node: "N2"}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("stale credential: %v", err)
	}
	aliceHeard := &recorder{}
	p, err := n.JoinResumed("r", "alice", g, false, aliceHeard, node.Resume{ID: old.ID, Epoch: 2, JoinedAt: 1000, Node: "N2"})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != old.ID || p.Epoch() != 3 {
		t.Fatalf("resumed as %+v", p.Info())
	}
	// The old node's stale copy announces itself late: nothing changes.
	r.AddRemoteParticipant(old, "N2")
	r.UpdateRemoteParticipant(old, "N2")
	if bobHeard.count(node.EventParticipantJoined) != 1 || bobHeard.count(node.EventParticipantLeft) != 0 {
		t.Fatalf("bob heard of the resume:\n%s", bobHeard)
	}
	if ps := r.Participants(); len(ps) != 2 {
		t.Fatalf("participants %v", ps)
	}
	// The client resumed once more, on N3: the local copy is fenced.
	newer := old
	newer.Epoch = 4
	r.AddRemoteParticipant(newer, "N3")
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("fenced copy not closed")
	}
	if !aliceHeard.has(node.EventClosed, `{"reason":"resumed"}`) {
		t.Fatalf("fenced copy not told:\n%s", aliceHeard)
	}
	if bobHeard.count(node.EventParticipantLeft) != 0 || bobHeard.count(node.EventParticipantJoined) != 1 {
		t.Fatalf("bob heard of the fencing:\n%s", bobHeard)
	}
	ps := r.Participants()
	if len(ps) != 2 || !hasParticipant(ps, old.ID, 4) {
		t.Fatalf("participants %v, want alice at epoch 4", ps)
	}
}

// TestResumeRefusedAfterLeaveElsewhere: a session that left on another node cannot be resumed
// here with a credential issued before it left (the node remembers the sessions that ended on
// other nodes of its rooms, as its own).
func TestResumeRefusedAfterLeaveElsewhere(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	g := node.Grant{Subscribe: true}
	join(t, n, "r", "bob", g)
	r := n.Room("r")
	gone := node.ParticipantInfo{ID: "PAGONE", Identity: "alice", JoinedAt: 1000}
	r.AddRemoteParticipant(gone, "N2")
	r.RemoveRemoteParticipant(gone.ID)
	if _, err := n.JoinResumed("r", "alice", g, false, &recorder{}, node.Resume{ID: gone.ID, JoinedAt: 1000, Node: "N2"}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("a resume of a session that left on N2: %v, want ErrResume", err)
	}
}

// TestResumeRefusedForNewerIdentity: a client that joined afresh since (a new session of the
// identity, here or on another node) cannot be pushed out by a resume of its old one.
func TestResumeRefusedForNewerIdentity(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	join(t, n, "r", "alice", node.Grant{})
	if _, err := n.JoinResumed("r", "alice", node.Grant{}, false, &recorder{}, node.Resume{ID: "PAOLD", Epoch: 0, JoinedAt: 1}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("resume over a newer session: %v", err)
	}
	// The same on another node.
	join(t, n, "r", "bob", node.Grant{})
	n.Room("r").AddRemoteParticipant(node.ParticipantInfo{ID: "PANEW", Identity: "carol", JoinedAt: 2}, "n2")
	if _, err := n.JoinResumed("r", "carol", node.Grant{}, false, &recorder{}, node.Resume{ID: "PAOLD2", Epoch: 0, JoinedAt: 1, Node: "n3"}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("resume over a newer session elsewhere: %v", err)
	}
	// An older session of the identity (dave's, from before the session that resumes) does not
	// stop it, and is replaced as by any join.
	n.Room("r").AddRemoteParticipant(node.ParticipantInfo{ID: "PAOLDER", Identity: "dave", JoinedAt: 1}, "n2")
	if _, err := n.JoinResumed("r", "dave", node.Grant{}, false, &recorder{}, node.Resume{ID: "PADAVE", Epoch: 0, JoinedAt: 5, Node: "n3"}); err != nil {
		t.Fatalf("resume with an older session of the identity elsewhere: %v", err)
	}
	eve, eveHeard := join(t, n, "r", "eve", node.Grant{})
	if _, err := n.JoinResumed("r", "eve", node.Grant{}, false, &recorder{}, node.Resume{ID: "PAEVE", Epoch: 0, JoinedAt: eve.Info().JoinedAt + 1, Node: "n3"}); err != nil {
		t.Fatalf("resume with an older session of the identity here: %v", err)
	}
	if !eveHeard.has(node.EventClosed, `{"reason":"replaced"}`) {
		t.Fatalf("eve's older session not replaced:\n%s", eveHeard)
	}
}

// TestLinger: a participant whose client vanished stays for its grace, then leaves as usual;
// its session is over.
func TestLinger(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	_, bobHeard := join(t, n, "r", "bob", node.Grant{})
	gone, _ := join(t, n, "r", "gone", node.Grant{})
	gone.Linger(300 * time.Millisecond)
	if bobHeard.count(node.EventParticipantLeft) != 0 {
		t.Fatal("left before its grace")
	}
	checkFor(t, 5*time.Second, func() error {
		if !bobHeard.has(node.EventParticipantLeft, fmt.Sprintf(`{"id":%q}`, gone.ID())) {
			return errors.New("no leave after the grace")
		}
		return nil
	})
	// Its session ended: a late resume of it is refused.
	if _, err := n.JoinResumed("r", "gone", node.Grant{}, false, &recorder{}, node.Resume{ID: gone.ID(), Epoch: 0}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("resume of an ended session: %v", err)
	}
}

func TestSupersedesByEpoch(t *testing.T) {
	a := node.ParticipantInfo{ID: "PA1", Identity: "alice", JoinedAt: 5, Epoch: 2}
	b := a
	b.Epoch = 1
	b.JoinedAt = 9 // a later clock says nothing between copies of one session
	if !node.Supersedes(a, nil, b, []string{a.ID}) || node.Supersedes(b, []string{a.ID}, a, nil) || node.Supersedes(a, nil, a, nil) {
		t.Fatal("copies of one session are not decided by epoch")
	}
}

func hasParticipant(ps []node.ParticipantInfo, id string, epoch uint64) bool {
	for _, p := range ps {
		if p.ID == id && p.Epoch == epoch {
			return true
		}
	}
	return false
}

// TestResumeInFullRoom: a resume of a session the full room already counts (here, or on another
// node) is admitted like a replacing identity; a newcomer is not.
func TestResumeInFullRoom(t *testing.T) {
	n, _ := adminNode(t, node.Options{Limits: node.Limits{RoomParticipants: 2}})
	g := node.Grant{Subscribe: true}
	a, _ := join(t, n, "r", "a", g)
	r := a.Room()
	r.AddRemoteParticipant(node.ParticipantInfo{ID: "PAREMOTE", Identity: "x", JoinedAt: 1}, "n2")
	if _, err := n.Join("r", "newcomer", g, false, &recorder{}); !errors.Is(err, node.ErrRoomFull) {
		t.Fatalf("a third participant: %v, want ErrRoomFull", err)
	}
	if _, err := n.JoinResumed("r", "a", g, false, &recorder{}, node.Resume{ID: a.ID(), Epoch: 0}); err != nil {
		t.Fatalf("resume of a, here: %v", err)
	}
	if _, err := n.JoinResumed("r", "x", g, false, &recorder{}, node.Resume{ID: "PAREMOTE", Epoch: 0, Node: "n2"}); err != nil {
		t.Fatalf("resume of x, from n2: %v", err)
	}
	if ps := r.Participants(); len(ps) != 2 {
		t.Fatalf("participants %v", ps)
	}
}

// TestSupersededOutlivesItsConnection: a copy fenced by a newer session elsewhere is no longer
// a participant but keeps its producers' media until they move or the linger ends; Superseded
// tells its signaling layer not to close it.
func TestSupersededOutlivesItsConnection(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	l := &recorder{}
	p, prID := publishLive(t, n, "r", "pub", l)
	_, bobHeard := join(t, n, "r", "bob", node.Grant{Subscribe: true})
	info := p.Info()
	info.Epoch = 1
	p.Room().AddRemoteParticipant(info, "n2")
	if !p.Superseded() {
		t.Fatal("not superseded")
	}
	if n.Producer("r", prID) == nil {
		t.Fatal("the superseded copy's producer ended at once")
	}
	select {
	case <-p.Done():
		t.Fatal("closed before its producers moved or its linger ended")
	case <-time.After(500 * time.Millisecond):
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not closed after its linger")
	}
	if bobHeard.count(node.EventParticipantLeft) != 0 {
		t.Fatalf("bob heard a leave:\n%s", bobHeard)
	}
}
