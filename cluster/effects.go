package cluster

import "github.com/cascade-sfu/cascade/node"

// Effect is a change RoomState decided for a room open on this node: one of
// AddRemoteParticipant, UpdateRemoteParticipant, RemoveRemoteParticipant, ReplaceIdentity,
// Supersede, AddRemoteProducer, MoveProducer, RemoveRemoteProducer and SetRemoteMuted. The Cluster applies them to the node's rooms, in
// order; a simulator counts them.
type Effect interface{ effectRoom() string }

// AddRemoteParticipant: a participant of another node is in the room (or moved to Node).
type AddRemoteParticipant struct {
	Room        string
	Participant node.ParticipantInfo
	Node        string
}

// UpdateRemoteParticipant: the description of a participant of another node changed (the room
// API set its metadata).
type UpdateRemoteParticipant struct {
	Room        string
	Participant node.ParticipantInfo
	Node        string
}

// RemoveRemoteParticipant: a participant of another node left the room.
type RemoveRemoteParticipant struct{ Room, ID string }

// ReplaceIdentity: a participant joined another node; a local session of the same identity
// that it supersedes (node.Supersedes) closes.
type ReplaceIdentity struct {
	Room        string
	Participant node.ParticipantInfo
	Replaces    []string
}

// Supersede: a participant resumed its session on Node (a higher epoch): a local copy of it
// (this node was cut off, or it migrates away) is fenced and becomes remote on Node, with no
// leave or join (node.Room.Supersede). AddRemoteParticipant follows.
type Supersede struct {
	Room        string
	Participant node.ParticipantInfo
	Node        string
}

// MoveProducer: a producer the room has from another node (or here: its publisher's stale
// session) now comes from Origin; its consumers stay (node.Room.MoveProducer). A producer the
// room does not have yet is added.
type MoveProducer struct {
	Room     string
	Producer node.ProducerInfo
	Origin   string
}

// AddRemoteProducer: a producer of another node (its origin) is in the room.
type AddRemoteProducer struct {
	Room     string
	Producer node.ProducerInfo
	Origin   string
}

// RemoveRemoteProducer: a producer of another node ended.
type RemoveRemoteProducer struct{ Room, ID string }

// SetRemoteMuted: a producer of another node was muted or unmuted; ByServer: by the room API.
type SetRemoteMuted struct {
	Room     string
	ID       string
	Muted    bool
	ByServer bool
}

func (e AddRemoteParticipant) effectRoom() string    { return e.Room }
func (e UpdateRemoteParticipant) effectRoom() string { return e.Room }
func (e RemoveRemoteParticipant) effectRoom() string { return e.Room }
func (e ReplaceIdentity) effectRoom() string         { return e.Room }
func (e AddRemoteProducer) effectRoom() string       { return e.Room }
func (e Supersede) effectRoom() string               { return e.Room }
func (e MoveProducer) effectRoom() string            { return e.Room }
func (e RemoveRemoteProducer) effectRoom() string    { return e.Room }
func (e SetRemoteMuted) effectRoom() string          { return e.Room }

// EffectRoom is the name of the room an effect applies to.
func EffectRoom(e Effect) string { return e.effectRoom() }
