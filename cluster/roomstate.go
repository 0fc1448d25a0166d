package cluster

import (
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
// a sequence number not above it is a repeat or a late copy and changes nothing. A node's new
// incarnation wipes what the old one had; the old one's late messages are ignored from then on.
type RoomState struct {
	mu    sync.Mutex
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
	from Stamp // of the last message that changed it
	info T
	gone bool
	at   time.Time // when it went
}

// NewRoomState returns an empty view.
func NewRoomState() *RoomState {
	return &RoomState{rooms: make(map[string]*roomState), incs: make(map[string]*incarnations)}
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
// message of a room not open here, of this node's own, of a retired incarnation, repeated or
// late changes nothing. The first message of a node's new incarnation first removes what the
// previous one had, in every room.
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
		out = s.wipe(from.Node)
	}
	r := s.rooms[room]
	if r == nil {
		return out
	}
	switch m := m.(type) {
	case ParticipantJoinedMsg: // a newer session of the identity may close one here: every time
		if accepted, _ := upsert(r.participants, m.Participant.ID, m.Participant, from); accepted {
			out = append(out, ReplaceIdentity{Room: room, Participant: m.Participant, Replaces: m.Replaces},
				AddRemoteParticipant{Room: room, Participant: m.Participant, Node: from.Node})
		}
	case ParticipantUpdatedMsg: // stamped as a join: a late update changes nothing
		switch accepted, added := upsert(r.participants, m.Participant.ID, m.Participant, from); {
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
		if accepted, _ := upsert(r.producers, m.Producer.ID, m.Producer, from); accepted {
			out = append(out, AddRemoteProducer{Room: room, Producer: m.Producer, Origin: from.Node})
		}
	case ProducerRemovedMsg:
		if remove(r.producers, m.ID, from, now) {
			out = append(out, RemoveRemoteProducer{Room: room, ID: m.ID})
		}
	case ProducerMutedMsg:
		if e := r.producers[m.ID]; e != nil && !e.gone && newer(e.from, from) {
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
		switch accepted, added := upsert(r.participants, p.ID, p, from); {
		case added:
			out = append(out, AddRemoteParticipant{Room: room, Participant: p, Node: from.Node})
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
		switch accepted, added := upsert(r.producers, p.ID, p, from); {
		case added:
			out = append(out, AddRemoteProducer{Room: room, Producer: p, Origin: from.Node})
		case accepted && p.Muted != wasMuted: // a mute lost with the messages
			out = append(out, SetRemoteMuted{Room: room, ID: p.ID, Muted: p.Muted})
		}
	}
	for _, id := range sortedKeys(r.participants) {
		if !listed[id] && !m.Partial && remove(r.participants, id, from, now) {
			out = append(out, RemoveRemoteParticipant{Room: room, ID: id})
		}
	}
	for _, id := range sortedKeys(r.producers) {
		if !listed[id] && remove(r.producers, id, from, now) {
			out = append(out, RemoveRemoteProducer{Room: room, ID: id})
		}
	}
	return out
}

// NodeGone removes everything of a node that left the cluster (or restarted), in every room.
// Its incarnation stays known: its late messages still merge by sequence number, those of a
// retired incarnation are still ignored.
func (s *RoomState) NodeGone(id string) []Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wipe(id)
}

// wipe removes a node's participants and producers, tombstones included, rooms in name order.
func (s *RoomState) wipe(id string) []Effect {
	var out []Effect
	for _, room := range sortedKeys(s.rooms) {
		r := s.rooms[room]
		delete(r.totals, id)
		for _, pid := range sortedKeys(r.producers) {
			if e := r.producers[pid]; e.from.Node == id {
				delete(r.producers, pid)
				if !e.gone {
					out = append(out, RemoveRemoteProducer{Room: room, ID: pid})
				}
			}
		}
		for _, pid := range sortedKeys(r.participants) {
			if e := r.participants[pid]; e.from.Node == id {
				delete(r.participants, pid)
				if !e.gone {
					out = append(out, RemoveRemoteParticipant{Room: room, ID: pid})
				}
			}
		}
	}
	return out
}

// Tick forgets the tombstones older than TombstoneTTL at now.
func (s *RoomState) Tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rooms {
		prune(r.participants, now)
		prune(r.producers, now)
	}
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

// upsert records that id is (still) there, with info: accepted unless the message is a repeat
// or late, added if id is new, came back, or moved to from's node.
func upsert[T any](m map[string]*entry[T], id string, info T, from Stamp) (accepted, added bool) {
	e := m[id]
	if e == nil {
		m[id] = &entry[T]{from: from, info: info}
		return true, true
	}
	if !newer(e.from, from) {
		return false, false
	}
	added = e.gone || e.from.Node != from.Node
	*e = entry[T]{from: from, info: info}
	return true, added
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
	*e = entry[T]{from: from, info: zero, gone: true, at: now}
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
