package node

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// The room API acts on a node through the functions of this file: the cluster layer asks each
// node to act on its own sessions, and each tells its own participants.

// Reasons of the closed notification (EventClosed); the signaling layer closes the connection
// with the close code of each (signal/proto: ReasonReplaced and CloseReplaced, and so on). A
// client must not reconnect on its own after any of them.
const (
	ReasonReplaced    = "replaced"     // a newer session of the identity joined
	ReasonRemoved     = "removed"      // the room API removed the participant
	ReasonRoomDeleted = "room_deleted" // the room API deleted the room
)

// Notifications of the room API's changes (PROTOCOL.md).
const (
	EventParticipantUpdated = "participantUpdated"
	EventRoomUpdated        = "roomUpdated"
	EventUnmuteRequested    = "unmuteRequested"
)

// DefaultAPIEmptyTimeout is how long a room opened by the room API (OpenRoom) without an empty
// timeout of its own stays open with nobody in it.
const DefaultAPIEmptyTimeout = 300 // seconds

// errMutedByModerator refuses a publisher's own unmute of a producer the room API muted. It is
// ErrForbidden (the wire code forbidden) with a message of its own.
type errMutedByModerator struct{}

func (errMutedByModerator) Error() string        { return "muted by a moderator" }
func (errMutedByModerator) Is(target error) bool { return target == ErrForbidden }

// ErrMutedByModerator: the publisher may not unmute a producer the room API muted until the room
// API asks it to (MuteByServer with muted false). errors.Is(ErrMutedByModerator, ErrForbidden).
var ErrMutedByModerator error = errMutedByModerator{}

// OpenRoom opens room name here with settings s (created true), or, when it is open, updates
// its settings from s (created false). ErrDraining; the --max-rooms limit as Join has it.
// A room opened here with nobody in it stays open for its empty timeout (DefaultAPIEmptyTimeout
// seconds when s has none) and closes then unless someone joined. A draining node opens no room
// (ErrDraining) but still updates an open one.
func (n *Node) OpenRoom(name string, s RoomSettings) (r *Room, created bool, err error) {
	if s.EmptyTimeout <= 0 {
		s.EmptyTimeout = DefaultAPIEmptyTimeout
	}
	n.mu.Lock()
	if r = n.rooms[name]; r != nil {
		n.mu.Unlock()
		r.replaceSettings(s)
		return r, false, nil
	}
	if n.draining.Load() {
		n.mu.Unlock()
		return nil, false, ErrDraining
	}
	if n.opts.Limits.Rooms >= 0 && len(n.rooms) >= n.opts.Limits.Rooms {
		n.mu.Unlock()
		return nil, false, fmt.Errorf("%w (%d)", ErrTooManyRooms, n.opts.Limits.Rooms)
	}
	r = newRoom(name, n, n.leastLoaded())
	now := time.Now().UnixMilli()
	s.CreatedAt, s.UpdatedAt = now, now
	r.settings = s
	r.opened = true
	n.rooms[name] = r
	n.identities[name] = make(map[string]*Participant)
	n.armEmptyLocked(r)
	n.mu.Unlock()
	n.log.Debug("room opened by the room API", "room", name, "worker", r.home.index)
	n.emit(RoomOpened{Room: r}) // the cluster follows the room: other nodes learn its settings
	return r, true, nil
}

// replaceSettings sets the room's metadata and limits from s (its creation time stays), and
// tells the local participants of a metadata change.
func (r *Room) replaceSettings(s RoomSettings) {
	r.UpdateSettings(SettingsUpdate{Metadata: &s.Metadata, MaxParticipants: &s.MaxParticipants, EmptyTimeout: &s.EmptyTimeout})
}

// SettingsUpdate: the fields present change.
type SettingsUpdate struct {
	Metadata                      *string
	MaxParticipants, EmptyTimeout *int
}

