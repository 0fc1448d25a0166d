// Package cluster joins nodes into one cluster over NATS: membership (heartbeats carrying each
// node's incarnation and load), room events and sync (every participant sees the same room on
// every node), placement (a pure function), the control path of the relay pipes, and the
// embedded NATS server. Every message between nodes travels in one Envelope, signed by a node
// key the cluster secret vouches for (NodeKeys, Verifier), merged by (node, incarnation,
// sequence); relay keys travel sealed to the receiving node (Sealed). The decisions are
// deterministic state machines fed by messages and an injected clock (Membership, RoomState,
// Place, relay trees); the Cluster carries messages between them and the Bus (NATSBus, or
// MemNet in tests and simulators) and applies their effects to the node. The node talks to it
// through typed events (node.Events); the relay through the small interfaces it declares
// (relay.Signaler, relay.Peers).
package cluster

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/hashicorp/go-hclog"
)

// SubjectHeartbeat is the subject prefix of node heartbeats: see HeartbeatSubject.
const SubjectHeartbeat = "cascade.node.heartbeat"

// Envelope types of the node and relay subjects.
const (
	typeHeartbeat = "heartbeat"
	typePipe      = "pipe"
	typePipeReply = "pipeReply"
	typeUnpipe    = "unpipe"
	typeDropped   = "dropped"
	typeLayers    = "layers"
)

// Options configure a Cluster.
type Options struct {
	// Heartbeat is the interval of this node's heartbeats and relay keepalives (0:
	// DefaultHeartbeat).
	Heartbeat time.Duration
	// Timeout is how long a peer silent on both paths stays a member (below two intervals:
	// three intervals, DefaultTimeout by default); see Membership.
	Timeout time.Duration
	// Clock tells the time (nil: the wall clock).
	Clock Clock
	// Incarnation is this process's boot id (empty: a random one).
	Incarnation string
	// Logger receives the cluster's logs.
	Logger hclog.Logger
	// Secrets are the cluster secrets: they vouch for this incarnation's keys, and a message
	// of another node is accepted only with keys vouched for by one of them (see Verifier).
	// Every node of a cluster shares one (two during a rotation). Empty: a random secret, for
	// a node alone.
	Secrets Secrets
	// ResumeGrace is how long a departed (or restarted) node's participants and producers stay
	// in the rooms, so that their sessions resume on another node before anyone is told they
	// left (0: DefaultResumeGrace; negative: none, they go at once).
	ResumeGrace time.Duration
	// SyncWait bounds how long a node opening a room waits for the other nodes' parts of it,
	// its settings among them (0: DefaultSyncWait). It returns as soon as every node answered:
	// a longer bound costs only when a node is silent. It bounds the join's wait only: the
	// answers that come later (a node far away) are applied as they arrive, until
	// max(SyncLateWait, Timeout) after the question.
	SyncWait time.Duration
	// Observer, if set, gets every node event after the cluster handled it, and RoomStarted
	// and RoomFinished where this node owns them (roomlife.go). It must not block.
	Observer node.Events
}

// Cluster is a node's membership in the cluster: it announces the node, tracks its peers,
// carries room events both ways, and is the relay's control path. It implements node.Events
// and relay.Signaler.
type Cluster struct {
	n       *node.Node
	bus     Bus
	pipes   *relay.Pipes
	o       Options
	log     hclog.Logger
	me      string
	stamp   *Stamper
	keys    *NodeKeys
	verify  *Verifier
	rejects *rejects
	dedup   *Dedup
	members *Membership
	gone    *departed // recently left: still asked by the room API (see departed)
	state   *RoomState
	asks    asks
	life    roomLife

	resyncs chan string
	passes  atomic.Uint64 // re-sync passes run
	selfSeq atomic.Uint64 // sequence number of the newest own heartbeat back from the bus
	agg     *aggState     // regional heartbeat aggregation (digest_cluster.go)

	mu        sync.Mutex
	rooms     map[string]*room
	syncWaits map[string]chan Envelope // room syncs in progress, by reply token
	subs      []Subscription

	stop chan struct{}
	wg   sync.WaitGroup
}

