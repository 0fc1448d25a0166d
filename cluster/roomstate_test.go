package cluster

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// These tests drive RoomState directly: stamps are written out, time is a value.

func part(id string) node.ParticipantInfo { return node.ParticipantInfo{ID: id, Identity: "who-" + id} }
func prod(id string) node.ProducerInfo {
	return node.ProducerInfo{ID: id, Participant: "p", Kind: "audio", Codec: "audio/opus"}
}

// stamper numbers the messages of one incarnation of a node.
func stamper(nodeID, inc string) func(seq uint64) Stamp {
	return func(seq uint64) Stamp { return Stamp{Node: nodeID, Inc: inc, Seq: seq} }
}

func muted(p node.ProducerInfo) node.ProducerInfo { p.Muted = true; return p }

// step is one message fed to RoomState and the effects it must return.
type step struct {
	from Stamp
	msg  RoomMsg
	want []Effect
}

func TestRoomStateApply(t *testing.T) {
	a1 := stamper("a", "1")
	a2 := stamper("a", "2")
	b1 := stamper("b", "1")
	const r = "room"
	for _, c := range []struct {
		name  string
		steps []step
		parts map[string]string // expected at the end: participant -> node
		prods map[string]string // producer -> origin
	}{
		{"add and remove", []step{
			{a1(1), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "a"}}},
			{a1(2), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a1(3), ProducerMutedMsg{ID: "P", Muted: true}, []Effect{SetRemoteMuted{r, "P", true, false}}},
			{a1(4), ProducerRemovedMsg{ID: "P"}, []Effect{RemoveRemoteProducer{r, "P"}}},
			{a1(5), ParticipantLeftMsg{ID: "x"}, []Effect{RemoveRemoteParticipant{r, "x"}}},
		}, map[string]string{}, map[string]string{}},
		{"duplicates change nothing", []step{
			{a1(1), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a1(1), ProducerAddedMsg{Producer: prod("P")}, nil},
			{a1(2), ProducerRemovedMsg{ID: "P"}, []Effect{RemoveRemoteProducer{r, "P"}}},
			{a1(2), ProducerRemovedMsg{ID: "P"}, nil},
			{a1(1), ProducerAddedMsg{Producer: prod("P")}, nil}, // a replay does not resurrect it
		}, map[string]string{}, map[string]string{}},
		{"a removal overtaking its addition", []step{
			{a1(2), ParticipantLeftMsg{ID: "x"}, nil},
			{a1(1), ParticipantJoinedMsg{Participant: part("x")}, nil},
			{a1(4), ProducerMutedMsg{ID: "P", Muted: true}, nil}, // unknown producer: nothing
			{a1(3), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a1(2), ProducerMutedMsg{ID: "P", Muted: true}, nil}, // older than the addition
		}, map[string]string{}, map[string]string{"P": "a"}},
		{"a new incarnation wipes the old one's state, whose late messages are ignored", []step{
			{a1(1), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "a"}}},
			{a1(2), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a2(1), ProducerAddedMsg{Producer: prod("Q")}, []Effect{RemoveRemoteProducer{r, "P"}, RemoveRemoteParticipant{r, "x"}, AddRemoteProducer{r, prod("Q"), "a"}}},
			{a1(3), ProducerAddedMsg{Producer: prod("R")}, nil},
		}, map[string]string{}, map[string]string{"Q": "a"}},
		{"a sync adds what it lists and removes what it lacks, of its node only", []step{
			{a1(1), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a1(2), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "a"}}},
			{b1(1), ProducerAddedMsg{Producer: prod("B")}, []Effect{AddRemoteProducer{r, prod("B"), "b"}}},
			{a1(5), ParticipantJoinedMsg{Participant: part("late")}, []Effect{ReplaceIdentity{r, part("late"), nil}, AddRemoteParticipant{r, part("late"), "a"}}},
			{a1(4), RoomSyncMsg{Participants: []node.ParticipantInfo{part("x"), part("y")}, Producers: []node.ProducerInfo{prod("S")}},
				[]Effect{AddRemoteParticipant{r, part("y"), "a"}, AddRemoteProducer{r, prod("S"), "a"}, RemoveRemoteProducer{r, "P"}}},
			{a1(3), ProducerAddedMsg{Producer: prod("P")}, nil}, // older than the snapshot
		}, map[string]string{"x": "a", "y": "a", "late": "a"}, map[string]string{"S": "a", "B": "b"}},
		{"a sync applies a mute whose message was lost", []step{
			{a1(1), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
			{a1(3), RoomSyncMsg{Producers: []node.ProducerInfo{muted(prod("P"))}}, []Effect{SetRemoteMuted{r, "P", true, false}}},
			{a1(4), RoomSyncMsg{Producers: []node.ProducerInfo{muted(prod("P"))}}, nil},
		}, map[string]string{}, map[string]string{"P": "a"}},
		{"a session resumed on another node", []step{
			{a1(1), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "a"}}},
			{b1(1), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "b"}}},
			{a1(2), ParticipantLeftMsg{ID: "x"}, nil}, // a's leave does not remove b's session
		}, map[string]string{"x": "b"}, map[string]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewRoomState()
			s.Open(r)
			now := time.Unix(100, 0)
			for i, st := range c.steps {
				if got := s.Apply(r, st.from, st.msg, now); !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d %T: got %+v, want %+v", i, st.msg, got, st.want)
				}
			}
			if got := s.Participants(r); !reflect.DeepEqual(got, c.parts) {
				t.Errorf("participants %v, want %v", got, c.parts)
			}
			if got := s.Producers(r); !reflect.DeepEqual(got, c.prods) {
				t.Errorf("producers %v, want %v", got, c.prods)
			}
		})
	}
}

