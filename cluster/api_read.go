package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// The read calls of the room API. Each is one Ask: every node answers with its own part of the
// rooms open on it (its local participants and the producers published on it), never the
// copies of the other nodes' parts it holds, so that the parts add up without counting anyone
// twice; the asker merges them.

// Verbs of the read calls.
const (
	verbRooms        = "rooms"
	verbRoom         = "room"
	verbParticipants = "participants"
)

// MaxPageLimit is the largest page a list call returns (the HTTP side's default is 100).
const MaxPageLimit = 1000

// answerBudget bounds one node's answer to a list call, in bytes of JSON (roughly): a page of
// participants with 4 KiB of metadata each would not fit in a NATS message. A node past it
// answers fewer and says it has more; the page then ends where that node's answer ends.
const answerBudget = 256 << 10

// roomsQuery asks for the rooms named after After, at most Limit of them.
type roomsQuery struct {
	After string `json:"after,omitempty"`
	Limit int    `json:"limit"`
}

// roomPart is one node's part of a room.
type roomPart struct {
	Name         string            `json:"name"`
	Region       string            `json:"region,omitempty"`
	Participants int               `json:"participants"`
	Publishers   int               `json:"publishers"`
	Producers    int               `json:"producers"`
	Settings     node.RoomSettings `json:"settings"`
	// ProducerList and Trees are only in the answers to verbRoom: the producers published on
	// the node, and the relay edges it knows of every producer of the room.
	ProducerList []proto.Producer  `json:"producerList,omitempty"`
	Trees        map[string][]Edge `json:"trees,omitempty"`
}

// roomsPart is one node's answer to verbRooms: its rooms in name order, and whether it has
// more after them.
type roomsPart struct {
	Rooms []roomPart `json:"rooms"`
	More  bool       `json:"more,omitempty"`
}

// roomQuery asks for one room.
type roomQuery struct {
	Name string `json:"name"`
}

// participantsQuery asks for a room's participants with identities after After (at most Limit),
// or, with Identity set, for that one participant.
type participantsQuery struct {
	Room     string `json:"room"`
	After    string `json:"after,omitempty"`
	Limit    int    `json:"limit"`
	Identity string `json:"identity,omitempty"`
}

// participantsPart is one node's answer to verbParticipants. Open tells whether the room is open
// on the node at all (a room without participants on any node is still found).
type participantsPart struct {
	Open         bool                   `json:"open"`
	Participants []proto.APIParticipant `json:"participants"`
	More         bool                   `json:"more,omitempty"`
}

// handleReads registers the verbs of the read calls (rooms, room, participants).
func (a *API) handleReads() {
	a.c.HandleAsk(verbRooms, func(_ string, body json.RawMessage) (any, error) {
		var q roomsQuery
		if err := json.Unmarshal(body, &q); err != nil || q.Limit < 1 || q.Limit > MaxPageLimit {
			return nil, badRequest("bad rooms query")
		}
		return a.roomsHere(q), nil
	})
	a.c.HandleAsk(verbRoom, func(_ string, body json.RawMessage) (any, error) {
		var q roomQuery
		if err := json.Unmarshal(body, &q); err != nil || q.Name == "" {
			return nil, badRequest("bad room query")
		}
		r := a.c.n.Room(q.Name)
		if r == nil {
			return nil, nil // not open here: null
		}
		p := a.partOf(r)
		for _, pr := range r.Producers() {
			if pr.Origin == "" {
				pr.Origin = a.c.me
				p.ProducerList = append(p.ProducerList, proto.Producer(pr))
			}
			for _, e := range a.c.pipes.Trees().Edges(pr.ID) {
				if p.Trees == nil {
					p.Trees = make(map[string][]Edge)
				}
				p.Trees[pr.ID] = append(p.Trees[pr.ID], e)
			}
		}
		return p, nil
	})
	a.c.HandleAsk(verbParticipants, func(_ string, body json.RawMessage) (any, error) {
		var q participantsQuery
		if err := json.Unmarshal(body, &q); err != nil || q.Room == "" || q.Limit < 1 || q.Limit > MaxPageLimit {
			return nil, badRequest("bad participants query")
		}
		return a.participantsHere(q), nil
	})
}

