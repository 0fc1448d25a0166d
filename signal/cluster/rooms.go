package cluster

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// roomState is what this node knows of an open room beyond its own participants: the relay
// tree of each producer (child node -> parent node), from the nodes' piped/unpiped events.
type roomState struct {
	r    *node.Room
	hex  string
	subs []*nats.Subscription
	tree map[string]map[string]string // producer -> child -> parent
}

func (s *roomState) forgetNode(id string) {
	for _, t := range s.tree {
		delete(t, id)
		for child, parent := range t {
			if parent == id {
				delete(t, child)
			}
		}
	}
}

// event is one room event between nodes.
type event struct {
	Node   string          `json:"node"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data"`
}

// Events between nodes only (besides the PROTOCOL.md notifications).
const (
	evPiped   = "piped"   // {"producer","parent"}: the sending node now carries producer
	evUnpiped = "unpiped" // {"producer"}: it no longer does
)

type pipedEvent struct {
	Producer string `json:"producer"`
	Parent   string `json:"parent,omitempty"`
}

// syncReply is a node's part of a room, answered to a node that opens the room.
type syncReply struct {
	Node         string                 `json:"node"`
	Participants []node.ParticipantInfo `json:"participants"`
	Producers    []node.ProducerInfo    `json:"producers"`
	Piped        []pipedEvent           `json:"piped"`
}

// RoomOpened implements node.Cluster: subscribe to the room's events and learn its state from
// the other nodes.
func (c *Cluster) RoomOpened(r *node.Room) {
	s := &roomState{r: r, hex: roomHex(r.Name()), tree: make(map[string]map[string]string)}
	c.mu.Lock()
	c.rooms[r.Name()] = s
	c.mu.Unlock()
	ev, err := c.nc.Subscribe(subjectRoom(s.hex, "ev"), func(m *nats.Msg) { c.onEvent(s, m) })
	if err != nil {
		c.log.Error("room subscription failed", "room", r.Name(), "error", err)
		return
	}
	c.mu.Lock()
	s.subs = []*nats.Subscription{ev}
	c.mu.Unlock()
	_ = c.nc.Flush()
	c.syncRoom(s)
}

// syncRoom asks the other nodes for their part of the room and applies the answers.
func (c *Cluster) syncRoom(s *roomState) {
	expect := len(c.Peers())
	if expect == 0 {
		return
	}
	// Replies come to a subscription made when the node joined: interest in a fresh inbox
	// would still be spreading over the NATS routes when the first replies are sent.
	token := nuid.Next()
	ch := make(chan *nats.Msg, expect+8)
	c.mu.Lock()
	c.syncWaits[token] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.syncWaits, token)
		c.mu.Unlock()
	}()
	req, _ := json.Marshal(map[string]string{"node": c.me})
	if err := c.nc.PublishRequest(subjectRoom(s.hex, "sync"), subjectSyncReply(c.me, token), req); err != nil {
		return
	}
	timeout := time.NewTimer(syncWait)
	defer timeout.Stop()
	var reps []syncReply
	for len(reps) < expect {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timeout.C:
		}
		if m == nil {
			break // a node that did not answer in time (it left, or is slow)
		}
		var rep syncReply
		if json.Unmarshal(m.Data, &rep) != nil || rep.Node == c.me {
			continue
		}
		reps = append(reps, rep)
	}
	// The relay trees first: adding a producer may pipe it at once, and the choice of parent
	// needs them.
	c.mu.Lock()
	for _, rep := range reps {
		for _, pe := range rep.Piped {
			s.setTree(pe.Producer, rep.Node, pe.Parent)
		}
	}
	c.mu.Unlock()
	for _, rep := range reps {
		for _, p := range rep.Participants {
			s.r.AddRemoteParticipant(p, rep.Node)
		}
	}
	for _, rep := range reps {
		for _, p := range rep.Producers {
			if _, err := s.r.AddRemoteProducer(p, rep.Node); err != nil {
				c.log.Warn("bad remote producer", "from", rep.Node, "error", err)
			}
		}
	}
}

func (s *roomState) setTree(producer, child, parent string) {
	t := s.tree[producer]
	if t == nil {
		t = make(map[string]string)
		s.tree[producer] = t
	}
	t[child] = parent
}

func subjectSyncReply(nodeID, token string) string {
	return "cascade.syncreply." + nodeID + "." + token
}

