package signal

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// Rooms is the room API's view of the whole cluster (api/openapi.yaml): the cluster layer
// implements it by asking every node (cluster.API). Errors are *proto.Error: not_found,
// bad_request, room_full, cluster_unavailable (no answer from a node that may hold the room),
// internal.
type Rooms interface {
	ListRooms(ctx context.Context, after string, limit int) (proto.RoomPage, error)
	Room(ctx context.Context, name string) (proto.APIRoomDetail, error)
	Participants(ctx context.Context, room, after string, limit int) (proto.ParticipantPage, error)
	Participant(ctx context.Context, room, identity string) (proto.APIParticipant, error)

	// CreateRoom creates a room with its limits and metadata, or updates the settings of a
	// room that exists (created false).
	CreateRoom(ctx context.Context, req proto.CreateRoom) (room proto.APIRoom, created bool, err error)
	UpdateRoom(ctx context.Context, name string, req proto.UpdateRoom) (proto.APIRoom, error)
	// DeleteRoom ends every session of the room, on every node.
	DeleteRoom(ctx context.Context, name string) error
	// RemoveParticipant ends the identity's session, wherever it is.
	RemoveParticipant(ctx context.Context, room, identity string) error
	UpdateParticipant(ctx context.Context, room, identity string, req proto.UpdateParticipant) (proto.APIParticipant, error)
	MuteProducer(ctx context.Context, room, identity string, req proto.MuteProducer) (proto.Producer, error)
	SendData(ctx context.Context, room string, req proto.SendData) error
}

// writeAPIError answers a room API call that failed with err: a *proto.Error with its status,
// anything else as internal.
func writeAPIError(w http.ResponseWriter, err error) {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		pe = &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
	}
	writeJSONError(w, proto.HTTPStatus(pe.Code), pe.Code, pe.Message)
}

// writeAPI answers a room API call with status and v as JSON (no body for 204).
func writeAPI(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readAPI decodes the JSON body of a room API call into v (at most proto.MaxMessage bytes,
// unknown fields refused); on failure it answers 400 and returns false.
func readAPI(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, proto.MaxMessage))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSONError(w, http.StatusBadRequest, proto.CodeBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}
