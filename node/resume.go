package node

import (
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// Resumed sessions (PROTOCOL.md, "Resume"). A client whose node died or drains joins another
// node with its session's resume credential; the signaling layer checks it and calls
// JoinResumed with what the credential says. The participant keeps its id and identity; its
// epoch is one more than the credential's, which fences every older copy of the session.
//
// Copies of one session, by participant id, meet in three ways, all decided by the epoch:
//   - a resume here of a session this node still holds (its socket dropped, the client came
//     back): the local copy is superseded by the new participant, which takes its id;
//   - a resume here of a session the room knows on another node: it becomes local, and no local
//     participant hears of a leave or a join;
//   - another node announces a session with a higher epoch than the local copy (the client
//     resumed there; this node was cut off, or the client migrated): Room.Supersede.
//
// A superseded copy stops being a participant at once (the room lists the session where it
// now is) but lingers, its media flowing, until its producers moved to the new session or
// supersededLinger passed (make-before-break: a migrating publisher's old media flows until its
// new media does); its close tells no one it left, and removes only the producers that did not
// move.

// ReasonResumed is the reason of the closed notification a superseded session gets: it resumed
// elsewhere (the signaling layer closes the connection with proto.CloseResumed).
const ReasonResumed = "resumed"

// EventResumable tells a participant's listener that its producers changed without a request
// of its own (one ended): the session's resume credential is out of date. It is not a wire
// notification: the signaling layer sends a fresh credential instead.
const EventResumable = "resumable"

// supersededLinger is how long a superseded copy keeps producers that have not moved.
const supersededLinger = 5 * time.Second

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
// ErrResume. So is another session of the identity, here or elsewhere: the client joined
// afresh since.
func (n *Node) JoinResumed(room, identity string, g Grant, autoSubscribe bool, l Listener, res Resume) (*Participant, error) {
	if res.ID == "" {
		return nil, fmt.Errorf("%w: no participant id", ErrResume)
	}
	return n.join(room, identity, g, autoSubscribe, l, &res)
}

// resumeTake is what a resume takes over: the local copy of the session, or its remote record.
type resumeTake struct {
	local  *Participant
	remote bool
}

// known tells whether the room knew the session (its participants need not hear of it).
func (t resumeTake) known() bool { return t.local != nil || t.remote }

// resumableLocked checks a resume of res by identity against the room's copies of the session
// (old is the identity's local participant, if any). The caller holds n.mu.
func (r *Room) resumableLocked(old *Participant, identity string, res Resume) (resumeTake, error) {
	var t resumeTake
	if r.node.ended.has(res.ID, time.Now()) {
		return t, fmt.Errorf("%w: the session ended", ErrResume)
	}
	if old != nil && old.id != res.ID && old.joined.UnixMilli() >= res.JoinedAt {
		return t, fmt.Errorf("%w: identity %q has a newer session here", ErrResume, identity)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if lp := r.participants[res.ID]; lp != nil {
		if lp.identity != identity || lp.epoch > res.Epoch {
			return t, fmt.Errorf("%w: the credential was used already (epoch %d, the session is at %d)", ErrResume, res.Epoch, lp.epoch)
		}
		t.local = lp
	}
	if rp, ok := r.remote[res.ID]; ok {
		if rp.info.Identity != identity || rp.info.Epoch > res.Epoch {
			return t, fmt.Errorf("%w: the credential was used already (epoch %d, the session is at %d on %s)", ErrResume, res.Epoch, rp.info.Epoch, rp.node)
		}
		t.remote = true
	}
	if id, node := r.otherSessionLocked(res.ID, identity, res.JoinedAt); id != "" {
		return t, fmt.Errorf("%w: identity %q has a newer session on %s", ErrResume, identity, node)
	}
	return t, nil
}

// otherSessionLocked finds a session of identity on another node, other than session id, that
// joined at or after joinedAt (session id's first join): the client joined afresh since, which
// replaced session id (a resume of it must not replace the new one back). An older one is
// replaced by the resume as by any join. The caller holds r.mu.
func (r *Room) otherSessionLocked(id, identity string, joinedAt int64) (string, string) {
	for rid, rp := range r.remote {
		if rp.info.Identity == identity && rid != id && rp.info.JoinedAt >= joinedAt {
			return rid, rp.node
		}
	}
	return "", ""
}

// fencedAfterSync tells whether the room, synced with the other nodes after p's join opened
// it, holds a newer copy of p's session or another session of its identity, or already
// superseded p.
func (r *Room) fencedAfterSync(p *Participant) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.remote[p.id]
	other, _ := r.otherSessionLocked(p.id, p.identity, p.joined.UnixMilli())
	return p.superseded || (ok && rp.info.Epoch >= p.epoch) || other != ""
}

// Epoch is the session's epoch (ParticipantInfo.Epoch).
func (p *Participant) Epoch() uint64 { return p.epoch }

// Resumable lists the participant's producers as a resume credential carries them (id, kind,
// mid): its live producers, and those of the session it resumed that it has not published again
// yet.
func (p *Participant) Resumable() []ProducerInfo {
	p.mu.Lock()
	live := make([]*Producer, 0, len(p.byMid))
	for _, pr := range p.byMid {
		live = append(live, pr)
	}
	ids := make(map[string]bool, len(live))
	for _, pr := range live {
		ids[pr.id] = true
	}
	// A producer of the resumed session published again is live now: it leaves the list for
	// good (unpublished later, it is not offered back).
	kept := p.resumed[:0]
	for _, info := range p.resumed {
		if !ids[info.ID] {
			kept = append(kept, info)
		}
	}
	p.resumed = kept
	out := make([]ProducerInfo, 0, len(live)+len(kept))
	out = append(out, kept...)
	p.mu.Unlock()
	for _, pr := range live {
		info := pr.Info() // the mid of its current source (an adopted producer's may be new)
		out = append(out, ProducerInfo{ID: info.ID, Kind: info.Kind, Mid: info.Mid, Participant: p.id})
	}
	return out
}

// Supersede fences the local copy of participant info.ID if info (now on node nodeID) has a
// higher epoch: the local copy stops being a participant here (the room now knows it as remote
// on nodeID, with no participantLeft or participantJoined to anyone). Its session is told
// closed "resumed" and closed once its producers moved (MoveProducer) or after a short linger
// (make-before-break: a migrating publisher's old media flows until its new media does).
func (r *Room) Supersede(info ParticipantInfo, nodeID string) {
	n := r.node
	n.mu.Lock()
	r.mu.Lock()
	p := r.participants[info.ID]
	if p == nil || p.epoch >= info.Epoch || p.superseded {
		r.mu.Unlock()
		n.mu.Unlock()
		return
	}
	p.superseded = true
	delete(r.participants, p.id)
	r.remote[info.ID] = remoteParticipant{info: info, node: nodeID}
	r.mu.Unlock()
	if n.identities[r.name][p.identity] == p {
		delete(n.identities[r.name], p.identity)
	}
	n.mu.Unlock()
	p.log.Info("session resumed on another node: superseded", "node", nodeID, "epoch", info.Epoch)
	p.fence()
}

// fence ends a superseded copy: its session is told why, and it closes once its producers moved
// or after supersededLinger. The goroutine that waits is the node's (Close waits for it), not
// the participant's: it closes the participant, which waits for its own.
func (p *Participant) fence() {
	p.listener.Notify(EventClosed, map[string]string{"reason": ReasonResumed})
	n := p.node
	n.timers.Add(1)
	go func() {
		defer n.timers.Done()
		deadline := time.NewTimer(supersededLinger)
		defer deadline.Stop()
		// Polled: the producers leave through MoveProducer, on the new session's publish, which
		// has no reason to know of this copy; a few checks in a few seconds of a rare event.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for !p.producerless() || p.stillViewing() {
			select {
			case <-deadline.C:
				p.Close()
				return
			case <-p.done:
				return
			case <-n.stop: // the node closes: no longer in the room, Node.Close cannot see it
				p.Close()
				return
			case <-tick.C:
			}
		}
		p.Close()
	}()
}

