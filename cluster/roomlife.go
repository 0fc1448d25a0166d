package cluster

import (
	"sync"

	"github.com/cascade-sfu/cascade/node"
)

// RoomStarted reaches Options.Observer, just before the ParticipantJoined that started the room,
// when this node owns the room's start in the cluster: First is the room's first local
// participant since it opened here, and no remote participant joined before it (StartsRoom).
// It embeds the node event it refines, which makes it a node.Event.
type RoomStarted struct {
	node.RoomOpened
	First node.ParticipantInfo
}

// RoomFinished reaches Options.Observer just after the RoomClosed that finished the room in
// the cluster: the room had a local participant while it was open here, and when it closed no
// remote participant remained (FinishesRoom).
type RoomFinished struct {
	node.RoomClosed
}

// StartsRoom tells whether first, a room's first local participant since the room opened on
// its node, starts the room in the cluster, given the room's remote participants after the
// open's sync: yes unless one of them joined before it (by joinedAt, then by id, so that two
// nodes that see each other's first participant agree). Two nodes that open a room in the same
// instant, before either learns of the other's participant, both say yes.
func StartsRoom(first node.ParticipantInfo, remote []node.ParticipantInfo) bool {
	for _, p := range remote {
		if p.JoinedAt < first.JoinedAt || (p.JoinedAt == first.JoinedAt && p.ID < first.ID) {
			return false
		}
	}
	return true
}

// FinishesRoom tells whether a room that closes on a node finishes it in the cluster: it had a
// local participant while open there (a room created by the room API that nobody joined never
// started) and the other nodes have no participant in it (remote: their counts).
func FinishesRoom(hadLocal bool, remote map[string]int) bool {
	if !hadLocal {
		return false
	}
	for _, n := range remote {
		if n > 0 {
			return false
		}
	}
	return true
}

// roomLife remembers which rooms open here have had a local participant since they opened,
// and, for a room the room API is deleting, whether this node finishes it.
type roomLife struct {
	mu       sync.Mutex
	started  map[*node.Room]bool
	deleted  map[*node.Room]bool
	finishes map[string]finishState // by room name: see roomfinish.go
}

// DeleteFinisher tells whether self finishes a room the room API deletes on every node at once:
// every node closes its part in the same instant, each still counting the others' participants,
// so none would see the room empty. The node with the least id among those with participants
// (self when local, the remote nodes by their counts) finishes it; every node deciding from the
// same view before the delete, exactly one does.
func DeleteFinisher(self string, local int, remote map[string]int) bool {
	owner := ""
	if local > 0 {
		owner = self
	}
	for id, n := range remote {
		if n > 0 && (owner == "" || id < owner) {
			owner = id
		}
	}
	return owner == self
}

// deleting records, before the room API deletes room r here, whether this node finishes it.
func (c *Cluster) deleting(r *node.Room, local int) {
	if c.o.Observer == nil {
		return // finishing reads nothing: keep nothing
	}
	finisher := DeleteFinisher(c.me, local, c.state.Counts(r.Name()))
	c.life.mu.Lock()
	if c.life.deleted == nil {
		c.life.deleted = map[*node.Room]bool{}
	}
	c.life.deleted[r] = finisher
	c.life.mu.Unlock()
}

// finishing is read before the event changes the cluster's state: for a RoomClosed, whether
// the room finishes in the cluster (closeRoom then forgets its remote part).
func (c *Cluster) finishing(ev node.Event) bool {
	e, ok := ev.(node.RoomClosed)
	if !ok || c.o.Observer == nil {
		return false
	}
	c.life.mu.Lock()
	had := c.life.started[e.Room]
	delete(c.life.started, e.Room)
	finisher, deleted := c.life.deleted[e.Room]
	delete(c.life.deleted, e.Room)
	c.life.mu.Unlock()
	if deleted {
		return finisher
	}
	c.mu.Lock()
	s := c.rooms[e.Room.Name()]
	c.mu.Unlock()
	if s != nil && s.r != e.Room {
		return false // the room opened here again meanwhile: it goes on
	}
	if FinishesRoom(had, c.state.Counts(e.Room.Name())) {
		c.noteFinish(e.Room.Name(), true)
		return true
	}
	if had {
		c.waitFinish(e.Room) // the others may be closing in the same instant
	}
	return false
}

// observe hands an event the cluster handled to Options.Observer, with the room's start and
// finish when this node owns them. It holds no lock while it calls the observer.
func (c *Cluster) observe(ev node.Event, finished bool) {
	obs := c.o.Observer
	if obs == nil {
		return
	}
	switch e := ev.(type) {
	case node.ParticipantJoined:
		c.life.mu.Lock()
		if c.life.started == nil {
			c.life.started = map[*node.Room]bool{}
		}
		first := !c.life.started[e.Room]
		c.life.started[e.Room] = true
		c.life.mu.Unlock()
		if first && StartsRoom(e.Participant, c.state.remoteParticipants(e.Room.Name())) {
			obs.Event(RoomStarted{RoomOpened: node.RoomOpened{Room: e.Room}, First: e.Participant})
		}
		obs.Event(ev)
	case node.RoomClosed:
		obs.Event(ev)
		if finished {
			obs.Event(RoomFinished{RoomClosed: e})
		}
	default:
		obs.Event(ev)
	}
}

// remoteParticipants lists a room's remote participants (not the tombstones of those gone).
func (s *RoomState) remoteParticipants(room string) []node.ParticipantInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []node.ParticipantInfo
	if r := s.rooms[room]; r != nil {
		for _, e := range r.participants {
			if !e.gone {
				out = append(out, e.info)
			}
		}
	}
	return out
}
