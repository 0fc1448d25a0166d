package cluster

import (
	"encoding/json"

	"github.com/cascade-sfu/cascade/node"
)

// RoomMsg is a room-state message from another node, opened from its envelope: one of
// ParticipantJoinedMsg, ParticipantUpdatedMsg, ParticipantLeftMsg, ProducerAddedMsg,
// ProducerRemovedMsg, ProducerMutedMsg and RoomSyncMsg. Application messages, data and relay-tree edges travel on
// the same subject but are not room state: DecodeRoomMsg refuses them.
type RoomMsg interface {
	// wire is the envelope type and the JSON body of the message.
	wire() (typ string, body any)
}

// ParticipantJoinedMsg: a participant joined the sender. Replaces lists the sessions of the
// same identity the sender knew of then (they are older). Resumed: the participant resumed its
// session there (its epoch is above its old copy's), which moves it without a join.
type ParticipantJoinedMsg struct {
	Participant node.ParticipantInfo
	Replaces    []string
	Resumed     bool
}

// ParticipantUpdatedMsg: the room API changed a participant of the sender (its metadata).
type ParticipantUpdatedMsg struct{ Participant node.ParticipantInfo }

// ParticipantLeftMsg: a participant of the sender left.
type ParticipantLeftMsg struct{ ID string }

// ProducerAddedMsg: a participant of the sender published a producer.
type ProducerAddedMsg struct{ Producer node.ProducerInfo }

// ProducerRemovedMsg: a producer of the sender ended.
type ProducerRemovedMsg struct{ ID, Participant string }

// ProducerMutedMsg: a producer of the sender was muted or unmuted; ByServer: by the room API.
type ProducerMutedMsg struct {
	ID       string
	Muted    bool
	ByServer bool
}

// RoomSyncMsg is the sender's whole part of a room (a sync reply): its participants and its
// producers, as of the envelope's sequence number. What the receiver holds of the sender and
// the snapshot lacks is gone.
//
// A node with more participants in the room than fit in SyncBudget lists its publishers (the
// participants with producers) and as many others as fit, and says how many it has: Partial,
// so the receiver removes none of its participants the snapshot omits. Producers are always
// listed in full.
type RoomSyncMsg struct {
	Participants []node.ParticipantInfo
	Producers    []node.ProducerInfo
	Partial      bool
	Total        int // the sender's participants in the room
}

// SyncBudget bounds the participants of one sync reply, in bytes of JSON (roughly): with the
// producers, a reply stays well under NATS's payload limit even for a town hall's room.
const SyncBudget = 256 << 10

// Snapshot is a node's part of a room as a sync reply: its producers, its publishers, then its
// other participants while they fit in budget bytes.
func Snapshot(parts []node.ParticipantInfo, prods []node.ProducerInfo, budget int) RoomSyncMsg {
	publishes := make(map[string]bool, len(prods))
	for _, p := range prods {
		publishes[p.Participant] = true
	}
	m := RoomSyncMsg{Producers: prods, Total: len(parts), Participants: make([]node.ParticipantInfo, 0, len(parts))}
	for _, p := range parts {
		if publishes[p.ID] {
			m.Participants = append(m.Participants, p)
			budget -= participantSize(p)
		}
	}
	for _, p := range parts {
		if publishes[p.ID] {
			continue
		}
		if budget -= participantSize(p); budget < 0 {
			m.Partial = true
			break
		}
		m.Participants = append(m.Participants, p)
	}
	return m
}

// participantSize is about the bytes of p in a sync reply's JSON.
func participantSize(p node.ParticipantInfo) int {
	return len(p.ID) + len(p.Identity) + len(p.Metadata) + 64
}

func (m ParticipantJoinedMsg) wire() (string, any) {
	return evParticipantJoined, joinedBody{Participant: m.Participant, Replaces: m.Replaces, Resumed: m.Resumed}
}
func (m ParticipantUpdatedMsg) wire() (string, any) { return evParticipantUpdated, m.Participant }
func (m ParticipantLeftMsg) wire() (string, any)    { return evParticipantLeft, idBody{ID: m.ID} }
func (m ProducerAddedMsg) wire() (string, any)      { return evProducerAdded, m.Producer }
func (m ProducerRemovedMsg) wire() (string, any) {
	return evProducerRemoved, idBody{ID: m.ID, Participant: m.Participant}
}
func (m ProducerMutedMsg) wire() (string, any) {
	return evProducerMuted, mutedBody{ID: m.ID, Muted: m.Muted, ByServer: m.ByServer}
}
func (m RoomSyncMsg) wire() (string, any) {
	return typeSyncReply, syncReply{Participants: m.Participants, Producers: m.Producers, Partial: m.Partial, Total: m.Total}
}

// SealRoomMsg wraps m in an envelope of s (what a node publishes on the room's subject, or
// answers to a sync).
func SealRoomMsg(s *Stamper, m RoomMsg) ([]byte, error) {
	typ, body := m.wire()
	return s.Seal(typ, body)
}

// DecodeRoomMsg opens the body of a room-state envelope; ErrBadEnvelope for a malformed body
// or a type that is not room state.
func DecodeRoomMsg(e Envelope) (RoomMsg, error) {
	var m RoomMsg
	var err error
	switch e.Type {
	case evParticipantJoined:
		var b joinedBody
		if err = json.Unmarshal(e.Body, &b); err == nil && b.Participant.ID != "" {
			m = ParticipantJoinedMsg{Participant: b.Participant, Replaces: b.Replaces, Resumed: b.Resumed}
		}
	case evParticipantUpdated:
		var p node.ParticipantInfo
		if err = json.Unmarshal(e.Body, &p); err == nil && p.ID != "" {
			m = ParticipantUpdatedMsg{Participant: p}
		}
	case evParticipantLeft:
		var b idBody
		if err = json.Unmarshal(e.Body, &b); err == nil && b.ID != "" {
			m = ParticipantLeftMsg{ID: b.ID}
		}
	case evProducerAdded:
		var p node.ProducerInfo
		if err = json.Unmarshal(e.Body, &p); err == nil && p.ID != "" {
			m = ProducerAddedMsg{Producer: p}
		}
	case evProducerRemoved:
		var b idBody
		if err = json.Unmarshal(e.Body, &b); err == nil && b.ID != "" {
			m = ProducerRemovedMsg{ID: b.ID, Participant: b.Participant}
		}
	case evProducerMuted:
		var b mutedBody
		if err = json.Unmarshal(e.Body, &b); err == nil && b.ID != "" {
			m = ProducerMutedMsg{ID: b.ID, Muted: b.Muted, ByServer: b.ByServer}
		}
	case typeSyncReply:
		var b syncReply
		if err = json.Unmarshal(e.Body, &b); err == nil {
			m = RoomSyncMsg{Participants: b.Participants, Producers: b.Producers, Partial: b.Partial, Total: b.Total}
		}
	}
	if m == nil {
		return nil, ErrBadEnvelope
	}
	return m, nil
}
