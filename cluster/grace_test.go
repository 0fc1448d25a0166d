package cluster

import (
	"reflect"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// These tests drive RoomState's epochs and grace directly: stamps are written out, time is a
// value.

func partAt(id string, epoch uint64) node.ParticipantInfo {
	p := part(id)
	p.Epoch = epoch
	return p
}

func prodAt(id string, epoch uint64) node.ProducerInfo {
	p := prod(id)
	p.Epoch = epoch
	return p
}

// expect feeds one message and checks its effects.
func expect(t *testing.T, s *RoomState, room string, from Stamp, m RoomMsg, now time.Time, want ...Effect) {
	t.Helper()
	if got := s.Apply(room, from, m, now); !reflect.DeepEqual(got, nilIfEmpty(want)) {
		t.Fatalf("%T from %v: got %+v, want %+v", m, from, got, want)
	}
}

func nilIfEmpty(e []Effect) []Effect {
	if len(e) == 0 {
		return nil
	}
	return e
}

func sameMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// TestRoomStateEpochs: a session resumed on b (epoch 1) moves x and its producer P there; a's
// late messages and sync of the stale copy (epoch 0) never move them back, nor remove them,
// whatever their sequence numbers.
func TestRoomStateEpochs(t *testing.T) {
	const r = "room"
	a := stamper("a", "1")
	b := stamper("b", "1")
	s := NewRoomStateGrace(10 * time.Second)
	s.Open(r)
	now := time.Unix(100, 0)
	expect(t, s, r, a(1), ParticipantJoinedMsg{Participant: partAt("x", 0)}, now,
		ReplaceIdentity{r, partAt("x", 0), nil}, AddRemoteParticipant{r, partAt("x", 0), "a"})
	expect(t, s, r, a(2), ProducerAddedMsg{Producer: prodAt("P", 0)}, now, AddRemoteProducer{r, prodAt("P", 0), "a"})

	// The resume on b: the session's own old id is not a session it replaces, it fences it.
	expect(t, s, r, b(1), ParticipantJoinedMsg{Participant: partAt("x", 1), Replaces: []string{"x"}, Resumed: true}, now,
		Supersede{r, partAt("x", 1), "b"}, ReplaceIdentity{r, partAt("x", 1), []string{}}, AddRemoteParticipant{r, partAt("x", 1), "b"})
	expect(t, s, r, b(2), ProducerAddedMsg{Producer: prodAt("P", 1)}, now, MoveProducer{r, prodAt("P", 1), "b"})

	// a was cut off and does not know yet: its messages of the stale copy change nothing.
	expect(t, s, r, a(3), ParticipantUpdatedMsg{Participant: partAt("x", 0)}, now)
	expect(t, s, r, a(4), ProducerAddedMsg{Producer: prodAt("P", 0)}, now)
	expect(t, s, r, a(5), ProducerMutedMsg{ID: "P", Muted: true}, now)
	expect(t, s, r, a(6), RoomSyncMsg{Participants: []node.ParticipantInfo{partAt("x", 0)}, Producers: []node.ProducerInfo{prodAt("P", 0)}}, now)
	expect(t, s, r, a(7), ProducerRemovedMsg{ID: "P"}, now) // a removal from the node that no longer holds it
	expect(t, s, r, a(8), ParticipantLeftMsg{ID: "x"}, now)
	sameMap(t, "participants", s.Participants(r), map[string]string{"x": "b"})
	sameMap(t, "producers", s.Producers(r), map[string]string{"P": "b"})

	// Same epoch from b: today's rules (sequence numbers).
	expect(t, s, r, b(1), ProducerAddedMsg{Producer: prodAt("P", 1)}, now) // a repeat
	expect(t, s, r, b(3), ProducerMutedMsg{ID: "P", Muted: true}, now, SetRemoteMuted{r, "P", true, false})
	// A sync of b listing the resumed session: nothing new.
	expect(t, s, r, b(4), RoomSyncMsg{Participants: []node.ParticipantInfo{partAt("x", 1)}, Producers: []node.ProducerInfo{muted(prodAt("P", 1))}}, now)

	// A node that never knew x, and syncs from b first (a partition healed): the resumed
	// session is new to it, but it may hold the stale copy itself, so it is told to fence it.
	s2 := NewRoomStateGrace(10 * time.Second)
	s2.Open(r)
	expect(t, s2, r, b(4), RoomSyncMsg{Participants: []node.ParticipantInfo{partAt("x", 1)}, Producers: []node.ProducerInfo{prodAt("P", 1)}}, now,
		Supersede{r, partAt("x", 1), "b"}, AddRemoteParticipant{r, partAt("x", 1), "b"}, MoveProducer{r, prodAt("P", 1), "b"})
}

// TestRoomStateGrace: a departed node's participants and producers stay for the grace, in
// every room, and leave when it is over; those resumed on another node meanwhile move and stay.
func TestRoomStateGrace(t *testing.T) {
	const grace = 10 * time.Second
	a := stamper("a", "1")
	b := stamper("b", "1")
	s := NewRoomStateGrace(grace)
	s.Open("r1")
	s.Open("r2")
	t0 := time.Unix(100, 0)
	s.Apply("r1", a(1), ParticipantJoinedMsg{Participant: part("x")}, t0)
	s.Apply("r1", a(2), ProducerAddedMsg{Producer: prod("P")}, t0)
	s.Apply("r1", a(3), ParticipantJoinedMsg{Participant: part("y")}, t0)
	s.Apply("r2", a(4), ProducerAddedMsg{Producer: prod("Q")}, t0)
	s.Apply("r2", b(1), ParticipantJoinedMsg{Participant: part("z")}, t0)

	if got := s.NodeGone("a", t0); got != nil {
		t.Fatalf("node gone within the grace: %+v", got)
	}
	sameMap(t, "participants during the grace", s.Participants("r1"), map[string]string{"x": "a", "y": "a"})
	sameMap(t, "orphans", s.Orphans("r1"), map[string]string{"x": "a", "y": "a"})
	// x resumes on b within the grace: it moves, with its producer.
	t1 := t0.Add(3 * time.Second)
	expect(t, s, "r1", b(2), ParticipantJoinedMsg{Participant: partAt("x", 1), Resumed: true}, t1,
		Supersede{"r1", partAt("x", 1), "b"}, ReplaceIdentity{"r1", partAt("x", 1), nil}, AddRemoteParticipant{"r1", partAt("x", 1), "b"})
	expect(t, s, "r1", b(3), ProducerAddedMsg{Producer: prodAt("P", 1)}, t1, MoveProducer{"r1", prodAt("P", 1), "b"})
	sameMap(t, "orphans after the resume", s.Orphans("r1"), map[string]string{"y": "a"})
	if got := s.NodeGone("a", t1); got != nil { // noticed again (another path): the deadline stays
		t.Fatalf("gone again: %+v", got)
	}
	if got := s.Tick(t0.Add(grace - time.Millisecond)); got != nil {
		t.Fatalf("removed before the grace ended: %+v", got)
	}
	want := []Effect{RemoveRemoteParticipant{"r1", "y"}, RemoveRemoteProducer{"r2", "Q"}}
	if got := s.Tick(t0.Add(grace)); !reflect.DeepEqual(got, want) {
		t.Fatalf("at the grace's end: %+v, want %+v", got, want)
	}
	if got := s.Tick(t0.Add(2 * grace)); got != nil {
		t.Fatalf("removed twice: %+v", got)
	}
	sameMap(t, "r1 participants", s.Participants("r1"), map[string]string{"x": "b"})
	sameMap(t, "r1 producers", s.Producers("r1"), map[string]string{"P": "b"})
	sameMap(t, "r2 participants", s.Participants("r2"), map[string]string{"z": "b"})
	sameMap(t, "r2 producers", s.Producers("r2"), map[string]string{})
}

// TestRoomStateGraceHealed: a node that comes back under the same incarnation within the grace
// (a partition healed) confirms what it still has with its room sync; what it lacks leaves at
// once, what it lists is no orphan any more.
func TestRoomStateGraceHealed(t *testing.T) {
	const grace = 10 * time.Second
	a := stamper("a", "1")
	s := NewRoomStateGrace(grace)
	s.Open("r")
	t0 := time.Unix(100, 0)
	s.Apply("r", a(1), ParticipantJoinedMsg{Participant: part("x")}, t0)
	s.Apply("r", a(2), ParticipantJoinedMsg{Participant: part("y")}, t0)
	s.NodeGone("a", t0)
	expect(t, s, "r", a(5), RoomSyncMsg{Participants: []node.ParticipantInfo{part("x")}}, t0.Add(time.Second),
		RemoveRemoteParticipant{"r", "y"})
	if got := s.Tick(t0.Add(grace)); got != nil {
		t.Fatalf("a confirmed participant removed at the grace's end: %+v", got)
	}
	sameMap(t, "participants", s.Participants("r"), map[string]string{"x": "a"})
}

// TestRoomStateRestartGrace: a node's new incarnation orphans the old one's participants and
// producers like a departure: a session resumed on the new incarnation moves there without a
// leave or a join, the new incarnation's sync does not remove the orphans it does not list
// before their grace ends, and the old incarnation's late messages are ignored.
func TestRoomStateRestartGrace(t *testing.T) {
	const grace = 10 * time.Second
	a1 := stamper("a", "1")
	a2 := stamper("a", "2")
	s := NewRoomStateGrace(grace)
	s.Open("r")
	t0 := time.Unix(100, 0)
	s.Apply("r", a1(1), ParticipantJoinedMsg{Participant: part("x")}, t0)
	s.Apply("r", a1(2), ProducerAddedMsg{Producer: prod("P")}, t0)
	s.Apply("r", a1(3), ParticipantJoinedMsg{Participant: part("y")}, t0)

	expect(t, s, "r", a2(1), ParticipantJoinedMsg{Participant: partAt("x", 1), Resumed: true}, t0,
		Supersede{"r", partAt("x", 1), "a"}, ReplaceIdentity{"r", partAt("x", 1), nil}, AddRemoteParticipant{"r", partAt("x", 1), "a"})
	expect(t, s, "r", a2(2), ProducerAddedMsg{Producer: prodAt("P", 1)}, t0, MoveProducer{"r", prodAt("P", 1), "a"})
	expect(t, s, "r", a2(3), RoomSyncMsg{Participants: []node.ParticipantInfo{partAt("x", 1)}, Producers: []node.ProducerInfo{prodAt("P", 1)}}, t0)
	expect(t, s, "r", a1(4), ParticipantLeftMsg{ID: "x"}, t0) // the old incarnation, retired
	sameMap(t, "orphans", s.Orphans("r"), map[string]string{"y": "a"})
	want := []Effect{RemoveRemoteParticipant{"r", "y"}}
	if got := s.Tick(t0.Add(grace)); !reflect.DeepEqual(got, want) {
		t.Fatalf("at the grace's end: %+v, want %+v", got, want)
	}
	sameMap(t, "participants", s.Participants("r"), map[string]string{"x": "a"})
	sameMap(t, "producers", s.Producers("r"), map[string]string{"P": "a"})

	// The same restart learnt from the new incarnation's room sync only: a move too.
	s1 := NewRoomStateGrace(grace)
	s1.Open("r")
	s1.Apply("r", a1(1), ParticipantJoinedMsg{Participant: part("x")}, t0)
	s1.Apply("r", a1(2), ProducerAddedMsg{Producer: prod("P")}, t0)
	expect(t, s1, "r", a2(1), RoomSyncMsg{Participants: []node.ParticipantInfo{partAt("x", 1)}, Producers: []node.ProducerInfo{prodAt("P", 1)}}, t0,
		Supersede{"r", partAt("x", 1), "a"}, AddRemoteParticipant{"r", partAt("x", 1), "a"}, MoveProducer{"r", prodAt("P", 1), "a"})

	// Without a grace, a new incarnation removes the old one's state at once (as before).
	s0 := NewRoomState()
	s0.Open("r")
	s0.Apply("r", a1(1), ParticipantJoinedMsg{Participant: part("x")}, t0)
	expect(t, s0, "r", a2(1), ParticipantJoinedMsg{Participant: part("w")}, t0,
		RemoveRemoteParticipant{"r", "x"}, ReplaceIdentity{"r", part("w"), nil}, AddRemoteParticipant{"r", part("w"), "a"})
}

// TestRoomStateHealedResync: node a's view in the order TestStaleSessionFencedAfterPartition
// runs it. a held x's session itself (so its RoomState knew nothing of x) and was cut off while
// x resumed on b; on reconnection a's room sync gets b's part (x and P at epoch 1) and c's (its
// viewer only), then late copies of what b sent during the partition. b's part fences a's copy
// and moves P; c's part, which does not list x, removes nothing of b's; the late copies change
// nothing. When a's room then closes (the fenced copy was its last participant there), a
// follows the room no more, and a sync of the room opened again brings x back as b's.
func TestRoomStateHealedResync(t *testing.T) {
	const r = "r"
	b := stamper("b", "1")
	c := stamper("c", "1")
	s := NewRoomStateGrace(5 * time.Second)
	s.Open(r)
	t0 := time.Unix(100, 0)
	expect(t, s, r, c(5), ParticipantJoinedMsg{Participant: part("v")}, t0,
		ReplaceIdentity{r, part("v"), nil}, AddRemoteParticipant{r, part("v"), "c"})
	x, p := partAt("x", 1), prodAt("P", 1)
	bPart := RoomSyncMsg{Participants: []node.ParticipantInfo{x}, Producers: []node.ProducerInfo{p}}
	expect(t, s, r, b(12), bPart, t0.Add(time.Second),
		Supersede{r, x, "b"}, AddRemoteParticipant{r, x, "b"}, MoveProducer{r, p, "b"})
	expect(t, s, r, c(14), RoomSyncMsg{Participants: []node.ParticipantInfo{part("v")}}, t0.Add(time.Second))
	expect(t, s, r, b(8), ParticipantJoinedMsg{Participant: x, Resumed: true}, t0.Add(time.Second))
	expect(t, s, r, b(9), ProducerAddedMsg{Producer: p}, t0.Add(time.Second))
	sameMap(t, "participants", s.Participants(r), map[string]string{"x": "b", "v": "c"})
	sameMap(t, "producers", s.Producers(r), map[string]string{"P": "b"})
	if got := s.Tick(t0.Add(time.Minute)); got != nil {
		t.Fatalf("nobody left, yet: %+v", got)
	}
	sameMap(t, "participants a minute on", s.Participants(r), map[string]string{"x": "b", "v": "c"})

	s.Close(r) // the fenced copy, a's last participant in the room, went
	sameMap(t, "participants of the closed room", s.Participants(r), map[string]string{})
	s.Open(r)
	expect(t, s, r, b(20), bPart, t0.Add(2*time.Minute),
		Supersede{r, x, "b"}, AddRemoteParticipant{r, x, "b"}, MoveProducer{r, p, "b"})
	sameMap(t, "participants after the room opened again", s.Participants(r), map[string]string{"x": "b"})
}
