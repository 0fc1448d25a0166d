package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// The room API's actions. Each is one Ask to every node: a node applies it to its own rooms and
// sessions and answers what it did, and the asker adds the answers up. No directory of who is
// where has to be right for an action to land: the node that holds a session is the one that
// acts on it, and a node that holds nothing says so.

// Verbs of the actions (cascade.api.<verb>).
const (
	verbCreateRoom        = "createRoom"
	verbUpdateRoom        = "updateRoom"
	verbDeleteRoom        = "deleteRoom"
	verbRemoveParticipant = "removeParticipant"
	verbUpdateParticipant = "updateParticipant"
	verbMute              = "mute"
	verbSendData          = "sendData"
)

// actQuestion is the body of every action verb; each verb reads the fields it needs.
type actQuestion struct {
	Room     string `json:"room"`
	Identity string `json:"identity,omitempty"`
	// Settings: createRoom and updateRoom (the fields present change).
	Settings *proto.UpdateRoom `json:"settings,omitempty"`
	// Metadata: updateParticipant (absent: the participant is only reported).
	Metadata *string `json:"metadata,omitempty"`
	// Producer and Muted: mute.
	Producer string `json:"producer,omitempty"`
	Muted    bool   `json:"muted,omitempty"`
	// Data and Identities: sendData.
	Data       json.RawMessage `json:"data,omitempty"`
	Identities []string        `json:"identities,omitempty"`
}

// actAnswer is one node's part of an action. Done: the node found something to act on (the
// room, the participant's session, the producer); the rest says what it did.
type actAnswer struct {
	Done bool `json:"done"`
	// Count is how many sessions were closed (deleteRoom, removeParticipant) or how many
	// participants got the message (sendData).
	Count       int                   `json:"count,omitempty"`
	Room        *actRoom              `json:"room,omitempty"`
	Participant *proto.APIParticipant `json:"participant,omitempty"`
	Producer    *proto.Producer       `json:"producer,omitempty"`
}

// actRoom is one node's part of a room, after the action.
type actRoom struct {
	Region       string            `json:"region,omitempty"`
	Participants int               `json:"participants"`
	Publishers   int               `json:"publishers"`
	Producers    int               `json:"producers"`
	Settings     node.RoomSettings `json:"settings"`
}

// actPart is the answer of a node that acted.
type actPart struct {
	node string
	actAnswer
}

// handleWrites registers the verbs of the actions. A node without the room answers Done false.
func (a *API) handleWrites() {
	for verb, h := range map[string]func(*node.Room, actQuestion) (actAnswer, error){
		verbCreateRoom:        a.onSettings, // a create reaches only the nodes that have the room
		verbUpdateRoom:        a.onSettings,
		verbDeleteRoom:        a.onDeleteRoom,
		verbRemoveParticipant: a.onRemoveParticipant,
		verbUpdateParticipant: a.onUpdateParticipant,
		verbMute:              a.onMute,
		verbSendData:          a.onSendData,
	} {
		a.c.HandleAsk(verb, func(_ string, body json.RawMessage) (any, error) {
			var q actQuestion
			if err := json.Unmarshal(body, &q); err != nil {
				return nil, &proto.Error{Code: proto.CodeBadRequest, Message: verb + ": " + err.Error()}
			}
			r := a.c.n.Room(q.Room)
			if r == nil {
				return actAnswer{}, nil
			}
			return h(r, q)
		})
	}
}

// onSettings changes the room's settings here (createRoom of a room that exists, updateRoom).
func (a *API) onSettings(r *node.Room, q actQuestion) (actAnswer, error) {
	if q.Settings != nil {
		r.UpdateSettings(node.SettingsUpdate{Metadata: q.Settings.Metadata,
			MaxParticipants: q.Settings.MaxParticipants, EmptyTimeout: q.Settings.EmptyTimeout})
	}
	part := a.actRoomPart(r)
	return actAnswer{Done: true, Room: &part}, nil
}

func (a *API) onDeleteRoom(r *node.Room, _ actQuestion) (actAnswer, error) {
	local, _ := r.LocalState()
	a.c.deleting(r, len(local))
	return actAnswer{Done: true, Count: r.Delete()}, nil
}

func (a *API) onRemoveParticipant(r *node.Room, q actQuestion) (actAnswer, error) {
	n := r.RemoveParticipant(q.Identity, proto.ReasonRemoved)
	return actAnswer{Done: n > 0, Count: n}, nil
}

