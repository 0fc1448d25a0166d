package node

// Resumed sessions (PROTOCOL.md, "Resume"). A client whose node died or drains joins another
// node with its session's resume credential; the signaling layer checks it and calls
// JoinResumed with what the credential says. The participant keeps its id and identity; its
// epoch is one more than the credential's, which fences every older copy of the session.

// Resume is what a verified resume credential says of a session.
type Resume struct {
	// ID, Epoch and JoinedAt are the session's (Epoch: the credential's; the resumed session
	// gets Epoch+1).
	ID       string
	Epoch    uint64
	JoinedAt int64
	// Producers are the session's producers when the credential was issued (id, kind, mid):
	// the ids PublishAs may reuse.
	Producers []ProducerInfo
	// Node is the node that issued the credential (the one the client left).
	Node string
}

// JoinResumed is Join for a resumed session: the participant gets res.ID and epoch
// res.Epoch+1. If the room knows the participant (remote, on the node it left), it becomes
// local here without a participantJoined to anyone; a local copy of it (a resume on the same
// node) is superseded. The ParticipantJoined event has Resumed set. A copy of the session with
// an epoch above res.Epoch, here or known on another node, means the credential was used:
// ErrResume.
func (n *Node) JoinResumed(room, identity string, g Grant, autoSubscribe bool, l Listener, res Resume) (*Participant, error) {
	return nil, errTodo
}

// Epoch is the session's epoch (ParticipantInfo.Epoch).
func (p *Participant) Epoch() uint64 { return 0 }

// Resumable lists the participant's producers as a resume credential carries them (id, kind,
// mid): its live producers, and those of the session it resumed that it has not published again
// yet.
func (p *Participant) Resumable() []ProducerInfo { return nil }

// Supersede fences the local copy of participant info.ID if info (now on node nodeID) has a
// higher epoch: the local copy stops being a participant here (the room now knows it as remote
// on nodeID, with no participantLeft or participantJoined to anyone). Its session is told
// closed "resumed" and closed once its producers moved (MoveProducer) or after a short linger
// (make-before-break: a migrating publisher's old media flows until its new media does).
func (r *Room) Supersede(info ParticipantInfo, nodeID string) {}