// roomsHere is this node's part of a room listing.
func (a *API) roomsHere(q roomsQuery) roomsPart {
	rooms := a.c.n.Rooms()
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Name() < rooms[j].Name() })
	out := roomsPart{Rooms: []roomPart{}}
	budget := answerBudget
	for _, r := range rooms {
		if r.Name() <= q.After {
			continue
		}
		p := a.partOf(r)
		budget -= len(p.Name) + len(p.Settings.Metadata) + 256
		if len(out.Rooms) == q.Limit || (budget < 0 && len(out.Rooms) > 0) {
			out.More = true
			break
		}
		out.Rooms = append(out.Rooms, p)
	}
	return out
}

// partOf counts this node's part of room r.
func (a *API) partOf(r *node.Room) roomPart {
	parts, prods := r.LocalState()
	publishers := map[string]bool{}
	for _, pr := range prods {
		publishers[pr.Participant] = true
	}
	return roomPart{Name: r.Name(), Region: a.c.n.Region(), Participants: len(parts),
		Publishers: len(publishers), Producers: len(prods), Settings: r.Settings()}
}

// participantsHere is this node's part of a participant listing.
func (a *API) participantsHere(q participantsQuery) participantsPart {
	r := a.c.n.Room(q.Room)
	if r == nil {
		return participantsPart{Participants: []proto.APIParticipant{}}
	}
	parts, prods := r.LocalState()
	sort.Slice(parts, func(i, j int) bool { return parts[i].Identity < parts[j].Identity })
	out := participantsPart{Open: true, Participants: []proto.APIParticipant{}}
	budget := answerBudget
	for _, p := range parts {
		if (q.Identity != "" && p.Identity != q.Identity) || p.Identity <= q.After {
			continue
		}
		budget -= len(p.ID) + len(p.Identity) + len(p.Metadata) + 512
		if len(out.Participants) == q.Limit || (budget < 0 && len(out.Participants) > 0) {
			out.More = true
			break
		}
		ap := proto.APIParticipant{Participant: proto.Participant(p), Node: a.c.me, Region: a.c.n.Region(), Producers: []proto.Producer{}}
		for _, pr := range prods {
			if pr.Participant == p.ID {
				pr.Origin = a.c.me
				ap.Producers = append(ap.Producers, proto.Producer(pr))
			}
		}
		sort.Slice(ap.Producers, func(i, j int) bool { return ap.Producers[i].ID < ap.Producers[j].ID })
		out.Participants = append(out.Participants, ap)
	}
	return out
}

// ListRooms lists the rooms of the cluster named after after, in name order, at most limit
// (1..MaxPageLimit) of them.
func (a *API) ListRooms(ctx context.Context, after string, limit int) (proto.RoomPage, error) {
	if err := checkPage(after, limit); err != nil {
		return proto.RoomPage{}, err
	}
	answers, unreachable, err := a.c.Ask(ctx, verbRooms, roomsQuery{After: after, Limit: limit})
	if err != nil {
		return proto.RoomPage{}, err
	}
	merged := map[string]*mergedRoom{}
	more, cut := false, ""
	for _, ans := range answers {
		var part roomsPart
		if !usable(ans, &part, &unreachable) {
			continue
		}
		if part.More && len(part.Rooms) > 0 {
			more, cut = true, lesser(cut, part.Rooms[len(part.Rooms)-1].Name)
		}
		for _, p := range part.Rooms {
			addPart(merged, ans.Node, p)
		}
	}
	names := make([]string, 0, len(merged))
	for name := range merged {
		if cut == "" || name <= cut { // past a node's last, its rooms are unknown
			names = append(names, name)
		}
	}
	sort.Strings(names)
	page := proto.RoomPage{Rooms: []proto.APIRoom{}, Unreachable: unreachable}
	if len(names) > limit {
		names, more = names[:limit], true
	}
	for _, name := range names {
		page.Rooms = append(page.Rooms, merged[name].APIRoom)
	}
	if more && len(names) > 0 {
		page.Next = names[len(names)-1]
	}
	return page, nil
}

