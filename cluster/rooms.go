package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/nats-io/nuid"
)

// DefaultSyncWait bounds how long a node opening a room waits for the other nodes' parts of it
// (Options.SyncWait).
const DefaultSyncWait = 300 * time.Millisecond

// Room event types (Envelope.Type on cascade.room.<token>.ev): the PROTOCOL.md notification
// methods, and piped/unpiped between nodes only.
const (
	evParticipantJoined  = node.EventParticipantJoined
	evParticipantLeft    = node.EventParticipantLeft
	evParticipantUpdated = node.EventParticipantUpdated
	evProducerAdded      = node.EventProducerAdded
	evProducerRemoved    = node.EventProducerRemoved
	evProducerMuted      = node.EventProducerMuted
	evMessage            = node.EventMessage
	evData               = "data"
	evPiped              = "piped"   // the sender now gets producer from parent
	evUnpiped            = "unpiped" // the sender no longer carries producer
	typeSync             = "sync"
	typeSyncReply        = "syncReply"
)

// Bodies of the room events.
type (
	joinedBody struct {
		Participant node.ParticipantInfo `json:"participant"`
		Replaces    []string             `json:"replaces,omitempty"`
		Resumed     bool                 `json:"resumed,omitempty"`
	}
	idBody struct {
		ID          string `json:"id"`
		Participant string `json:"participant,omitempty"`
	}
	mutedBody struct {
		ID       string `json:"id"`
		Muted    bool   `json:"muted"`
		ByServer bool   `json:"byServer,omitempty"`
	}
	messageBody struct {
		From     string          `json:"from"`
		Identity string          `json:"identity"`
		Data     json.RawMessage `json:"data"`
	}
	dataBody struct {
		Data     []byte `json:"data"`
		IsString bool   `json:"string,omitempty"`
	}
	pipedBody struct {
		Producer string `json:"producer"`
		Parent   string `json:"parent,omitempty"`
	}
	// syncReply is a node's part of a room, answered to a node that opens the room.
	// syncRequest asks the nodes for their part of a room.
	syncRequest struct {
		Room  string `json:"room"`
		Reply string `json:"reply"` // the subject of the answers (signed, so a copy cannot divert them)
	}
	// Partial and Total: see RoomSyncMsg. Settings are the room's settings on the sender
	// (absent when the room is not open there): the node opening the room adopts them if newer.
	syncReply struct {
		Participants []node.ParticipantInfo `json:"participants"`
		Producers    []node.ProducerInfo    `json:"producers"`
		Piped        []pipedBody            `json:"piped"`
		Partial      bool                   `json:"partial,omitempty"`
		Total        int                    `json:"total"`
		Settings     *node.RoomSettings     `json:"settings,omitempty"`
	}
)

func subjectRelay(nodeID, verb string) string { return "cascade.relay." + nodeID + "." + verb }

// subjectRoom names a room's subject by its token (roomToken).
func subjectRoom(token, verb string) string { return "cascade.room." + token + "." + verb }

// roomToken is a room's token in NATS subjects: a hash of its name, since room names may hold
// characters subjects cannot (".", "*", ">", spaces), and a long name must not make a subject
// longer than NATS takes (a control line over 4 KiB closes the connection).
func roomToken(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:16])
}

func subjectSyncReply(nodeID, token string) string {
	return "cascade.syncreply." + nodeID + "." + token
}

// room is an open room and its subscription (nil until it is made, or if it failed).
type room struct {
	r   *node.Room
	sub Subscription
}

// openRoom subscribes to the room's events and learns its state from the other nodes. The room
// is known (to RoomState and to apply) before its first event can arrive.
func (c *Cluster) openRoom(r *node.Room) {
	s := &room{r: r}
	c.mu.Lock()
	c.rooms[r.Name()] = s
	c.state.Open(r.Name())
	c.mu.Unlock()
	sub, err := c.bus.Subscribe(subjectRoom(roomToken(r.Name()), "ev"), func(m Msg) { c.onEvent(r, m) })
	if err != nil {
		c.log.Error("room subscription failed", "room", r.Name(), "error", err)
		return
	}
	c.mu.Lock()
	s.sub = sub
	c.mu.Unlock()
	c.syncRoom(r)
}

