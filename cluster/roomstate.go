package cluster

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// TombstoneTTL is how long RoomState remembers a removed participant or producer, so that a
// late copy of its addition (reordered behind the removal) does not bring it back.
const TombstoneTTL = time.Minute

// Stamp is where a message comes from: its envelope's sender, incarnation and sequence number.
type Stamp struct {
	Node string
	Inc  string
	Seq  uint64
}

// Stamp is the envelope's origin.
func (e Envelope) Stamp() Stamp { return Stamp{Node: e.Node, Inc: e.Inc, Seq: e.Seq} }

// RoomState is the cluster's view of the rooms open on this node: which participants and which
// producers the other nodes have in each. It is a deterministic state machine: typed room
// messages with their stamps, node departures and the time are fed in (Apply, NodeGone, Tick),
// and it returns the effects on the local rooms; it starts no goroutine, reads no clock and
// sends nothing, so a test or a simulator drives it directly. It is safe for concurrent use.
//
// Every participant and producer remembers the stamp of the last message that changed it (a
// removed one stays as a tombstone for TombstoneTTL): a message of the same incarnation with
// a sequence number not above it is a repeat or a late copy and changes nothing. It also
// remembers the session epoch of each (ParticipantInfo.Epoch, ProducerInfo.Epoch): a message
// with a lower epoch than the entry's is a stale session's and changes nothing, whatever node
// sends it. A node's new incarnation, or its departure (NodeGone), orphans what the node had: it
// stays for the grace period so that resumes land first (grace.go); the old incarnation's late
// messages are ignored from then on.
type RoomState struct {
	mu    sync.Mutex
	grace time.Duration
	rooms map[string]*roomState
	incs  map[string]*incarnations // by node id
}

// incarnations is what RoomState knows of a node's incarnations.
type incarnations struct {
	current string
	retired map[string]bool
}

// roomState is one room's remote part.
type roomState struct {
	participants map[string]*entry[node.ParticipantInfo]
	producers    map[string]*entry[node.ProducerInfo]
	totals       map[string]int // participants of a node whose last snapshot was partial
}

// entry is a remote participant or producer, or the tombstone of one (gone).
type entry[T any] struct {
	from  Stamp // of the last message that changed it
	info  T
	epoch uint64 // the session epoch of info (kept by a tombstone)
	gone  bool
	at    time.Time // when it went
	// until is, for an orphan (its node left or restarted), when its grace ends; zero else.
	until time.Time
}

// NewRoomState returns an empty view whose departed nodes' participants and producers go at
// once (no grace: NewRoomStateGrace).
func NewRoomState() *RoomState { return NewRoomStateGrace(0) }

// NewRoomStateGrace returns an empty view that keeps a departed node's participants and
// producers for grace before it removes them (Tick), so that their sessions can resume on
// another node first.
func NewRoomStateGrace(grace time.Duration) *RoomState {
	return &RoomState{grace: grace, rooms: make(map[string]*roomState), incs: make(map[string]*incarnations)}
}

// Open starts following a room (it opened here), with nothing known of it.
func (s *RoomState) Open(room string) {
	s.mu.Lock()
	s.rooms[room] = &roomState{participants: map[string]*entry[node.ParticipantInfo]{}, producers: map[string]*entry[node.ProducerInfo]{}, totals: map[string]int{}}
	s.mu.Unlock()
}

// Close forgets a room (it closed here; the node dropped its remote part itself).
func (s *RoomState) Close(room string) {
	s.mu.Lock()
	delete(s.rooms, room)
	s.mu.Unlock()
}

