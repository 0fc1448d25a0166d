package cluster

import (
	"reflect"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// TestRoomStateParticipantUpdated: an update of a remote participant (its metadata) is stamped
// as its join: a newer one changes the copy, a late one or one after the leave nothing; an
// update of an unknown participant adds it; a sync that lists a changed participant updates it
// (the update was lost); the room API's mute keeps its byServer.
func TestRoomStateParticipantUpdated(t *testing.T) {
	a1 := stamper("a", "1")
	const r = "room"
	with := func(p node.ParticipantInfo, m string) node.ParticipantInfo { p.Metadata = m; return p }
	now := time.Unix(1000, 0)
	s := NewRoomState()
	s.Open(r)
	for i, st := range []step{
		{a1(1), ParticipantJoinedMsg{Participant: part("x")}, []Effect{ReplaceIdentity{r, part("x"), nil}, AddRemoteParticipant{r, part("x"), "a"}}},
		{a1(3), ParticipantUpdatedMsg{Participant: with(part("x"), "m3")}, []Effect{UpdateRemoteParticipant{r, with(part("x"), "m3"), "a"}}},
		{a1(2), ParticipantUpdatedMsg{Participant: with(part("x"), "m2")}, nil}, // late
		{a1(4), ParticipantUpdatedMsg{Participant: with(part("y"), "my")}, []Effect{AddRemoteParticipant{r, with(part("y"), "my"), "a"}}},
		{a1(5), ParticipantLeftMsg{ID: "x"}, []Effect{RemoveRemoteParticipant{r, "x"}}},
		{a1(4), ParticipantUpdatedMsg{Participant: with(part("x"), "m4")}, nil}, // sent before the leave
		{a1(6), RoomSyncMsg{Participants: []node.ParticipantInfo{with(part("y"), "lost")}}, []Effect{UpdateRemoteParticipant{r, with(part("y"), "lost"), "a"}}},
		{a1(7), RoomSyncMsg{Participants: []node.ParticipantInfo{with(part("y"), "lost")}}, nil}, // unchanged
		{a1(8), ProducerAddedMsg{Producer: prod("P")}, []Effect{AddRemoteProducer{r, prod("P"), "a"}}},
		{a1(9), ProducerMutedMsg{ID: "P", Muted: true, ByServer: true}, []Effect{SetRemoteMuted{r, "P", true, true}}},
	} {
		if got := s.Apply(r, st.from, st.msg, now); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d (%T): effects %+v, want %+v", i, st.msg, got, st.want)
		}
	}
}

// TestRoomMetaWire: the messages of the room API survive their envelopes; a participant's
// metadata counts in the sync reply's budget.
func TestRoomMetaWire(t *testing.T) {
	s := NewStamper("a", "1", &fakeClock{})
	for _, m := range []RoomMsg{
		ParticipantUpdatedMsg{Participant: node.ParticipantInfo{ID: "x", Identity: "i", JoinedAt: 5, Metadata: `{"a":1}`}},
		ProducerMutedMsg{ID: "P", Muted: true, ByServer: true},
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
	if _, err := DecodeRoomMsg(Envelope{Type: evParticipantUpdated, Body: []byte(`{"identity":"no id"}`)}); err == nil {
		t.Error("an update without a participant id accepted")
	}
	small, big := part("x"), part("x")
	big.Metadata = string(make([]byte, 4096))
	if participantSize(big)-participantSize(small) != 4096 {
		t.Error("metadata not counted in the sync budget")
	}
}
