package cluster

import (
	"context"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// handleWrites registers the verbs of the actions.
func (a *API) handleWrites() {}

func (a *API) CreateRoom(ctx context.Context, req proto.CreateRoom) (proto.APIRoom, bool, error) {
	return proto.APIRoom{}, false, errTODO
}
func (a *API) UpdateRoom(ctx context.Context, name string, req proto.UpdateRoom) (proto.APIRoom, error) {
	return proto.APIRoom{}, errTODO
}
func (a *API) DeleteRoom(ctx context.Context, name string) error { return errTODO }
func (a *API) RemoveParticipant(ctx context.Context, room, identity string) error {
	return errTODO
}
func (a *API) UpdateParticipant(ctx context.Context, room, identity string, req proto.UpdateParticipant) (proto.APIParticipant, error) {
	return proto.APIParticipant{}, errTODO
}
func (a *API) MuteProducer(ctx context.Context, room, identity string, req proto.MuteProducer) (proto.Producer, error) {
	return proto.Producer{}, errTODO
}
func (a *API) SendData(ctx context.Context, room string, req proto.SendData) error { return errTODO }