// TestRoomStateNodeGone: a node's departure removes its participants and producers in every
// room, nobody else's; its same incarnation may come back, a retired one may not.
func TestRoomStateNodeGone(t *testing.T) {
	s := NewRoomState()
	s.Open("r1")
	s.Open("r2")
	now := time.Unix(100, 0)
	a := Stamp{Node: "a", Inc: "1"}
	b := Stamp{Node: "b", Inc: "1", Seq: 1}
	at := func(seq uint64) Stamp { a.Seq = seq; return a }
	s.Apply("r1", at(1), ProducerAddedMsg{Producer: prod("P")}, now)
	s.Apply("r2", at(2), ParticipantJoinedMsg{Participant: part("x")}, now)
	s.Apply("r2", at(3), ParticipantLeftMsg{ID: "gone"}, now) // a tombstone: no effect when wiped
	s.Apply("r2", b, ProducerAddedMsg{Producer: prod("B")}, now)
	want := []Effect{RemoveRemoteProducer{"r1", "P"}, RemoveRemoteParticipant{"r2", "x"}}
	if got := s.NodeGone("a", now); !reflect.DeepEqual(got, want) {
		t.Fatalf("node gone: %+v, want %+v", got, want)
	}
	if got := s.NodeGone("a", now); got != nil {
		t.Fatalf("gone twice: %+v", got)
	}
	if got := s.Producers("r2"); !reflect.DeepEqual(got, map[string]string{"B": "b"}) {
		t.Fatalf("b's producer: %v", got)
	}
	if got := s.Apply("r1", at(4), ProducerAddedMsg{Producer: prod("P")}, now); len(got) != 1 {
		t.Fatalf("the same incarnation back after a partition: %+v", got)
	}
	s.Apply("r1", Stamp{Node: "a", Inc: "2", Seq: 1}, ParticipantLeftMsg{ID: "nobody"}, now)
	if got := s.Apply("r1", at(5), ProducerAddedMsg{Producer: prod("Q")}, now); got != nil {
		t.Fatalf("a retired incarnation: %+v", got)
	}
	if got := s.Apply("closed", at(6), ProducerAddedMsg{Producer: prod("Z")}, now); got != nil {
		t.Fatalf("a room not open here: %+v", got)
	}
}

// TestRoomStateTombstones: a tombstone hides a late addition for TombstoneTTL, then goes.
func TestRoomStateTombstones(t *testing.T) {
	s := NewRoomState()
	s.Open("r")
	now := time.Unix(100, 0)
	s.Apply("r", Stamp{"a", "1", 2}, ProducerRemovedMsg{ID: "P"}, now)
	s.Tick(now.Add(TombstoneTTL))
	if got := s.Apply("r", Stamp{"a", "1", 1}, ProducerAddedMsg{Producer: prod("P")}, now); got != nil {
		t.Fatalf("late addition within the TTL: %+v", got)
	}
	s.Tick(now.Add(TombstoneTTL + time.Second))
	s.mu.Lock()
	n := len(s.rooms["r"].producers)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d tombstones left after the TTL", n)
	}
}