// Apply merges message m of room, stamped from, received at now, and returns its effects. A
// message of a room not open here, of this node's own, of a retired incarnation, repeated,
// late or of a stale epoch changes nothing. The first message of a node's new incarnation
// first orphans what the previous one had, in every room (removed at once without a grace).
func (s *RoomState) Apply(room string, from Stamp, m RoomMsg, now time.Time) []Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Effect
	inc := s.incs[from.Node]
	switch {
	case inc == nil:
		s.incs[from.Node] = &incarnations{current: from.Inc, retired: map[string]bool{}}
	case inc.retired[from.Inc]:
		return nil
	case inc.current != from.Inc:
		inc.retired[inc.current] = true
		inc.current = from.Inc
		out = s.orphan(from.Node, now)
	}
	r := s.rooms[room]
	if r == nil {
		return out
	}
	switch m := m.(type) {
	case ParticipantJoinedMsg: // a newer session of the identity may close one here: every time
		p := m.Participant
		if accepted, _ := upsert(r.participants, p.ID, p, p.Epoch, from); accepted {
			if m.Resumed || p.Epoch > 0 { // a resumed session fences its older copies, here too
				out = append(out, Supersede{Room: room, Participant: p, Node: from.Node})
			}
			out = append(out, ReplaceIdentity{Room: room, Participant: p, Replaces: others(m.Replaces, p.ID)},
				AddRemoteParticipant{Room: room, Participant: p, Node: from.Node})
		}
	case ParticipantUpdatedMsg: // stamped as a join: a late update changes nothing
		switch accepted, added := upsert(r.participants, m.Participant.ID, m.Participant, m.Participant.Epoch, from); {
		case added: // its join was lost, or is late: the update describes it whole
			out = append(out, AddRemoteParticipant{Room: room, Participant: m.Participant, Node: from.Node})
		case accepted:
			out = append(out, UpdateRemoteParticipant{Room: room, Participant: m.Participant, Node: from.Node})
		}
	case ParticipantLeftMsg:
		if remove(r.participants, m.ID, from, now) {
			out = append(out, RemoveRemoteParticipant{Room: room, ID: m.ID})
		}
	case ProducerAddedMsg:
		moved := movedFrom(r.producers, m.Producer.ID, from)
		if accepted, _ := upsert(r.producers, m.Producer.ID, m.Producer, m.Producer.Epoch, from); accepted {
			out = append(out, addProducer(room, m.Producer, from.Node, moved))
		}
	case ProducerRemovedMsg:
		if remove(r.producers, m.ID, from, now) {
			out = append(out, RemoveRemoteProducer{Room: room, ID: m.ID})
		}
	case ProducerMutedMsg:
		if e := r.producers[m.ID]; e != nil && !e.gone && e.from.Node == from.Node && newer(e.from, from) { // from its origin only (it may have moved)
			e.from, e.info.Muted = from, m.Muted
			out = append(out, SetRemoteMuted{Room: room, ID: m.ID, Muted: m.Muted, ByServer: m.ByServer})
		}
	case RoomSyncMsg:
		out = append(out, s.merge(room, r, from, m, now)...)
	}
	return out
}

// merge applies a node's snapshot of its part of a room: what it lists is there, what it had
// before the snapshot and no longer lists is gone (but the participants a partial snapshot
// omits).
func (s *RoomState) merge(room string, r *roomState, from Stamp, m RoomSyncMsg, now time.Time) []Effect {
	var out []Effect
	delete(r.totals, from.Node)
	if m.Partial {
		r.totals[from.Node] = m.Total
	}
	listed := map[string]bool{}
	for _, p := range m.Participants {
		listed[p.ID] = true
		var was node.ParticipantInfo
		if e := r.participants[p.ID]; e != nil && !e.gone {
			was = e.info
		}
		switch accepted, added := upsert(r.participants, p.ID, p, p.Epoch, from); {
		case added:
			if p.Epoch > 0 { // a resumed session (a partition healed: this node may hold its old copy)
				out = append(out, Supersede{Room: room, Participant: p, Node: from.Node})
			}
			out = append(out, AddRemoteParticipant{Room: room, Participant: p, Node: from.Node})
		case accepted && p.Epoch > was.Epoch: // resumed on its restarted node: a move, not an update
			out = append(out, Supersede{Room: room, Participant: p, Node: from.Node}, AddRemoteParticipant{Room: room, Participant: p, Node: from.Node})
		case accepted && p != was: // an update lost with the messages
			out = append(out, UpdateRemoteParticipant{Room: room, Participant: p, Node: from.Node})
		}
	}
	for _, p := range m.Producers {
		listed[p.ID] = true
		wasMuted := false
		if e := r.producers[p.ID]; e != nil && !e.gone {
			wasMuted = e.info.Muted
		}
		moved := movedFrom(r.producers, p.ID, from)
		switch accepted, added := upsert(r.producers, p.ID, p, p.Epoch, from); {
		case added, accepted && moved: // moved: to the restarted node it had, too
			out = append(out, addProducer(room, p, from.Node, moved))
		case accepted && p.Muted != wasMuted: // a mute lost with the messages
			out = append(out, SetRemoteMuted{Room: room, ID: p.ID, Muted: p.Muted})
		}
	}
	for _, id := range sortedKeys(r.participants) {
		if !listed[id] && !m.Partial && !graced(r.participants[id], from) && remove(r.participants, id, from, now) {
			out = append(out, RemoveRemoteParticipant{Room: room, ID: id})
		}
	}
	for _, id := range sortedKeys(r.producers) {
		if !listed[id] && !graced(r.producers[id], from) && remove(r.producers, id, from, now) {
			out = append(out, RemoveRemoteProducer{Room: room, ID: id})
		}
	}
	return out
}