// New joins node n to the cluster on bus, with pipes as its relay: it subscribes, starts the
// heartbeat and the pipes' manager, and becomes the node's Events. Call it before the node
// serves clients; Close leaves.
func New(n *node.Node, pipes *relay.Pipes, bus Bus, o Options) (*Cluster, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Timeout < 2*o.Heartbeat {
		o.Timeout = 3 * o.Heartbeat
	}
	if o.SyncWait <= 0 {
		o.SyncWait = DefaultSyncWait
	}
	if o.Clock == nil {
		o.Clock = WallClock{}
	}
	if o.Incarnation == "" {
		o.Incarnation = NewIncarnation()
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	switch {
	case o.ResumeGrace == 0:
		o.ResumeGrace = DefaultResumeGrace
	case o.ResumeGrace < 0:
		o.ResumeGrace = 0
	}
	if len(o.Secrets) == 0 {
		o.Secrets = Secrets{RandomSecret()}
	}
	me := n.ID()
	keys, err := NewNodeKeys(me, o.Incarnation, o.Clock.Now(), o.Secrets)
	if err != nil {
		return nil, err
	}
	log := o.Logger.Named("cluster").With("node", me, "inc", o.Incarnation)
	c := &Cluster{n: n, bus: bus, pipes: pipes, o: o, log: log, me: me,
		stamp: NewSigningStamper(keys, o.Clock), keys: keys, verify: NewVerifier(o.Secrets, o.Clock),
		rejects: &rejects{clock: o.Clock, log: log},
		dedup:   NewDedup(), members: NewMembership(me, o.Heartbeat, o.Timeout),
		gone:  newDeparted(max(o.ResumeGrace, o.Timeout)),
		state: NewRoomStateGrace(o.ResumeGrace),
		asks:  asks{handlers: make(map[string]AskHandler), waits: make(map[string]chan Envelope)},
		rooms: make(map[string]*room), syncWaits: make(map[string]chan Envelope), resyncs: make(chan string, 1), stop: make(chan struct{})}
	c.agg = newAggState(me, n.Stats().Region, o)
	c.HandleAsk(verbRoomLife, c.answerLife)
	n.SetRelayAddr(pipes.Addr().String())
	for subj, h := range map[string]func(Msg){
		subjectDigests:                c.onDigest,
		subjectRelay(me, typePipe):    c.onPipe,
		subjectRelay(me, typeUnpipe):  c.onUnpipe,
		subjectRelay(me, typeDropped): c.onDropped,
		subjectRelay(me, typeLayers):  c.onLayers,
		subjectRoom("*", "sync"):      c.onSync,
		subjectSyncReply(me, "*"):     c.onSyncReply,
		subjectAsk("*"):               c.onAsk,
		subjectAskReply(me, "*"):      c.onAskAnswer,
	} {
		sub, err := bus.Subscribe(subj, h)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		c.subs = append(c.subs, sub)
	}
	pipes.Start(c, c.members)
	n.SetEvents(c)
	c.wg.Add(2)
	go c.beat()
	go c.resync()
	c.log.Info("joined the cluster", "relay", pipes.Addr(), "fanout", pipes.Fanout())
	return c, nil
}

// Close leaves the cluster: the heartbeat stops and subscriptions end. The pipes and the bus
// are the caller's to close (after this).
func (c *Cluster) Close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	for _, r := range c.rooms {
		if r.sub != nil {
			subs = append(subs, r.sub)
		}
	}
	c.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	c.wg.Wait()
}

// Members is the peers table.
func (c *Cluster) Members() *Membership { return c.members }

// Rooms is the view of the other nodes' part of the rooms open here.
func (c *Cluster) Rooms() *RoomState { return c.state }

// Peers lists the live nodes other than this one.
func (c *Cluster) Peers() []node.Stats { return c.members.Peers() }

// Available tells whether this node reaches the cluster: its bus is connected and its own
// heartbeats come back through it.
func (c *Cluster) Available() bool {
	return c.bus.Connected() && c.members.Reachable(c.o.Clock.Now())
}

// Incarnation is this node's boot id.
func (c *Cluster) Incarnation() string { return c.o.Incarnation }

// checksPerBeat is how often per heartbeat interval the silent peers are looked for: a dead
// node is noticed at most a tenth of an interval after the timeout, so that the nodes that
// notice it (an orphan and the carrier it re-attaches to) agree within that.
const checksPerBeat = 10

// beat announces the node and keeps its relay links alive every interval, and expires the
// peers silent on both paths.
func (c *Cluster) beat() {
	defer c.wg.Done()
	t := time.NewTicker(c.o.Heartbeat / checksPerBeat)
	defer t.Stop()
	defer c.unlisten()
	relay := c.pipes.Transport()
	for i := 0; ; i++ {
		beat := i%checksPerBeat == 0
		if beat {
			c.publishBeat()
			relay.Keepalive()
		}
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		now := c.o.Clock.Now()
		for id, at := range relay.Heard() {
			c.members.Relayed(id, at)
		}
		for _, id := range c.pipes.Flowing() {
			c.members.Carried(id, now)
		}
		for _, id := range c.members.Tick(now) {
			c.nodeGone(id, "silent")
		}
		c.aggregate(now)
		if beat {
			c.apply(c.state.Tick(now)) // the orphans whose grace is over leave
		}
	}
}

// Resync asks the other nodes again for their parts of every room open here, and merges the
// answers: after messages between nodes were lost (NATS was away, a subscription fell behind).
// Calls are coalesced; it never blocks.
func (c *Cluster) Resync(reason string) {
	select {
	case c.resyncs <- reason:
	default:
	}
}

// Re-sync timing: triggers within resyncSettle (every peer's heartbeat returning after an
// outage) make one pass, which syncs up to resyncParallel rooms at a time.
const (
	resyncSettle   = 250 * time.Millisecond
	resyncParallel = 32
)