func (a *API) onUpdateParticipant(r *node.Room, q actQuestion) (actAnswer, error) {
	var info node.ParticipantInfo
	found := false
	if q.Metadata != nil {
		info, found = r.SetParticipantMetadata(q.Identity, *q.Metadata)
	} else {
		parts, _ := r.LocalState()
		for _, p := range parts {
			if p.Identity == q.Identity && (!found || p.JoinedAt > info.JoinedAt) {
				info, found = p, true
			}
		}
	}
	if !found {
		return actAnswer{}, nil
	}
	p := a.actParticipant(r, info)
	return actAnswer{Done: true, Participant: &p}, nil
}

func (a *API) onMute(r *node.Room, q actQuestion) (actAnswer, error) {
	info, err := r.MuteByServer(q.Identity, q.Producer, q.Muted)
	if errors.Is(err, node.ErrNotFound) {
		return actAnswer{}, nil // not this node's producer, or not the identity's
	}
	if err != nil {
		return actAnswer{}, err
	}
	p := a.actProducer(info)
	return actAnswer{Done: true, Producer: &p}, nil
}

func (a *API) onSendData(r *node.Room, q actQuestion) (actAnswer, error) {
	return actAnswer{Done: true, Count: r.ServerMessage(q.Data, q.Identities)}, nil
}

// actRoomPart is this node's part of room r: its local participants, publishers and producers.
func (a *API) actRoomPart(r *node.Room) actRoom {
	parts, prods := r.LocalState()
	publishing := map[string]bool{}
	for _, p := range prods {
		publishing[p.Participant] = true
	}
	return actRoom{Region: a.c.n.Region(), Participants: len(parts), Publishers: len(publishing),
		Producers: len(prods), Settings: r.Settings()}
}

// actParticipant is a local participant of r as the room API shows it.
func (a *API) actParticipant(r *node.Room, info node.ParticipantInfo) proto.APIParticipant {
	out := proto.APIParticipant{Participant: proto.Participant(info), Node: a.c.me, Region: a.c.n.Region(),
		Producers: []proto.Producer{}}
	_, prods := r.LocalState()
	for _, p := range prods {
		if p.Participant == info.ID {
			out.Producers = append(out.Producers, a.actProducer(p))
		}
	}
	return out
}

// actProducer is a local producer as the room API shows it: its origin is this node.
func (a *API) actProducer(info node.ProducerInfo) proto.Producer {
	p := proto.Producer(info)
	if p.Origin == "" {
		p.Origin = a.c.me
	}
	return p
}

// act asks every node q under verb and returns the parts of the nodes that acted, sorted by
// node. When none acted it fails: with the error a node answered, else cluster_unavailable
// when a node did not answer (the target may be there), else not_found (what names it).
func (a *API) act(ctx context.Context, verb string, q actQuestion, what string) ([]actPart, error) {
	answers, unreachable, err := a.c.Ask(ctx, verb, q)
	if err != nil {
		return nil, &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
	}
	var done []actPart
	var failed *proto.Error
	for _, an := range answers {
		if an.Error != nil {
			if an.Error.Code != proto.CodeUnknownMethod && failed == nil { // unknown: an older node, nothing there
				failed = an.Error
			}
			a.c.log.Warn("room API action failed on a node", "verb", verb, "on", an.Node, "error", an.Error)
			continue
		}
		var x actAnswer
		if err := json.Unmarshal(an.Body, &x); err != nil {
			if failed == nil {
				failed = &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("node %s answered %s: %v", an.Node, verb, err)}
			}
			continue
		}
		if x.Done {
			done = append(done, actPart{node: an.Node, actAnswer: x})
		}
	}
	switch {
	case len(done) > 0:
		return done, nil
	case failed != nil:
		return nil, failed
	case len(unreachable) > 0:
		return nil, &proto.Error{Code: proto.CodeClusterUnavailable, Message: fmt.Sprintf(
			"%s on no node that answered, and node(s) %s did not answer; retry in a few seconds", what, strings.Join(unreachable, ", "))}
	default:
		return nil, &proto.Error{Code: proto.CodeNotFound, Message: what + " in the cluster"}
	}
}