// closeRoom stops following the room and relaying its producers.
func (c *Cluster) closeRoom(r *node.Room) {
	c.mu.Lock()
	s := c.rooms[r.Name()]
	if s == nil || s.r != r {
		c.mu.Unlock()
		return
	}
	delete(c.rooms, r.Name())
	c.state.Close(r.Name())
	sub := s.sub
	c.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	c.pipes.CloseRoom(r)
}

// syncRoom asks the other nodes for their part of the room and applies the answers. It waits
// at most SyncWait (the join that opened the room is answered after it, so the settings held
// elsewhere matter); the nodes that have not answered by then are waited for in the background
// until syncLateBound, their answers applied as they arrive: a node a round trip of 300 ms and
// more away (another continent) answers after the join's wait, and without its answer this node
// would never learn the producers that room had there before it opened here.
func (c *Cluster) syncRoom(r *node.Room) {
	expect := c.askable() // a peer dropped for silence a moment ago may hold part of it
	if len(expect) == 0 {
		return
	}
	// Replies come to a subscription made when the node joined: interest in a fresh inbox
	// would still be spreading over the NATS routes when the first replies are sent.
	token := nuid.Next()
	ch := make(chan Envelope, len(expect)+8)
	c.mu.Lock()
	c.syncWaits[token] = ch
	c.mu.Unlock()
	done := func() {
		c.mu.Lock()
		delete(c.syncWaits, token)
		c.mu.Unlock()
	}
	asked := time.Now()
	reply := subjectSyncReply(c.me, token)
	b, err := c.stamp.Seal(typeSync, syncRequest{Room: r.Name(), Reply: reply})
	if err != nil || c.bus.Publish(Msg{Subject: subjectRoom(roomToken(r.Name()), "sync"), Reply: reply, Data: b}) != nil {
		done()
		return
	}
	timeout := time.NewTimer(c.o.SyncWait)
	parts := collectSync(ch, expect, timeout.C, c.stop)
	timeout.Stop()
	c.applySync(r, parts)
	if len(expect) == 0 {
		done()
		return
	}
	select {
	case <-c.stop:
		done()
		return
	default:
	}
	c.wg.Add(1)
	go c.syncLate(r, ch, expect, asked, done)
}

// syncLateBound is how long after asking a node opening a room still takes the other nodes'
// answers: a few seconds, and at least the heartbeat timeout (a node silent that long is
// dropped from the membership, and its part of the room with it).
func (c *Cluster) syncLateBound() time.Duration { return max(SyncLateWait, c.o.Timeout) }

// SyncLateWait is the least time a node opening a room keeps taking the other nodes' answers
// after the join's wait (SyncWait) passed; see syncLateBound. It bounds the round trip between
// two nodes the cluster tolerates for learning a room (docs/DEPLOYMENT.md, "Two regions").
const SyncLateWait = 5 * time.Second

// syncPart is one node's answer to a room sync.
type syncPart struct {
	e   Envelope
	rep syncReply
}

// collectSync takes answers from ch until every node in expect answered, or until or stop.
func collectSync(ch <-chan Envelope, expect map[string]bool, until <-chan time.Time, stop <-chan struct{}) []syncPart {
	var parts []syncPart
	for len(expect) > 0 {
		select {
		case e := <-ch:
			if p, ok := takeSync(e, expect); ok {
				parts = append(parts, p)
			}
		case <-until:
			return parts // the nodes that did not answer in time (they left, or are far or slow)
		case <-stop:
			return parts
		}
	}
	return parts
}

