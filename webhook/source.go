package webhook

import (
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// Sink takes the events a Source makes (a *Sender). Send must not block.
type Sink interface {
	Send(Event)
}

// Source turns what the cluster layer observes on this node (cluster.Options.Observer) into
// webhook events for a Sink: the local participants' joins and leaves, their tracks, and the
// rooms' starts and finishes this node owns (cluster.RoomStarted, cluster.RoomFinished). The
// events of one participant are made in the order the node emits them. Event never blocks.
type Source struct {
	node string
	sink Sink

	mu           sync.Mutex
	participants map[string]node.ParticipantInfo // local participants by id, for their leave
	producers    map[string]node.ProducerInfo    // local producers by id, for their removal
}

// NewSource returns the Source of node nodeID, making events for sink.
func NewSource(nodeID string, sink Sink) *Source {
	return &Source{node: nodeID, sink: sink, participants: map[string]node.ParticipantInfo{}, producers: map[string]node.ProducerInfo{}}
}

// Event implements node.Events.
func (s *Source) Event(ev node.Event) {
	now := time.Now()
	switch e := ev.(type) {
	case cluster.RoomStarted:
		s.sink.Send(NewEvent(RoomStarted, s.node, e.Room, now))
	case cluster.RoomFinished:
		s.sink.Send(NewEvent(RoomFinished, s.node, e.Room, now))
	case node.ParticipantJoined:
		s.mu.Lock()
		s.participants[e.Participant.ID] = e.Participant
		s.mu.Unlock()
		out := NewEvent(ParticipantJoined, s.node, e.Room, now)
		out.Participant = participantOf(e.Participant)
		s.sink.Send(out)
	case node.ParticipantLeft:
		s.mu.Lock()
		p, ok := s.participants[e.ID]
		delete(s.participants, e.ID)
		s.mu.Unlock()
		if !ok {
			p = node.ParticipantInfo{ID: e.ID}
		}
		out := NewEvent(ParticipantLeft, s.node, e.Room, now)
		out.Participant = participantOf(p)
		s.sink.Send(out)
	case node.ProducerAdded:
		if e.Producer.Origin != "" {
			return // another node's: that node sends it
		}
		s.mu.Lock()
		s.producers[e.Producer.ID] = e.Producer
		p, ok := s.participants[e.Producer.Participant]
		s.mu.Unlock()
		out := NewEvent(TrackPublished, s.node, e.Room, now)
		out.Track = trackOf(e.Producer)
		if ok {
			out.Participant = participantOf(p)
		}
		s.sink.Send(out)
	case node.ProducerRemoved:
		if e.Origin != "" {
			return
		}
		s.mu.Lock()
		pr, ok := s.producers[e.ID]
		delete(s.producers, e.ID)
		p, pok := s.participants[e.Participant]
		s.mu.Unlock()
		if !ok {
			pr = node.ProducerInfo{ID: e.ID, Participant: e.Participant}
		}
		out := NewEvent(TrackUnpublished, s.node, e.Room, now)
		out.Track = trackOf(pr)
		if pok {
			out.Participant = participantOf(p)
		}
		s.sink.Send(out)
	}
}