// Room describes one room of the cluster: its counts and settings, and its producers with
// their relay trees.
func (a *API) Room(ctx context.Context, name string) (proto.APIRoomDetail, error) {
	if err := checkName("room", name); err != nil {
		return proto.APIRoomDetail{}, err
	}
	answers, unreachable, err := a.c.Ask(ctx, verbRoom, roomQuery{Name: name})
	if err != nil {
		return proto.APIRoomDetail{}, err
	}
	merged := map[string]*mergedRoom{}
	var producers []proto.Producer
	trees := map[string]map[string]string{} // producer -> child -> parent
	for _, ans := range answers {
		var part *roomPart
		if !usable(ans, &part, &unreachable) || part == nil {
			continue
		}
		addPart(merged, ans.Node, *part)
		producers = append(producers, part.ProducerList...)
		for id, edges := range part.Trees {
			t := trees[id]
			if t == nil {
				t = map[string]string{}
				trees[id] = t
			}
			for _, e := range edges {
				// A node knows its own parent best; another node's word holds until it speaks.
				if _, known := t[e.Node]; !known || e.Node == ans.Node {
					t[e.Node] = e.Parent
				}
			}
		}
	}
	r := merged[name]
	if r == nil {
		return proto.APIRoomDetail{}, notFound(unreachable, "room "+name+" is open on no node")
	}
	out := proto.APIRoomDetail{APIRoom: r.APIRoom, ProducerList: []proto.APIProducer{}}
	sort.Slice(producers, func(i, j int) bool { return producers[i].ID < producers[j].ID })
	for _, pr := range producers {
		ap := proto.APIProducer{Producer: pr, Tree: []proto.APIEdge{{Node: pr.Origin}}}
		for child, parent := range trees[pr.ID] {
			if child != pr.Origin {
				ap.Tree = append(ap.Tree, proto.APIEdge{Node: child, Parent: parent})
			}
		}
		sort.Slice(ap.Tree[1:], func(i, j int) bool { return ap.Tree[1+i].Node < ap.Tree[1+j].Node })
		out.ProducerList = append(out.ProducerList, ap)
	}
	return out, nil
}

// Participants lists a room's participants over the cluster with identities after after, in
// identity order, at most limit (1..MaxPageLimit) of them.
func (a *API) Participants(ctx context.Context, room, after string, limit int) (proto.ParticipantPage, error) {
	if err := checkName("room", room); err != nil {
		return proto.ParticipantPage{}, err
	}
	if err := checkPage(after, limit); err != nil {
		return proto.ParticipantPage{}, err
	}
	all, open, more, unreachable, err := a.gatherParticipants(ctx, participantsQuery{Room: room, After: after, Limit: limit})
	if err != nil {
		return proto.ParticipantPage{}, err
	}
	if !open {
		return proto.ParticipantPage{}, notFound(unreachable, "room "+room+" is open on no node")
	}
	page := proto.ParticipantPage{Participants: all, Unreachable: unreachable}
	if len(all) > limit {
		page.Participants, more = all[:limit], true
	}
	if more && len(page.Participants) > 0 {
		page.Next = page.Participants[len(page.Participants)-1].Identity
	}
	return page, nil
}

// Participant describes the participant of room with identity, wherever it is connected.
func (a *API) Participant(ctx context.Context, room, identity string) (proto.APIParticipant, error) {
	if err := checkName("room", room); err != nil {
		return proto.APIParticipant{}, err
	}
	if err := checkName("identity", identity); err != nil {
		return proto.APIParticipant{}, err
	}
	all, _, _, unreachable, err := a.gatherParticipants(ctx, participantsQuery{Room: room, Identity: identity, Limit: 1})
	if err != nil {
		return proto.APIParticipant{}, err
	}
	if len(all) == 0 {
		return proto.APIParticipant{}, notFound(unreachable, "no participant "+identity+" in room "+room)
	}
	return all[0], nil
}

