// Package proto is the wire format of Cascade's signaling protocol (PROTOCOL.md): the three
// message shapes, the method names, the error codes and the data of every request, response and
// notification. It imports nothing of the project, so a client (signal/client, the bots) links
// no server code.
package proto

import "encoding/json"

// MaxMessage is the largest signaling frame (and WHIP/WHEP offer) a node accepts.
const MaxMessage = 64 << 10

// MaxName is the longest room name and identity a node accepts, in bytes.
const MaxName = 256

// Request is a client request.
type Request struct {
	ID     *json.Number    `json:"id"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Response answers one request.
type Response struct {
	ID    *json.Number `json:"id"`
	OK    bool         `json:"ok"`
	Data  any          `json:"data,omitempty"`
	Error *Error       `json:"error,omitempty"`
}

// Notification is a server-initiated message.
type Notification struct {
	Method string `json:"method"`
	Data   any    `json:"data"`
}

// Error is the error object of a failed response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes (PROTOCOL.md, "Error codes").
const (
	CodeBadRequest    = "bad_request"
	CodeUnknownMethod = "unknown_method"
	CodeUnauthorized  = "unauthorized"
	CodeTokenExpired  = "token_expired"
	CodeForbidden     = "forbidden"
	CodeNotJoined     = "not_joined"
	CodeAlreadyJoined = "already_joined"
	CodeBadSDP        = "bad_sdp"
	CodeNotFound      = "not_found"
	CodeBadState      = "bad_state"
	CodeRateLimited   = "rate_limited"
	CodeDraining      = "draining"
	CodeInternal      = "internal"
	// CodeClusterUnavailable: the node cannot reach the rest of the cluster and cannot serve
	// the room alone; retry in a few seconds, or join another node.
	CodeClusterUnavailable = "cluster_unavailable"
	// Limits (PROTOCOL.md, "Limits"): the node serves as many rooms as it may, the room has as
	// many participants as it may, an offer sends more tracks than one participant may publish.
	CodeTooManyRooms  = "too_many_rooms"
	CodeRoomFull      = "room_full"
	CodeTooManyTracks = "too_many_tracks"
)

// Requests (PROTOCOL.md, "Requests").
const (
	MethodJoin        = "join"
	MethodPublish     = "publish"
	MethodUnpublish   = "unpublish"
	MethodAnswer      = "answer"
	MethodTrickle     = "trickle" // also a notification
	MethodSubscribe   = "subscribe"
	MethodUnsubscribe = "unsubscribe"
	MethodMute        = "mute"
	MethodMessage     = "message" // also a notification
	MethodLeave       = "leave"
)

// Notifications (PROTOCOL.md, "Notifications"), besides MethodTrickle and MethodMessage.
const (
	MethodOffer             = "offer"
	MethodParticipantJoined = "participantJoined"
	MethodParticipantLeft   = "participantLeft"
	MethodProducerAdded     = "producerAdded"
	MethodProducerRemoved   = "producerRemoved"
	MethodProducerMuted     = "producerMuted"
	MethodClosed            = "closed"
	// The room API's changes (PROTOCOL.md): a participant's metadata, the room's metadata, and
	// a moderator's request to a publisher to unmute a producer it muted.
	MethodParticipantUpdated = "participantUpdated"
	MethodRoomUpdated        = "roomUpdated"
	MethodUnmuteRequested    = "unmuteRequested"
)

// Reasons of the closed notification, and the WebSocket close code that follows each. A client
// must not reconnect on its own after any of them.
const (
	ReasonReplaced    = "replaced"     // a newer session of the identity joined: close 4001
	ReasonRemoved     = "removed"      // the room API removed the participant: close 4003
	ReasonRoomDeleted = "room_deleted" // the room API deleted the room: close 4004
)

// WebSocket close codes (PROTOCOL.md, "Error codes").
const (
	CloseReplaced     = 4001
	CloseSlowClient   = 4002
	CloseRemoved      = 4003
	CloseRoomDeleted  = 4004
	CloseJoinDeadline = 4008
	CloseFlood        = 4029
)

// Transports, as named in trickle.
const (
	TransportSend = "send"
	TransportRecv = "recv"
)