// onSyncReply hands a sync reply to the syncRoom call waiting for it.
func (c *Cluster) onSyncReply(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	ch := c.syncWaits[token]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// onSync answers another node that opened a room (subject cascade.room.<hex>.sync): with this
// node's part of the room, or with nothing when the room is not open here, so that the asking
// node need not wait for nodes without it.
func (c *Cluster) onSync(m *nats.Msg) {
	var req struct {
		Node string `json:"node"`
	}
	if json.Unmarshal(m.Data, &req) != nil || req.Node == c.me || m.Reply == "" {
		return
	}
	rep := syncReply{Node: c.me}
	parts := strings.Split(m.Subject, ".")
	name, err := hex.DecodeString(parts[len(parts)-2])
	c.mu.Lock()
	s := c.rooms[string(name)]
	c.mu.Unlock()
	if err == nil && s != nil {
		rep.Participants, rep.Producers = s.r.LocalState()
		c.mu.Lock()
		for pid, in := range c.in {
			if in.p.Room() == s.r {
				rep.Piped = append(rep.Piped, pipedEvent{Producer: pid, Parent: in.parent})
			}
		}
		c.mu.Unlock()
	}
	b, err := json.Marshal(rep)
	if err == nil {
		_ = m.Respond(b)
	}
}

// RoomClosed implements node.Cluster: stop following the room, and stop relaying its producers.
func (c *Cluster) RoomClosed(r *node.Room) {
	c.mu.Lock()
	s := c.rooms[r.Name()]
	if s == nil || s.r != r {
		c.mu.Unlock()
		return
	}
	delete(c.rooms, r.Name())
	var ins []*inPipe
	for pid, in := range c.in {
		if in.p.Room() == r {
			delete(c.in, pid)
			ins = append(ins, in)
		}
	}
	var outs []*outPipe
	for k, o := range c.out {
		if o.cons != nil && o.room == r {
			delete(c.out, k)
			outs = append(outs, o)
		}
	}
	c.mu.Unlock()
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	for _, in := range ins {
		c.forgetIn(in)
		c.requestUnpipe(in)
	}
	for _, o := range outs {
		c.forgetOut(o)
		o.cons.Detach()
		c.notifyDropped(o)
	}
}

// Publish implements node.Cluster: a local room event for the other nodes.
func (c *Cluster) Publish(r *node.Room, method string, data any) {
	if method == node.EventProducerRemoved {
		if m, ok := data.(map[string]string); ok {
			c.dropProducer(m["id"])
		}
	}
	c.publish(r.Name(), method, data)
}

func (c *Cluster) publish(room, method string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		return
	}
	b, err := json.Marshal(event{Node: c.me, Method: method, Data: raw})
	if err != nil {
		return
	}
	if err := c.nc.Publish(subjectRoom(roomHex(room), "ev"), b); err != nil {
		c.log.Warn("cannot publish room event", "room", room, "method", method, "error", err)
	}
}

// onEvent applies another node's room event to the local room.
func (c *Cluster) onEvent(s *roomState, m *nats.Msg) {
	var ev event
	if json.Unmarshal(m.Data, &ev) != nil || ev.Node == c.me || ev.Node == "" {
		return
	}
	r := s.r
	switch ev.Method {
	case node.EventParticipantJoined:
		var p node.ParticipantInfo
		if json.Unmarshal(ev.Data, &p) == nil && p.ID != "" {
			r.ReplaceIdentity(p) // the newer session wins, wherever it is
			r.AddRemoteParticipant(p, ev.Node)
		}
	case node.EventParticipantLeft:
		var p struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(ev.Data, &p) == nil {
			r.RemoveRemoteParticipant(p.ID)
		}
	case node.EventProducerAdded:
		var p node.ProducerInfo
		if json.Unmarshal(ev.Data, &p) == nil {
			if _, err := r.AddRemoteProducer(p, ev.Node); err != nil {
				c.log.Warn("bad remote producer", "from", ev.Node, "error", err)
			}
		}
	case node.EventProducerRemoved:
		var p struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(ev.Data, &p) == nil {
			c.dropProducer(p.ID)
			r.RemoveRemoteProducer(p.ID)
		}
	case node.EventProducerMuted:
		var p struct {
			ID    string `json:"id"`
			Muted bool   `json:"muted"`
		}
		if json.Unmarshal(ev.Data, &p) == nil {
			r.SetRemoteMuted(p.ID, p.Muted)
		}
	case node.EventMessage:
		r.DeliverMessage(ev.Data)
	case node.EventData:
		var d node.DataMessage
		if json.Unmarshal(ev.Data, &d) == nil {
			r.DeliverData(d.Data, d.IsString)
		}
	case evPiped, evUnpiped:
		var p pipedEvent
		if json.Unmarshal(ev.Data, &p) != nil {
			return
		}
		c.mu.Lock()
		if ev.Method == evPiped {
			s.setTree(p.Producer, ev.Node, p.Parent)
		} else if t := s.tree[p.Producer]; t != nil {
			delete(t, ev.Node)
		}
		c.mu.Unlock()
	}
}