// gatherParticipants asks every node for its part of q and merges them in identity order. Two
// sessions of one identity (on two nodes, for the moment the newer one takes over) count once:
// the newer.
func (a *API) gatherParticipants(ctx context.Context, q participantsQuery) (all []proto.APIParticipant, open, more bool, unreachable []string, err error) {
	answers, unreachable, err := a.c.Ask(ctx, verbParticipants, q)
	if err != nil {
		return nil, false, false, nil, err
	}
	byIdentity := map[string]proto.APIParticipant{}
	cut := ""
	for _, ans := range answers {
		var part participantsPart
		if !usable(ans, &part, &unreachable) {
			continue
		}
		open = open || part.Open
		if part.More && len(part.Participants) > 0 {
			more, cut = true, lesser(cut, part.Participants[len(part.Participants)-1].Identity)
		}
		for _, p := range part.Participants {
			if cut != "" && p.Identity > cut {
				continue // filtered again below: cut may still come down
			}
			if old, dup := byIdentity[p.Identity]; !dup || p.JoinedAt > old.JoinedAt {
				byIdentity[p.Identity] = p
			}
		}
	}
	all = make([]proto.APIParticipant, 0, len(byIdentity))
	for _, p := range byIdentity {
		if cut == "" || p.Identity <= cut { // past a node's last, its participants are unknown
			all = append(all, p)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Identity < all[j].Identity })
	return all, open, more, unreachable, nil
}

// mergedRoom is a room being merged from the nodes' parts.
type mergedRoom struct {
	proto.APIRoom
	updatedAt int64 // of the settings taken
}

// addPart adds node's part p of a room to the merged rooms. The settings are the same on every
// node but for a moment after a change: the newest (RoomSettings.UpdatedAt) win.
func addPart(merged map[string]*mergedRoom, nodeID string, p roomPart) {
	r := merged[p.Name]
	if r == nil {
		r = &mergedRoom{APIRoom: proto.APIRoom{Name: p.Name, Nodes: []proto.APIRoomNode{}}, updatedAt: -1}
		merged[p.Name] = r
	}
	if set := p.Settings; set.UpdatedAt > r.updatedAt {
		r.Metadata, r.MaxParticipants, r.EmptyTimeout, r.updatedAt = set.Metadata, set.MaxParticipants, set.EmptyTimeout, set.UpdatedAt
	}
	r.Participants += p.Participants
	r.Publishers += p.Publishers
	r.Producers += p.Producers
	if c := p.Settings.CreatedAt; c != 0 && (r.CreatedAt == 0 || c < r.CreatedAt) {
		r.CreatedAt = c
	}
	r.Nodes = append(r.Nodes, proto.APIRoomNode{ID: nodeID, Region: p.Region, Participants: p.Participants})
	sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].ID < r.Nodes[j].ID })
}

// usable decodes a node's answer into v; a node that answered with an error (or garbage) has
// not given its part, and is added to unreachable.
func usable(ans Answer, v any, unreachable *[]string) bool {
	if ans.Error == nil && json.Unmarshal(ans.Body, v) == nil {
		return true
	}
	*unreachable = append(*unreachable, ans.Node)
	sort.Strings(*unreachable)
	return false
}

// notFound is the error of a lookup that found nothing: not_found when every node answered,
// cluster_unavailable when some did not (the thing may be on one of them).
func notFound(unreachable []string, msg string) error {
	if len(unreachable) > 0 {
		return &proto.Error{Code: proto.CodeClusterUnavailable, Message: msg + " that answered; no answer from " + strings.Join(unreachable, ", ")}
	}
	return &proto.Error{Code: proto.CodeNotFound, Message: msg}
}

// lesser is the lesser of two cursors, "" standing for none.
func lesser(cut, last string) string {
	if cut == "" || last < cut {
		return last
	}
	return cut
}

func badRequest(msg string) error { return &proto.Error{Code: proto.CodeBadRequest, Message: msg} }

// checkPage checks the cursor and size of a page.
func checkPage(after string, limit int) error {
	if limit < 1 || limit > MaxPageLimit {
		return badRequest(fmt.Sprintf("limit must be between 1 and %d", MaxPageLimit))
	}
	if len(after) > proto.MaxName {
		return badRequest(fmt.Sprintf("after is longer than %d bytes", proto.MaxName))
	}
	return nil
}

// checkName checks a room name or identity.
func checkName(what, name string) error {
	if name == "" {
		return badRequest(what + " is empty")
	}
	if len(name) > proto.MaxName {
		return badRequest(fmt.Sprintf("%s is longer than %d bytes", what, proto.MaxName))
	}
	return nil
}