// Superseded tells whether a newer copy of the session took over (the node closes this one
// once its producers moved: its signaling connection's end must not close it sooner).
func (p *Participant) Superseded() bool {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.superseded
}

// stillViewing tells whether the participant's receive transport still carries consumers to a
// client that has not closed it: a migrating viewer's old media flows until its new media does
// (make-before-break), and the copy goes when the client closes the old transport or at the
// linger's end.
func (p *Participant) stillViewing() bool {
	p.mu.Lock()
	recv, consumers := p.recv, len(p.consumers)
	p.mu.Unlock()
	if recv == nil || consumers == 0 {
		return false
	}
	switch recv.pc.ConnectionState() {
	case webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateDisconnected:
		return false
	}
	return true
}

// producerless tells whether the participant has no producer left (all moved away or ended).
func (p *Participant) producerless() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byMid) == 0
}

// Linger keeps a participant whose client went away without leaving (its signaling connection
// dropped) for grace, so that a resume of its session, here or on another node, takes it over
// without anyone hearing of a leave; then it closes (a superseded one already did). The timer
// is the node's: Node.Close ends it.
func (p *Participant) Linger(grace time.Duration) {
	if grace <= 0 {
		p.Close()
		return
	}
	n := p.node
	n.timers.Add(1)
	go func() {
		defer n.timers.Done()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			p.Close()
		case <-p.done:
		case <-n.stop:
		}
	}()
}

// endedMemory is how long a node remembers a session that ended here (it left, or its client
// did not come back within the grace): as long as the session's credentials are valid.
const endedMemory = 5 * time.Minute

// endedSessions are the participant ids of sessions that ended here, oldest first: a resume of
// one is refused (a credential is usable once, and not after its session left). Guarded by
// the node's mu.
type endedSessions struct {
	ids   map[string]time.Time
	order []string
}

func (e *endedSessions) add(id string, now time.Time) {
	if e.ids == nil {
		e.ids = make(map[string]time.Time)
	}
	for len(e.order) > 0 && now.Sub(e.ids[e.order[0]]) > endedMemory {
		delete(e.ids, e.order[0])
		e.order = e.order[1:]
	}
	if _, ok := e.ids[id]; !ok {
		e.order = append(e.order, id)
	}
	e.ids[id] = now
}

func (e *endedSessions) has(id string, now time.Time) bool {
	at, ok := e.ids[id]
	return ok && now.Sub(at) <= endedMemory
}
