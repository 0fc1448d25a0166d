// Package signal is Cascade's client signaling: the WebSocket protocol of PROTOCOL.md, WHIP and
// WHEP, and the node's HTTP endpoints.
package signal

import (
	"encoding/json"
	"errors"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// MaxMessage is the largest signaling frame (and WHIP/WHEP offer) accepted.
const MaxMessage = 64 << 10

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
)

// codeOf maps an error from the node or the token check to its wire code.
func codeOf(err error) string {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, auth.ErrExpired):
		return CodeTokenExpired
	case errors.Is(err, auth.ErrNoToken), errors.Is(err, auth.ErrBadToken):
		return CodeUnauthorized
	case errors.Is(err, node.ErrForbidden):
		return CodeForbidden
	case errors.Is(err, node.ErrBadSDP):
		return CodeBadSDP
	case errors.Is(err, node.ErrBadCandidate):
		return CodeBadRequest
	case errors.Is(err, node.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, node.ErrBadState), errors.Is(err, node.ErrClosed):
		return CodeBadState
	case errors.Is(err, node.ErrDraining):
		return CodeDraining
	}
	return CodeInternal
}

func errorf(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Request payloads.
type (
	// JoinData is the data of a join request.
	JoinData struct {
		Token         string `json:"token"`
		AutoSubscribe *bool  `json:"autoSubscribe,omitempty"`
		// Region is the client's region, a placement hint.
		Region string `json:"region,omitempty"`
		// NoRedirect makes the node accept the join (a client that followed a redirect).
		NoRedirect bool `json:"noRedirect,omitempty"`
	}
	// JoinResult is the data of a join response: the room, or a redirect to a better node.
	JoinResult struct {
		Participant  node.ParticipantInfo   `json:"participant"`
		Room         string                 `json:"room"`
		Participants []node.ParticipantInfo `json:"participants"`
		Producers    []node.ProducerInfo    `json:"producers"`
		Redirect     *Redirect              `json:"redirect,omitempty"`
	}
	// Redirect names the node a client should join instead.
	Redirect struct {
		Node string `json:"node"`
		URL  string `json:"url"` // the node's signaling URL (ws://host:port/ws)
	}
	// SDPData carries an offer or an answer.
	SDPData struct {
		SDP string `json:"sdp"`
	}
	// PublishResult is the data of a publish response.
	PublishResult struct {
		SDP       string              `json:"sdp"`
		Producers []node.ProducerInfo `json:"producers"`
	}
	// TrickleData carries one ICE candidate.
	TrickleData struct {
		Transport string           `json:"transport"`
		Candidate ICECandidateInit `json:"candidate"`
	}
	// ICECandidateInit is the browser's RTCIceCandidateInit.
	ICECandidateInit struct {
		Candidate        string  `json:"candidate"`
		SDPMid           *string `json:"sdpMid,omitempty"`
		SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
		UsernameFragment *string `json:"usernameFragment,omitempty"`
	}
	// ProducerData names a producer.
	ProducerData struct {
		Producer string `json:"producer"`
	}
	// MuteData mutes or unmutes a producer.
	MuteData struct {
		Producer string `json:"producer"`
		Muted    bool   `json:"muted"`
	}
	// MessageData is an application message.
	MessageData struct {
		Data json.RawMessage `json:"data"`
	}
)

// Methods (PROTOCOL.md, "Requests").
const (
	MethodJoin        = "join"
	MethodPublish     = "publish"
	MethodUnpublish   = "unpublish"
	MethodAnswer      = "answer"
	MethodTrickle     = "trickle"
	MethodSubscribe   = "subscribe"
	MethodUnsubscribe = "unsubscribe"
	MethodMute        = "mute"
	MethodMessage     = "message"
	MethodLeave       = "leave"
)