// TestRoomMsgWire: every room message survives its envelope, with the body the wire had
// before RoomState (joinedBody, idBody, ProducerInfo, mutedBody, syncReply).
func TestRoomMsgWire(t *testing.T) {
	s := NewStamper("a", "1", &fakeClock{})
	for _, m := range []RoomMsg{
		ParticipantJoinedMsg{Participant: part("x"), Replaces: []string{"old"}},
		ParticipantJoinedMsg{Participant: partAt("x", 2), Resumed: true},
		ProducerAddedMsg{Producer: prodAt("P", 2)},
		ParticipantLeftMsg{ID: "x"},
		ProducerAddedMsg{Producer: prod("P")},
		ProducerRemovedMsg{ID: "P", Participant: "x"},
		ProducerMutedMsg{ID: "P", Muted: true},
		RoomSyncMsg{Participants: []node.ParticipantInfo{part("x")}, Producers: []node.ProducerInfo{prod("P")}},
	} {
		b, err := SealRoomMsg(s, m)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRoomMsg(e)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%T: %+v %v", m, got, err)
		}
	}
	for _, bad := range []Envelope{{Type: evMessage, Body: []byte(`{}`)}, {Type: evProducerAdded, Body: []byte(`{}`)}, {Type: evParticipantLeft, Body: []byte(`[`)}} {
		if _, err := DecodeRoomMsg(bad); err == nil {
			t.Errorf("%s %s accepted", bad.Type, bad.Body)
		}
	}
}

// TestSnapshotBounded: a node's part of a big room lists every producer and publisher, then
// the other participants while they fit; a partial snapshot removes none of the participants
// it omits, and their number still shows in Counts.
func TestSnapshotBounded(t *testing.T) {
	var parts []node.ParticipantInfo
	for i := range 5000 {
		parts = append(parts, part(fmt.Sprintf("viewer-%04d", i)))
	}
	parts = append(parts, part("p")) // the publisher, last
	snap := Snapshot(parts, []node.ProducerInfo{prod("P")}, SyncBudget)
	if !snap.Partial || snap.Total != len(parts) || len(snap.Producers) != 1 || snap.Participants[0].ID != "p" {
		t.Fatalf("partial %v, total %d, %d producers, first %q", snap.Partial, snap.Total, len(snap.Producers), snap.Participants[0].ID)
	}
	b, err := SealRoomMsg(NewStamper("a", "1", WallClock{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 2*SyncBudget || len(snap.Participants) < 100 {
		t.Fatalf("sync reply of %d bytes, %d participants listed", len(b), len(snap.Participants))
	}
	e, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeRoomMsg(e); err != nil || !reflect.DeepEqual(m, snap) {
		t.Fatalf("round trip: %v", err)
	}
	if small := Snapshot(parts[:10], nil, SyncBudget); small.Partial || len(small.Participants) != 10 {
		t.Fatalf("small room: partial %v, %d listed", small.Partial, len(small.Participants))
	}

	const r = "town hall"
	s := NewRoomState()
	s.Open(r)
	now := time.Unix(100, 0)
	a := stamper("a", "1")
	s.Apply(r, a(1), ParticipantJoinedMsg{Participant: part("viewer-4999")}, now) // omitted by the snapshot
	s.Apply(r, a(2), ParticipantJoinedMsg{Participant: part("gone")}, now)
	s.Apply(r, a(3), snap, now)
	got := s.Participants(r)
	if got["viewer-4999"] != "a" || got["p"] != "a" || got["gone"] != "a" {
		t.Fatalf("after a partial snapshot: viewer-4999 %q, p %q, gone %q", got["viewer-4999"], got["p"], got["gone"])
	}
	if c := s.Counts(r); c["a"] != len(parts) {
		t.Fatalf("counts %v, want a: %d", c, len(parts))
	}
	// A complete snapshot later: what it lacks is gone, and the count is what is known.
	s.Apply(r, a(4), Snapshot(parts[:2], nil, SyncBudget), now)
	if got := s.Participants(r); len(got) != 2 {
		t.Fatalf("after a complete snapshot: %v", got)
	}
	if c := s.Counts(r); c["a"] != 2 {
		t.Fatalf("counts %v, want a: 2", c)
	}
}
