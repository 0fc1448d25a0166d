package cluster

import (
	"context"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// errTODO: replaced by the read calls (skeleton).
var errTODO = &proto.Error{Code: proto.CodeInternal, Message: "not built yet"}

// handleReads registers the verbs of the read calls (rooms, room, participants).
func (a *API) handleReads() {}

func (a *API) ListRooms(ctx context.Context, after string, limit int) (proto.RoomPage, error) {
	return proto.RoomPage{}, errTODO
}
func (a *API) Room(ctx context.Context, name string) (proto.APIRoomDetail, error) {
	return proto.APIRoomDetail{}, errTODO
}
func (a *API) Participants(ctx context.Context, room, after string, limit int) (proto.ParticipantPage, error) {
	return proto.ParticipantPage{}, errTODO
}
func (a *API) Participant(ctx context.Context, room, identity string) (proto.APIParticipant, error) {
	return proto.APIParticipant{}, errTODO
}
