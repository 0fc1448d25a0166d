package cluster

import "time"

// DefaultResumeGrace is how long a departed node's participants and producers stay in the rooms
// by default (Options.ResumeGrace): long enough for their clients to notice (the ping deadline,
// 3 s) and resume on another node, short enough that a participant who is really gone does not
// linger.
const DefaultResumeGrace = 10 * time.Second

// Grace (PROTOCOL.md, "Resume"). When a node leaves the cluster without a goodbye (it died, or
// is cut off) or restarts (a new incarnation), its participants and producers are orphans: they
// stay in the rooms, for everyone, for the grace period, so that their sessions resume on
// another node first and the resume moves them (upsert: a higher epoch from another node) with
// no participantLeft, participantJoined, producerRemoved or producerAdded. Tick removes the
// orphans still held by the departed node when their grace is over.
//
// A restarted node is treated like a departed one (its old incarnation's sessions are gone,
// but their clients resume with their credentials, elsewhere or on the restarted node itself):
// an orphan resumed on the new incarnation is moved like one resumed elsewhere, and the new
// incarnation's room sync does not remove the orphans it does not list (graced) before their
// grace ends. With no grace (NewRoomState), both remove at once, as before resumes existed.

// NodeGone orphans everything of a node that left the cluster (or restarted), in every room,
// at now; with no grace it removes it at once and returns the removals. Its incarnation stays
// known: its late messages still merge by sequence number (a partition healed: its room sync
// confirms what it still has), those of a retired incarnation are still ignored.
func (s *RoomState) NodeGone(id string, now time.Time) []Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orphan(id, now)
}

// orphan starts the grace of a node's participants and producers (an orphan already keeps its
// deadline), and forgets its tombstones; with no grace it removes them at once, rooms in name
// order.
func (s *RoomState) orphan(id string, now time.Time) []Effect {
	for _, r := range s.rooms {
		delete(r.totals, id)
	}
	if s.grace <= 0 {
		return s.expire(now, func(from Stamp, _ time.Time) bool { return from.Node == id })
	}
	until := now.Add(s.grace)
	for _, r := range s.rooms {
		orphanAll(r.producers, id, until)
		orphanAll(r.participants, id, until)
	}
	return nil
}

func orphanAll[T any](m map[string]*entry[T], id string, until time.Time) {
	for pid, e := range m {
		switch {
		case e.from.Node != id:
		case e.gone:
			delete(m, pid)
		case e.until.IsZero():
			e.until = until
		}
	}
}

// Tick removes the orphans whose grace is over at now (producers before participants, rooms in
// name order) and returns the removals; it forgets the tombstones older than TombstoneTTL.
func (s *RoomState) Tick(now time.Time) []Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.expire(now, func(_ Stamp, until time.Time) bool { return !until.IsZero() && !now.Before(until) })
	for _, r := range s.rooms {
		prune(r.participants, now)
		prune(r.producers, now)
	}
	return out
}

// expire removes, with no tombstone, the entries that match (by the stamp of their last change
// and their grace deadline), and returns the removals of those that were live.
func (s *RoomState) expire(now time.Time, match func(from Stamp, until time.Time) bool) []Effect {
	var out []Effect
	for _, room := range sortedKeys(s.rooms) {
		r := s.rooms[room]
		for _, pid := range sortedKeys(r.producers) {
			if e := r.producers[pid]; match(e.from, e.until) {
				delete(r.producers, pid)
				if !e.gone {
					out = append(out, RemoveRemoteProducer{Room: room, ID: pid})
				}
			}
		}
		for _, pid := range sortedKeys(r.participants) {
			if e := r.participants[pid]; match(e.from, e.until) {
				delete(r.participants, pid)
				if !e.gone {
					out = append(out, RemoveRemoteParticipant{Room: room, ID: pid})
				}
			}
		}
	}
	return out
}

// graced tells whether e is an orphan of an older incarnation than from's (the node restarted):
// the new incarnation's room sync does not list it, yet its session may still resume there or
// elsewhere within the grace.
func graced[T any](e *entry[T], from Stamp) bool {
	return e != nil && !e.until.IsZero() && e.from.Inc != from.Inc
}

// Orphans lists a room's participants in their grace (their node left), by id, and the node
// each is still held by.
func (s *RoomState) Orphans(room string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	if r := s.rooms[room]; r != nil {
		for id, e := range r.participants {
			if !e.gone && !e.until.IsZero() {
				out[id] = e.from.Node
			}
		}
	}
	return out
}