// resync runs the re-sync passes Resync asks for.
func (c *Cluster) resync() {
	defer c.wg.Done()
	for {
		var reason string
		select {
		case <-c.stop:
			return
		case reason = <-c.resyncs:
		}
		select {
		case <-c.stop:
			return
		case <-time.After(resyncSettle):
		}
		select { // triggers meanwhile are served by this pass
		case <-c.resyncs:
		default:
		}
		c.mu.Lock()
		rooms := make([]*node.Room, 0, len(c.rooms))
		for _, s := range c.rooms {
			rooms = append(rooms, s.r)
		}
		c.mu.Unlock()
		if len(rooms) == 0 {
			continue
		}
		c.log.Info("re-syncing rooms", "rooms", len(rooms), "reason", reason)
		c.passes.Add(1)
		sem := make(chan struct{}, resyncParallel)
		var wg sync.WaitGroup
		for _, r := range rooms {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c.syncRoom(r)
			}()
		}
		wg.Wait()
	}
}

// receive opens, verifies and merges an incoming envelope: false for a bad, forged, tampered,
// duplicate or stale one (counted by reason), or this node's own (only its own heartbeats are
// verified, for onRegionBeat and onDigest; the envelope is zero when verification failed). A new incarnation
// of a known node ends what the old one left here first.
func (c *Cluster) receive(m Msg) (Envelope, bool) {
	e, err := Open(m.Data)
	if err != nil {
		c.rejects.add(rejMalformed, "")
		return Envelope{}, false
	}
	if e.Node == c.me && e.Type != typeHeartbeat && e.Type != typeDigest {
		return Envelope{}, false // this node's own event, back from the bus
	}
	if err := c.verify.Verify(&e); err != nil {
		c.rejects.add(reasonOf(err), e.Node)
		return Envelope{}, false
	}
	if e.Node == c.me {
		return e, false
	}
	if c.verify.Older(&e) {
		c.rejects.add(rejOldIncarnation, e.Node)
		return e, false
	}
	restarted, err := c.dedup.Accept(e)
	if restarted {
		c.nodeGone(e.Node, "restarted")
	}
	if err != nil {
		c.rejects.add(reasonOf(err), e.Node)
		return e, false
	}
	c.verify.Accepted(&e)
	return e, true
}

// reject counts a message refused after receive accepted its envelope (its body does not hold).
func (c *Cluster) reject(why rejectReason, from string) { c.rejects.add(why, from) }

// Rejected is the control messages refused so far, by reason (see rejectNames).
func (c *Cluster) Rejected() map[string]uint64 { return c.rejects.counts() }

// nodeGone cleans up after a node that left (or restarted): its participants and producers
// leave every room here once the resume grace is over (those that resume elsewhere meanwhile
// move instead), relays from and to it end at once, and producers it relayed here are piped
// again from another carrier.
func (c *Cluster) nodeGone(id, why string) {
	c.log.Warn("node left the cluster", "peer", id, "reason", why, "grace", c.o.ResumeGrace)
	c.gone.add(id, c.o.Clock.Now()) // before Remove: an Ask in between finds it in one of both
	c.members.Remove(id)
	c.apply(c.state.NodeGone(id, c.o.Clock.Now()))
	c.pipes.NodeGone(id)
}

// Event implements node.Events: local room events go to the other nodes, demand to the pipes.
func (c *Cluster) Event(ev node.Event) {
	finished := c.finishing(ev) // before closeRoom forgets the room's remote part
	switch e := ev.(type) {
	case node.RoomOpened:
		c.openRoom(e.Room)
	case node.RoomClosed:
		c.closeRoom(e.Room)
	case node.ParticipantJoined:
		c.publish(e.Room.Name(), evParticipantJoined, joinedBody{Participant: e.Participant, Replaces: e.Replaces, Resumed: e.Resumed})
	case node.ParticipantLeft:
		c.publish(e.Room.Name(), evParticipantLeft, idBody{ID: e.ID})
	case node.ParticipantUpdated:
		c.publish(e.Room.Name(), evParticipantUpdated, e.Participant)
	case node.ProducerAdded:
		c.publish(e.Room.Name(), evProducerAdded, e.Producer)
	case node.ProducerRemoved:
		c.pipes.DropProducer(e.ID)
		if e.Origin == "" {
			c.publish(e.Room.Name(), evProducerRemoved, idBody{ID: e.ID, Participant: e.Participant})
		}
	case node.ProducerMuted:
		c.publish(e.Room.Name(), evProducerMuted, mutedBody{ID: e.ID, Muted: e.Muted, ByServer: e.ByServer})
	case node.Message:
		if raw, err := json.Marshal(e.Data); err == nil {
			c.publish(e.Room.Name(), evMessage, messageBody{From: e.From, Identity: e.Identity, Data: raw})
		}
	case node.Data:
		c.publish(e.Room.Name(), evData, dataBody{Data: e.Data, IsString: e.IsString})
	case node.Demand:
		c.pipes.Demand(e.Producer)
	case node.LayerDemand:
		c.pipes.LayerDemand(e.Producer, e.Layers)
	case node.ProducerMoved:
		c.producerMoved(e)
	case node.Speakers:
		c.publishSpeakers(e)
	}
	c.observe(ev, finished)
}

// Resyncs counts the re-sync passes run.
func (c *Cluster) Resyncs() uint64 { return c.passes.Load() }