// UpdateSettings changes the room's settings here; a metadata change notifies the local
// participants (roomUpdated). Returns the settings after.
func (r *Room) UpdateSettings(u SettingsUpdate) RoomSettings {
	r.mu.Lock()
	s := r.settings
	old := s.Metadata
	if u.Metadata != nil {
		s.Metadata = *u.Metadata
	}
	if u.MaxParticipants != nil {
		s.MaxParticipants = max(0, *u.MaxParticipants)
	}
	if u.EmptyTimeout != nil {
		s.EmptyTimeout = max(0, *u.EmptyTimeout)
	}
	// The version of the change: a sync from another node brings older settings back never.
	s.UpdatedAt = max(time.Now().UnixMilli(), r.settings.UpdatedAt+1)
	timeout := s.EmptyTimeout != r.settings.EmptyTimeout
	r.settings = s
	r.mu.Unlock()
	if timeout { // an empty room waits for its new timeout, from now
		n := r.node
		n.mu.Lock()
		if r.emptyTimer != nil && n.rooms[r.name] == r {
			n.armEmptyLocked(r)
		}
		n.mu.Unlock()
	}
	if s.Metadata != old {
		r.broadcast(nil, EventRoomUpdated, map[string]string{"metadata": s.Metadata})
	}
	return s
}

// AdoptSettings takes the room's settings from another node (its sync reply) when they are newer
// than this node's (RoomSettings.UpdatedAt), and the earlier creation time; a metadata change
// notifies the local participants. It tells whether the settings changed.
func (r *Room) AdoptSettings(s RoomSettings) bool {
	r.mu.Lock()
	cur := r.settings
	next := cur
	if s.UpdatedAt > cur.UpdatedAt {
		next = s
		next.CreatedAt = cur.CreatedAt
	}
	if s.CreatedAt > 0 && s.CreatedAt < next.CreatedAt {
		next.CreatedAt = s.CreatedAt
	}
	r.settings = next
	r.mu.Unlock()
	if next.Metadata != cur.Metadata {
		r.broadcast(nil, EventRoomUpdated, map[string]string{"metadata": next.Metadata})
	}
	return next != cur
}

// local is the local session of identity in the room, or nil.
func (r *Room) local(identity string) *Participant {
	r.node.mu.Lock()
	defer r.node.mu.Unlock()
	if p := r.node.identities[r.name][identity]; p != nil && p.room == r {
		return p
	}
	return nil
}

// RemoveParticipant closes the local sessions of identity (closed {reason}, then the close code
// of the reason; WHIP/WHEP sessions end). Returns how many.
func (r *Room) RemoveParticipant(identity, reason string) int {
	p := r.local(identity)
	if p == nil {
		return 0
	}
	p.listener.Notify(EventClosed, map[string]string{"reason": reason})
	p.Close()
	return 1
}

// SetParticipantMetadata sets the metadata of identity's local session; everyone in the room,
// on every node, gets participantUpdated. false when identity has no session here.
func (r *Room) SetParticipantMetadata(identity, metadata string) (ParticipantInfo, bool) {
	p := r.local(identity)
	if p == nil {
		return ParticipantInfo{}, false
	}
	p.metadata.Store(&metadata)
	info := p.Info()
	r.broadcast(nil, EventParticipantUpdated, info)
	r.node.emit(ParticipantUpdated{Room: r, Participant: info})
	return info, true
}

// MuteByServer: muted true mutes the local producer of identity and locks it (the publisher's
// own unmute is refused with ErrForbidden until an unmute request); false lifts the lock and
// sends the publisher unmuteRequested, leaving the producer muted. ErrNotFound when identity
// has no such local producer.
func (r *Room) MuteByServer(identity, producerID string, muted bool) (ProducerInfo, error) {
	p := r.local(identity)
	pr := r.producer(producerID)
	if p == nil || pr == nil || pr.publisher() != p {
		return ProducerInfo{}, fmt.Errorf("%w: %q has no producer %q on this node", ErrNotFound, identity, producerID)
	}
	pr.muteMu.Lock()
	locked := pr.serverMuted
	pr.serverMuted = muted
	changed := muted && !pr.muted.Swap(true)
	isMuted := pr.muted.Load()
	pr.muteMu.Unlock()
	switch {
	case muted && (changed || !locked): // everyone learns that the server holds it muted now
		r.broadcast(nil, EventProducerMuted, map[string]any{"id": pr.id, "muted": true, "byServer": true})
		r.node.emit(ProducerMuted{Room: r, ID: pr.id, Muted: true, ByServer: true})
	case !muted && isMuted:
		p.listener.Notify(EventUnmuteRequested, map[string]string{"producer": pr.id})
	}
	return pr.Info(), nil
}