// takeSync reads answer e and deletes its node from expect: false for a malformed one. An
// answer from a node not asked (it joined since) or a second one is taken too: the stamps
// order it with what is known already.
func takeSync(e Envelope, expect map[string]bool) (syncPart, bool) {
	var rep syncReply
	if json.Unmarshal(e.Body, &rep) != nil {
		return syncPart{}, false
	}
	delete(expect, e.Node)
	return syncPart{e, rep}, true
}

// syncLate applies the late answers to the sync of room r, asked at asked, one by one as they
// arrive, until every node in expect answered or syncLateBound passed; then done.
func (c *Cluster) syncLate(r *node.Room, ch <-chan Envelope, expect map[string]bool, asked time.Time, done func()) {
	defer c.wg.Done()
	defer done()
	bound := time.NewTimer(time.Until(asked.Add(c.syncLateBound())))
	defer bound.Stop()
	for len(expect) > 0 {
		select {
		case e := <-ch:
			if p, ok := takeSync(e, expect); ok && c.isOpen(r) {
				c.log.Debug("late room sync answer", "room", r.Name(), "from", e.Node, "after", time.Since(asked))
				c.applySync(r, []syncPart{p})
			}
		case <-bound.C:
			// A node that left within the resume grace is asked too, and never answers.
			c.log.Debug("nodes did not answer a room sync", "room", r.Name(), "nodes", len(expect), "after", c.syncLateBound())
			return
		case <-c.stop:
			return
		}
	}
}

// isOpen tells whether r is the room open here under its name.
func (c *Cluster) isOpen(r *node.Room) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.rooms[r.Name()]
	return s != nil && s.r == r
}

// applySync applies answers to a sync of room r.
func (c *Cluster) applySync(r *node.Room, parts []syncPart) {
	// The room's settings first: a room created by the room API elsewhere has its limits and
	// metadata here before the join that opened it is answered.
	for _, p := range parts {
		if p.rep.Settings != nil {
			r.AdoptSettings(*p.rep.Settings)
		}
	}
	// The relay trees next: adding a producer may pipe it at once, and the choice of parent
	// needs them.
	for _, p := range parts {
		for _, pe := range p.rep.Piped {
			c.pipes.Trees().Piped(r.Name(), pe.Producer, p.e.Node, pe.Parent)
		}
	}
	// Then every part's participants before any part's producers, as the join answer lists them.
	var adds, prods []Effect
	now := c.o.Clock.Now()
	for _, p := range parts {
		snap := RoomSyncMsg{Participants: p.rep.Participants, Producers: p.rep.Producers, Partial: p.rep.Partial, Total: p.rep.Total}
		for _, eff := range c.state.Apply(r.Name(), p.e.Stamp(), snap, now) {
			switch eff.(type) {
			case AddRemoteProducer, MoveProducer:
				prods = append(prods, eff)
			default:
				adds = append(adds, eff)
			}
		}
	}
	c.apply(append(adds, prods...))
}

// onSyncReply hands a sync reply to the syncRoom call waiting for it.
func (c *Cluster) onSyncReply(m Msg) {
	e, ok := c.receive(m)
	if !ok || e.Type != typeSyncReply {
		return
	}
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	ch := c.syncWaits[token]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- e:
		default:
		}
	}
}

// onSync answers another node that opened a room (subject cascade.room.<token>.sync): with this
// node's part of the room, or with nothing when the room is not open here, so that the asking
// node need not wait for nodes without it.
func (c *Cluster) onSync(m Msg) {
	e, ok := c.receive(m)
	if !ok || e.Type != typeSync || m.Reply == "" {
		return
	}
	var rep syncReply
	var req syncRequest
	parts := strings.Split(m.Subject, ".")
	err := json.Unmarshal(e.Body, &req)
	if err == nil && (len(parts) < 2 || roomToken(req.Room) != parts[len(parts)-2] || req.Reply != m.Reply) {
		c.reject(rejMismatch, e.Node) // the room named is not the subject's, or the reply was diverted
		return
	}
	c.mu.Lock()
	s := c.rooms[req.Room]
	c.mu.Unlock()
	seq := c.stamp.Reserve() // before the state is read: see Stamper.Reserve
	if err == nil && s != nil {
		parts, prods := s.r.LocalState()
		snap := Snapshot(parts, prods, SyncBudget)
		rep.Participants, rep.Producers, rep.Partial, rep.Total = snap.Participants, snap.Producers, snap.Partial, snap.Total
		settings := s.r.Settings()
		rep.Settings = &settings
		for _, pe := range c.pipes.Piped(s.r.Name()) {
			rep.Piped = append(rep.Piped, pipedBody{Producer: pe.Node, Parent: pe.Parent})
		}
	}
	if b, err := c.stamp.SealAs(seq, typeSyncReply, rep); err == nil {
		_ = c.bus.Publish(Msg{Subject: m.Reply, Data: b})
	}
}