// actBadRequest is the error of a request the API refuses before asking anyone.
func actBadRequest(format string, args ...any) error {
	return &proto.Error{Code: proto.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// actCheckName refuses an empty or too long room name or identity (field names it).
func actCheckName(field, v string) error {
	if v == "" || len(v) > proto.MaxName {
		return actBadRequest("%s: must be 1 to %d bytes, is %d", field, proto.MaxName, len(v))
	}
	return nil
}

// actCheckSettings refuses settings out of range.
func actCheckSettings(metadata *string, maxParticipants, emptyTimeout *int) error {
	if metadata != nil && len(*metadata) > proto.MaxMetadata {
		return actBadRequest("metadata: at most %d bytes, is %d", proto.MaxMetadata, len(*metadata))
	}
	if maxParticipants != nil && *maxParticipants < 0 {
		return actBadRequest("maxParticipants: must be 0 (the node default) or more, is %d", *maxParticipants)
	}
	if emptyTimeout != nil && *emptyTimeout < 0 {
		return actBadRequest("emptyTimeout: must be 0 (the default) or more seconds, is %d", *emptyTimeout)
	}
	return nil
}

// actAPIRoom adds up the nodes' parts of a room. The settings are the same on every node that
// carries the room; the first node's are shown, with the earliest creation time.
func actAPIRoom(name string, parts []actPart) proto.APIRoom {
	out := proto.APIRoom{Name: name, Nodes: []proto.APIRoomNode{}}
	for i, p := range parts {
		if p.Room == nil {
			continue
		}
		r := p.Room
		out.Participants += r.Participants
		out.Publishers += r.Publishers
		out.Producers += r.Producers
		out.Nodes = append(out.Nodes, proto.APIRoomNode{ID: p.node, Region: r.Region, Participants: r.Participants})
		if i == 0 {
			out.Metadata, out.MaxParticipants, out.EmptyTimeout = r.Settings.Metadata, r.Settings.MaxParticipants, r.Settings.EmptyTimeout
		}
		if c := r.Settings.CreatedAt; c != 0 && (out.CreatedAt == 0 || c < out.CreatedAt) {
			out.CreatedAt = c
		}
	}
	return out
}

// actNodeError is the room API error of a node-side failure of this node.
func actNodeError(err error) error {
	switch {
	case errors.Is(err, node.ErrDraining):
		return &proto.Error{Code: proto.CodeDraining, Message: "this node is draining and opens no rooms; ask another node"}
	case errors.Is(err, node.ErrTooManyRooms):
		return &proto.Error{Code: proto.CodeTooManyRooms, Message: err.Error()}
	default:
		return &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
	}
}

// CreateRoom creates the room on this node with the request's limits and metadata, or, when
// some node has it open, updates its settings there (created false): the fields given non-zero
// change (a zero cannot be told from an absent field here; PATCH clears them).
func (a *API) CreateRoom(ctx context.Context, req proto.CreateRoom) (proto.APIRoom, bool, error) {
	if err := actCheckName("name", req.Name); err != nil {
		return proto.APIRoom{}, false, err
	}
	if err := actCheckSettings(&req.Metadata, &req.MaxParticipants, &req.EmptyTimeout); err != nil {
		return proto.APIRoom{}, false, err
	}
	var u proto.UpdateRoom
	if req.Metadata != "" {
		u.Metadata = &req.Metadata
	}
	if req.MaxParticipants != 0 {
		u.MaxParticipants = &req.MaxParticipants
	}
	if req.EmptyTimeout != 0 {
		u.EmptyTimeout = &req.EmptyTimeout
	}
	parts, err := a.act(ctx, verbCreateRoom, actQuestion{Room: req.Name, Settings: &u}, fmt.Sprintf("no room %q", req.Name))
	if err == nil {
		return actAPIRoom(req.Name, parts), false, nil
	}
	if pe := (*proto.Error)(nil); !errors.As(err, &pe) || pe.Code != proto.CodeNotFound {
		return proto.APIRoom{}, false, err // some node may have it, or failed: opening one here could fork its settings
	}
	r, created, err := a.c.n.OpenRoom(req.Name, node.RoomSettings{Metadata: req.Metadata,
		MaxParticipants: req.MaxParticipants, EmptyTimeout: req.EmptyTimeout, CreatedAt: time.Now().UnixMilli()})
	if err != nil {
		return proto.APIRoom{}, false, actNodeError(err)
	}
	part := a.actRoomPart(r)
	return actAPIRoom(req.Name, []actPart{{node: a.c.me, actAnswer: actAnswer{Done: true, Room: &part}}}), created, nil
}

// UpdateRoom changes the room's settings (the fields present) on every node that has it open;
// a metadata change reaches the participants as roomUpdated.
func (a *API) UpdateRoom(ctx context.Context, name string, req proto.UpdateRoom) (proto.APIRoom, error) {
	if err := actCheckName("room", name); err != nil {
		return proto.APIRoom{}, err
	}
	if err := actCheckSettings(req.Metadata, req.MaxParticipants, req.EmptyTimeout); err != nil {
		return proto.APIRoom{}, err
	}
	parts, err := a.act(ctx, verbUpdateRoom, actQuestion{Room: name, Settings: &req}, fmt.Sprintf("no room %q", name))
	if err != nil {
		return proto.APIRoom{}, err
	}
	return actAPIRoom(name, parts), nil
}

// DeleteRoom closes the room on every node that has it: each session gets closed
// {"reason":"room_deleted"} and its connection ends.
func (a *API) DeleteRoom(ctx context.Context, name string) error {
	if err := actCheckName("room", name); err != nil {
		return err
	}
	_, err := a.act(ctx, verbDeleteRoom, actQuestion{Room: name}, fmt.Sprintf("no room %q", name))
	return err
}

// RemoveParticipant ends the identity's session on the node that holds it: closed
// {"reason":"removed"}, then close code 4003.
func (a *API) RemoveParticipant(ctx context.Context, room, identity string) error {
	if err := actCheckIDs(room, identity); err != nil {
		return err
	}
	_, err := a.act(ctx, verbRemoveParticipant, actQuestion{Room: room, Identity: identity},
		fmt.Sprintf("no participant %q in room %q", identity, room))
	return err
}

// UpdateParticipant sets the identity's metadata on the node that holds its session; the room,
// on every node, gets participantUpdated. Without metadata it only reports the participant.
func (a *API) UpdateParticipant(ctx context.Context, room, identity string, req proto.UpdateParticipant) (proto.APIParticipant, error) {
	if err := actCheckIDs(room, identity); err != nil {
		return proto.APIParticipant{}, err
	}
	if err := actCheckSettings(req.Metadata, nil, nil); err != nil {
		return proto.APIParticipant{}, err
	}
	parts, err := a.act(ctx, verbUpdateParticipant, actQuestion{Room: room, Identity: identity, Metadata: req.Metadata},
		fmt.Sprintf("no participant %q in room %q", identity, room))
	if err != nil {
		return proto.APIParticipant{}, err
	}
	best := parts[0].Participant // two sessions of one identity, for a moment: the newer one stays
	for _, p := range parts[1:] {
		if p.Participant != nil && (best == nil || p.Participant.JoinedAt > best.JoinedAt) {
			best = p.Participant
		}
	}
	if best == nil {
		return proto.APIParticipant{}, &proto.Error{Code: proto.CodeInternal, Message: "a node acted without saying on whom"}
	}
	return *best, nil
}

// MuteProducer mutes the identity's producer (muted true: forwarding stops and a lock keeps
// the publisher from unmuting it), or lifts the lock and asks the publisher to unmute (false).
func (a *API) MuteProducer(ctx context.Context, room, identity string, req proto.MuteProducer) (proto.Producer, error) {
	if err := actCheckIDs(room, identity); err != nil {
		return proto.Producer{}, err
	}
	if req.Producer == "" || len(req.Producer) > proto.MaxName {
		return proto.Producer{}, actBadRequest("producer: the id of one of the participant's producers is required")
	}
	parts, err := a.act(ctx, verbMute, actQuestion{Room: room, Identity: identity, Producer: req.Producer, Muted: req.Muted},
		fmt.Sprintf("no producer %q of participant %q in room %q", req.Producer, identity, room))
	if err != nil {
		return proto.Producer{}, err
	}
	if parts[0].Producer == nil {
		return proto.Producer{}, &proto.Error{Code: proto.CodeInternal, Message: "a node acted without saying on what"}
	}
	return *parts[0].Producer, nil
}

// SendData delivers a message notification with empty from and identity to the room's
// participants with the identities listed (everyone when none), on every node.
func (a *API) SendData(ctx context.Context, room string, req proto.SendData) error {
	if err := actCheckName("room", room); err != nil {
		return err
	}
	if d := strings.TrimSpace(string(req.Data)); d == "" || d == "null" {
		return actBadRequest("data: required (any JSON value but null)")
	}
	if !json.Valid(req.Data) {
		return actBadRequest("data: not valid JSON")
	}
	for i, id := range req.Identities {
		if err := actCheckName(fmt.Sprintf("identities[%d]", i), id); err != nil {
			return err
		}
	}
	_, err := a.act(ctx, verbSendData, actQuestion{Room: room, Data: req.Data, Identities: req.Identities},
		fmt.Sprintf("no room %q", room))
	return err
}

// actCheckIDs refuses a bad room name or identity.
func actCheckIDs(room, identity string) error {
	if err := actCheckName("room", room); err != nil {
		return err
	}
	return actCheckName("identity", identity)
}