// ServerMessage delivers a message notification {"from":"","identity":"","data":data} to the
// local participants with the identities listed (all when empty). Returns how many.
func (r *Room) ServerMessage(data json.RawMessage, identities []string) int {
	sent := 0
	for _, p := range r.others(nil) {
		if len(identities) == 0 || slices.Contains(identities, p.identity) {
			p.listener.Notify(EventMessage, messageNote("", "", data))
			sent++
		}
	}
	return sent
}

// Delete closes every local session of the room (reason room_deleted) and closes the room here
// at once, whatever its empty timeout. Returns how many sessions.
func (r *Room) Delete() int {
	n := r.node
	n.mu.Lock()
	r.deleted = true // a participant leaving from now on closes the room at once
	n.cancelEmptyLocked(r)
	n.mu.Unlock()
	ps := r.others(nil)
	for _, p := range ps {
		p.listener.Notify(EventClosed, map[string]string{"reason": ReasonRoomDeleted})
	}
	for _, p := range ps {
		p.Close()
	}
	n.mu.Lock()
	closed := n.closeIfEmptyLocked(r)
	n.mu.Unlock()
	if closed {
		n.roomClosed(r)
	}
	return len(ps)
}

// emptyTimeout is how long the room stays open here with nobody in it: its own setting, else the
// node's (Options.EmptyRoomTimeout; 0: it closes with its last participant).
func (n *Node) emptyTimeout(r *Room) time.Duration {
	if s := r.Settings(); s.EmptyTimeout > 0 {
		return time.Duration(s.EmptyTimeout) * time.Second
	}
	return n.opts.EmptyRoomTimeout
}

// armEmptyLocked starts the room's empty timer (the room has no participant here). The caller
// holds n.mu. The node owns the timer's goroutine: Close stops the timers and waits for it.
func (n *Node) armEmptyLocked(r *Room) {
	n.cancelEmptyLocked(r)
	d := n.emptyTimeout(r)
	r.emptyGen++
	gen := r.emptyGen
	n.timers.Add(1)
	r.emptyTimer = time.AfterFunc(d, func() {
		defer n.timers.Done()
		n.expire(r, gen)
	})
}

// cancelEmptyLocked stops the room's empty timer, if any (someone joined, or the room goes).
func (n *Node) cancelEmptyLocked(r *Room) {
	if r.emptyTimer == nil {
		return
	}
	if r.emptyTimer.Stop() {
		n.timers.Done() // its function will not run
	}
	r.emptyTimer = nil
	r.emptyGen++ // a timer that fired already finds a newer generation and does nothing
}

// expire closes a room whose empty timer fired, unless someone joined meanwhile.
func (n *Node) expire(r *Room, gen int) {
	n.mu.Lock()
	if r.emptyGen != gen {
		n.mu.Unlock()
		return
	}
	r.emptyTimer = nil
	closed := n.closeIfEmptyLocked(r)
	n.mu.Unlock()
	if closed {
		n.log.Debug("empty room timed out", "room", r.name)
		n.roomClosed(r)
	}
}

// closeIfEmptyLocked removes the room from the node if it is still the node's room of its name
// and has no participant here; the caller holds n.mu and, when it returns true, calls roomClosed
// after unlocking.
func (n *Node) closeIfEmptyLocked(r *Room) bool {
	r.mu.Lock()
	empty := len(r.participants) == 0
	r.mu.Unlock()
	if !empty || n.rooms[r.name] != r {
		return false
	}
	n.cancelEmptyLocked(r)
	delete(n.rooms, r.name)
	delete(n.identities, r.name)
	r.closeRouters()
	return true
}

// roomClosed ends what the room holds of other nodes and tells the cluster layer (no lock held).
func (n *Node) roomClosed(r *Room) {
	r.closeRemote()
	n.emit(RoomClosed{Room: r})
}