// publish sends a room event to the other nodes.
func (c *Cluster) publish(roomName, typ string, body any) {
	select {
	case <-c.stop:
		return
	default:
	}
	b, err := c.stamp.Seal(typ, body)
	if err != nil {
		return
	}
	if err := c.bus.Publish(Msg{Subject: subjectRoom(roomToken(roomName), "ev"), Data: b}); err != nil {
		c.log.Warn("cannot publish room event", "room", roomName, "type", typ, "error", err)
	}
}

// onEvent applies another node's room event to the local room.
func (c *Cluster) onEvent(r *node.Room, m Msg) {
	e, ok := c.receive(m)
	if !ok {
		return
	}
	switch e.Type {
	case evParticipantJoined, evParticipantUpdated, evParticipantLeft, evProducerAdded, evProducerRemoved, evProducerMuted:
		if msg, err := DecodeRoomMsg(e); err == nil {
			c.apply(c.state.Apply(r.Name(), e.Stamp(), msg, c.o.Clock.Now()))
		}
	case evMessage:
		var b messageBody
		if json.Unmarshal(e.Body, &b) == nil {
			r.DeliverMessage(b.From, b.Identity, b.Data)
		}
	case evData:
		var b dataBody
		if json.Unmarshal(e.Body, &b) == nil {
			r.DeliverData(b.Data, b.IsString)
		}
	case evPiped, evUnpiped:
		var b pipedBody
		if json.Unmarshal(e.Body, &b) == nil {
			if e.Type == evUnpiped {
				b.Parent = ""
			}
			c.pipes.Trees().Piped(r.Name(), b.Producer, e.Node, b.Parent)
		}
	case evSpeakers:
		c.onSpeakers(r, e)
	}
}

// apply carries out RoomState's effects on the rooms open here, in order. It holds no lock
// while it calls the node.
func (c *Cluster) apply(effs []Effect) {
	for _, eff := range effs {
		c.mu.Lock()
		s := c.rooms[EffectRoom(eff)]
		c.mu.Unlock()
		if s == nil {
			continue
		}
		r := s.r
		switch e := eff.(type) {
		case ReplaceIdentity:
			r.ReplaceIdentity(e.Participant, e.Replaces) // the newer session wins, wherever it is
		case AddRemoteParticipant:
			r.AddRemoteParticipant(e.Participant, e.Node)
		case UpdateRemoteParticipant:
			r.UpdateRemoteParticipant(e.Participant, e.Node)
		case RemoveRemoteParticipant:
			r.RemoveRemoteParticipant(e.ID)
		case AddRemoteProducer:
			if _, err := r.AddRemoteProducer(e.Producer, e.Origin); err != nil {
				c.log.Warn("bad remote producer", "from", e.Origin, "error", err)
			}
		case RemoveRemoteProducer:
			r.RemoveRemoteProducer(e.ID) // its pipes go on the node's ProducerRemoved event
		case SetRemoteMuted:
			r.SetRemoteMutedBy(e.ID, e.Muted, e.ByServer)
		case Supersede:
			r.Supersede(e.Participant, e.Node) // a resumed session fences its stale copy here
		case MoveProducer:
			c.applyMove(r, e)
		}
	}
}
