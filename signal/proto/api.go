package proto

import (
	"encoding/json"
	"net/http"
)

// The room API (api/openapi.yaml): JSON over HTTP under /api/, on every node, for holders of
// an admin token. Any node answers for any room of the cluster.

// APIRoom is a room of the cluster, as the room API lists it.
type APIRoom struct {
	Name string `json:"name"`
	// Participants, Publishers (participants with producers) and Producers over every node.
	Participants int `json:"participants"`
	Publishers   int `json:"publishers"`
	Producers    int `json:"producers"`
	// Nodes are the nodes that carry the room (have it open), sorted by id.
	Nodes    []APIRoomNode `json:"nodes"`
	Metadata string        `json:"metadata"`
	// MaxParticipants and EmptyTimeout (seconds) are the room's own limits; 0: the nodes'
	// defaults (--max-room-participants, --empty-room-timeout).
	MaxParticipants int `json:"maxParticipants"`
	EmptyTimeout    int `json:"emptyTimeout"`
	// CreatedAt is when the room was created (API) or opened (first join), Unix milliseconds.
	CreatedAt int64 `json:"createdAt"`
}

// APIRoomNode is one node carrying a room.
type APIRoomNode struct {
	ID           string `json:"id"`
	Region       string `json:"region,omitempty"`
	Participants int    `json:"participants"`
}

// APIRoomDetail is one room with its producers and their relay trees (GET /api/rooms/{room}).
type APIRoomDetail struct {
	APIRoom
	ProducerList []APIProducer `json:"producerList"`
}

// APIProducer is a producer with its origin node and relay tree.
type APIProducer struct {
	Producer
	// Tree lists the relay hops of the producer: each node carrying it and its parent (the
	// origin's parent is "").
	Tree []APIEdge `json:"tree"`
}

// APIEdge is one relay hop: Node gets the producer from Parent.
type APIEdge struct {
	Node   string `json:"node"`
	Parent string `json:"parent,omitempty"`
}

// APIParticipant is a participant as the room API shows it.
type APIParticipant struct {
	Participant
	Node      string     `json:"node"`
	Region    string     `json:"region,omitempty"`
	Producers []Producer `json:"producers"`
}

// Pages of the list calls. Next is the cursor of the next page ("" on the last): pass it as
// ?after=. Unreachable lists the nodes that did not answer in time: the page may lack their part.
type (
	RoomPage struct {
		Rooms       []APIRoom `json:"rooms"`
		Next        string    `json:"next,omitempty"`
		Unreachable []string  `json:"unreachable,omitempty"`
	}
	ParticipantPage struct {
		Participants []APIParticipant `json:"participants"`
		Next         string           `json:"next,omitempty"`
		Unreachable  []string         `json:"unreachable,omitempty"`
	}
)

// Request bodies of the room API.
type (
	// CreateRoom is the body of POST /api/rooms.
	CreateRoom struct {
		Name            string `json:"name"`
		Metadata        string `json:"metadata,omitempty"`
		MaxParticipants int    `json:"maxParticipants,omitempty"`
		EmptyTimeout    int    `json:"emptyTimeout,omitempty"`
	}
	// UpdateRoom is the body of PATCH /api/rooms/{room}: the fields present change.
	UpdateRoom struct {
		Metadata        *string `json:"metadata,omitempty"`
		MaxParticipants *int    `json:"maxParticipants,omitempty"`
		EmptyTimeout    *int    `json:"emptyTimeout,omitempty"`
	}
	// UpdateParticipant is the body of PATCH /api/rooms/{room}/participants/{identity}.
	UpdateParticipant struct {
		Metadata *string `json:"metadata,omitempty"`
	}
	// MuteProducer is the body of POST /api/rooms/{room}/participants/{identity}/mute.
	MuteProducer struct {
		Producer string `json:"producer"`
		Muted    bool   `json:"muted"`
	}
	// SendData is the body of POST /api/rooms/{room}/data: a message notification with empty
	// from and identity, to the identities listed (every participant when empty).
	SendData struct {
		Data       json.RawMessage `json:"data"`
		Identities []string        `json:"identities,omitempty"`
	}
)

// MaxMetadata is the longest participant or room metadata, in bytes.
const MaxMetadata = 4096

// HTTPStatus is the HTTP status that goes with an error code in the room API (and the
// /cluster view).
func HTTPStatus(code string) int {
	switch code {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized, CodeTokenExpired:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeRoomFull, CodeTooManyRooms:
		return http.StatusConflict
	case CodeClusterUnavailable, CodeDraining:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