// Participants lists a room's remote participants by id, and the node of each.
func (s *RoomState) Participants(room string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	if r := s.rooms[room]; r != nil {
		for id, e := range r.participants {
			if !e.gone {
				out[id] = e.from.Node
			}
		}
	}
	return out
}

// Counts tells how many participants each other node has in a room: those known here, or the
// count of a node's last snapshot when that was partial and larger.
func (s *RoomState) Counts(room string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	if r := s.rooms[room]; r != nil {
		for _, e := range r.participants {
			if !e.gone {
				out[e.from.Node]++
			}
		}
		for n, total := range r.totals {
			out[n] = max(out[n], total)
		}
	}
	return out
}

// Producers lists a room's remote producers by id, and the origin of each.
func (s *RoomState) Producers(room string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	if r := s.rooms[room]; r != nil {
		for id, e := range r.producers {
			if !e.gone {
				out[id] = e.from.Node
			}
		}
	}
	return out
}

// newer tells whether a message stamped from may change what the message stamped last did:
// always for another node (a session resumed there) or incarnation, else by sequence number.
func newer(last, from Stamp) bool {
	return last.Node != from.Node || last.Inc != from.Inc || from.Seq > last.Seq
}

// upsert records that id is (still) there, with info of session epoch: accepted unless the
// message is a repeat, late, or of an older epoch than the entry's (a stale copy of a resumed
// session never moves it back); added if id is new, came back, or moved to from's node. A higher
// epoch is always accepted: the session resumed.
func upsert[T any](m map[string]*entry[T], id string, info T, epoch uint64, from Stamp) (accepted, added bool) {
	e := m[id]
	if e == nil {
		m[id] = &entry[T]{from: from, info: info, epoch: epoch}
		return true, true
	}
	if epoch < e.epoch || epoch == e.epoch && !newer(e.from, from) {
		return false, false
	}
	added = e.gone || e.from.Node != from.Node
	*e = entry[T]{from: from, info: info, epoch: epoch}
	return true, added
}

// movedFrom tells whether id is held, live, by another node or incarnation than from's: a
// producer announced by from then moved (its publisher resumed there).
func movedFrom[T any](m map[string]*entry[T], id string, from Stamp) bool {
	e := m[id]
	return e != nil && !e.gone && (e.from.Node != from.Node || e.from.Inc != from.Inc)
}

// addProducer is the effect of a producer announced by origin: a move when another node held
// it, or when it comes from a resumed session (epoch above 0: this node may hold the stale
// local copy, which the move makes remote), else an addition.
func addProducer(room string, p node.ProducerInfo, origin string, moved bool) Effect {
	if moved || p.Epoch > 0 {
		return MoveProducer{Room: room, Producer: p, Origin: origin}
	}
	return AddRemoteProducer{Room: room, Producer: p, Origin: origin}
}

// others is ids without self: a resumed session's node knew the session's own old copy, which
// it fences (Supersede) rather than replaces.
func others(ids []string, self string) []string {
	if !slices.Contains(ids, self) {
		return ids
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != self {
			out = append(out, id)
		}
	}
	return out
}

// remove records that id of from's node is gone; true if it was there. A removal of an id
// that another node now holds changes nothing; one of an unknown id leaves a tombstone.
func remove[T any](m map[string]*entry[T], id string, from Stamp, now time.Time) bool {
	e := m[id]
	if e == nil {
		m[id] = &entry[T]{from: from, gone: true, at: now}
		return false
	}
	if e.from.Node != from.Node || !newer(e.from, from) {
		return false
	}
	was := !e.gone
	var zero T
	*e = entry[T]{from: from, info: zero, epoch: e.epoch, gone: true, at: now}
	return was
}

func prune[T any](m map[string]*entry[T], now time.Time) {
	for id, e := range m {
		if e.gone && now.Sub(e.at) > TombstoneTTL {
			delete(m, id)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
