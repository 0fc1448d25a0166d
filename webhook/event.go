// Package webhook tells an application what happens in its rooms: events (room_started,
// room_finished, participant_joined, participant_left, track_published, track_unpublished)
// POSTed as JSON to the configured URLs, signed in the Standard Webhooks style, from a bounded
// queue that never blocks the caller, retried with backoff for a stated window. Source turns
// the cluster layer's observed events into webhook events; Sender delivers them.
package webhook

import (
	"crypto/rand"
	"encoding/base32"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Event names (the "event" field).
const (
	RoomStarted       = "room_started"
	RoomFinished      = "room_finished"
	ParticipantJoined = "participant_joined"
	ParticipantLeft   = "participant_left"
	TrackPublished    = "track_published"
	TrackUnpublished  = "track_unpublished"
)

// Names lists the event names, in the order docs/WEBHOOKS.md describes them.
var Names = [...]string{RoomStarted, RoomFinished, ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished}

// Event is one webhook call's body. ID is the same on every attempt to deliver it (and the
// webhook-id header): a receiver that saw it already drops the repeat.
type Event struct {
	ID    string `json:"id"`
	Event string `json:"event"`
	// CreatedAt is when the event happened on the sending node, Unix milliseconds.
	CreatedAt   int64        `json:"createdAt"`
	Node        string       `json:"node"`
	Room        Room         `json:"room"`
	Participant *Participant `json:"participant,omitempty"`
	Track       *Track       `json:"track,omitempty"`
}

// Room is the room an event is about, with its settings.
type Room struct {
	Name            string `json:"name"`
	Metadata        string `json:"metadata,omitempty"`
	MaxParticipants int    `json:"maxParticipants,omitempty"`
	EmptyTimeout    int    `json:"emptyTimeout,omitempty"`
	CreatedAt       int64  `json:"createdAt,omitempty"`
}

// Participant is a session in a room, as the signaling protocol's Participant.
type Participant struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	JoinedAt int64  `json:"joinedAt"`
	Metadata string `json:"metadata,omitempty"`
}

// Track is a producer: a track a participant publishes.
type Track struct {
	ID          string `json:"id"`
	Participant string `json:"participant"` // the publisher's participant id
	Kind        string `json:"kind"`
	Mid         string `json:"mid,omitempty"`
	Codec       string `json:"codec,omitempty"`
	Muted       bool   `json:"muted"`
}

// NewEvent returns an event named name about room, with a fresh id, at now.
func NewEvent(name, nodeID string, room *node.Room, now time.Time) Event {
	ev := Event{ID: newID(), Event: name, CreatedAt: now.UnixMilli(), Node: nodeID}
	if room != nil {
		s := room.Settings()
		ev.Room = Room{Name: room.Name(), Metadata: s.Metadata, MaxParticipants: s.MaxParticipants,
			EmptyTimeout: s.EmptyTimeout, CreatedAt: s.CreatedAt}
	}
	return ev
}

func participantOf(p node.ParticipantInfo) *Participant {
	return &Participant{ID: p.ID, Identity: p.Identity, JoinedAt: p.JoinedAt, Metadata: p.Metadata}
}

func trackOf(p node.ProducerInfo) *Track {
	return &Track{ID: p.ID, Participant: p.Participant, Kind: p.Kind, Mid: p.Mid, Codec: p.Codec, Muted: p.Muted}
}

// newID is a random event id: "EV" and 26 base32 characters (128 bits).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "EV" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
