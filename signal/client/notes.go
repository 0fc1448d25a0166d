package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
)

// ErrUnknownNotification is returned by Decode for a method it does not know (a newer node's).
var ErrUnknownNotification = errors.New("unknown notification")

// Decode returns the data of a notification (Options.OnNotification) as its proto type, a value
// for a type switch:
//
//	participantJoined, participantUpdated  proto.Participant (with Metadata)
//	participantLeft                        proto.ParticipantLeft
//	producerAdded                          proto.Producer
//	producerRemoved                        proto.ProducerRemoved
//	producerMuted                          proto.ProducerMuted (ByServer: a moderator muted it)
//	roomUpdated                            proto.RoomUpdated
//	unmuteRequested                        proto.UnmuteRequested
//	message                                proto.Message
//	closed                                 proto.Closed
//	offer                                  proto.SDPData
//	trickle                                proto.TrickleData
//	resumeToken                            proto.ResumeToken
//	producerMoved                          proto.ProducerMoved
//	migrate                                proto.MigrateData
//
// Another method returns ErrUnknownNotification; data that does not decode, the JSON error.
func Decode(method string, data json.RawMessage) (any, error) {
	switch method {
	case proto.MethodParticipantJoined, proto.MethodParticipantUpdated:
		return decodeAs[proto.Participant](data)
	case proto.MethodParticipantLeft:
		return decodeAs[proto.ParticipantLeft](data)
	case proto.MethodProducerAdded:
		return decodeAs[proto.Producer](data)
	case proto.MethodProducerRemoved:
		return decodeAs[proto.ProducerRemoved](data)
	case proto.MethodProducerMuted:
		return decodeAs[proto.ProducerMuted](data)
	case proto.MethodRoomUpdated:
		return decodeAs[proto.RoomUpdated](data)
	case proto.MethodUnmuteRequested:
		return decodeAs[proto.UnmuteRequested](data)
	case proto.MethodMessage:
		return decodeAs[proto.Message](data)
	case proto.MethodClosed:
		return decodeAs[proto.Closed](data)
	case proto.MethodOffer:
		return decodeAs[proto.SDPData](data)
	case proto.MethodTrickle:
		return decodeAs[proto.TrickleData](data)
	case proto.MethodResumeToken:
		return decodeAs[proto.ResumeToken](data)
	case proto.MethodProducerMoved:
		return decodeAs[proto.ProducerMoved](data)
	case proto.MethodMigrate:
		return decodeAs[proto.MigrateData](data)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownNotification, method)
}

func decodeAs[T any](data json.RawMessage) (any, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	return v, nil
}

// CloseError tells why the node ended the connection (Client.Err).
type CloseError struct {
	// Code is the WebSocket close status: proto.CloseReplaced (4001), proto.CloseRemoved
	// (4003), proto.CloseRoomDeleted (4004), proto.CloseSlowClient (4002),
	// proto.CloseJoinDeadline (4008), proto.CloseFlood (4029), ...; -1 when the connection
	// dropped without a close frame.
	Code int
	// Reason is proto.ReasonReplaced, proto.ReasonRemoved or proto.ReasonRoomDeleted for
	// their close codes; for another code, the reason of the closed notification that came
	// before the close, else the close frame's text.
	Reason string
	// Err is the error the connection ended with.
	Err error
}

func (e *CloseError) Error() string {
	if e.Code < 0 {
		return fmt.Sprintf("connection lost: %v", e.Err)
	}
	return fmt.Sprintf("closed by the node: %d %s", e.Code, e.Reason)
}

func (e *CloseError) Unwrap() error { return e.Err }

// Final tells whether the session is over for good: a newer session replaced it, the room API
// removed the participant or deleted the room. A client must not reconnect on its own then.
func (e *CloseError) Final() bool {
	switch e.Code {
	case proto.CloseReplaced, proto.CloseRemoved, proto.CloseRoomDeleted, proto.CloseResumed:
		return true
	}
	switch e.Reason {
	case proto.ReasonReplaced, proto.ReasonRemoved, proto.ReasonRoomDeleted, proto.ReasonResumed:
		return true
	}
	return false
}

// Err tells why the connection ended, once Done is closed (nil before): a *CloseError when the
// node closed it or it dropped, ErrClosed when Close or Abort ended it.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endErr == nil {
		return ErrClosed
	}
	e := &CloseError{Code: int(websocket.CloseStatus(c.endErr)), Reason: c.endReason, Err: c.endErr}
	var ce websocket.CloseError
	switch {
	case e.Code == proto.CloseReplaced:
		e.Reason = proto.ReasonReplaced
	case e.Code == proto.CloseRemoved:
		e.Reason = proto.ReasonRemoved
	case e.Code == proto.CloseRoomDeleted:
		e.Reason = proto.ReasonRoomDeleted
	case e.Reason == "" && errors.As(c.endErr, &ce):
		e.Reason = ce.Reason
	}
	return e
}

func strconvQuote(s string) string { return strconv.Quote(s) }
