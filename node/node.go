// Package node is one Cascade media node: its workers, the rooms (routers) on them, the
// participants' transports, producers and consumers. What other nodes must learn leaves it as
// typed events (Events); the cluster layer (package cluster) feeds remote state back in.
package node

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// tcpReadPackets is how many packets an ICE-TCP connection holds between its reader and the
// transport (pion's read buffer); writes are buffered by pion (4 MB per connection at most,
// grown as needed), and dropped when that is full.
const tcpReadPackets = 64

// A Node runs the workers, rooms and participants of one cascade node process.
type Node struct {
	opts    Options
	log     hclog.Logger
	workers []*Worker
	tcp     ice.TCPMux // the ICE-TCP listener every worker shares; nil when off
	tcpAddr net.Addr
	// tcpRefused counts ICE-TCP connections refused: not a STUN binding request of a known ufrag.
	tcpRefused atomic.Uint64
	metrics    *metrics
	started    time.Time
	draining   atomic.Bool
	events     Events // nil: a single node
	relay      atomic.Pointer[string]
	rtx        rtxbudget.Config // every consumer's retransmission budget

	mu    sync.Mutex
	rooms map[string]*Room
	// by room, then identity: a second join with the same identity replaces the first
	identities map[string]map[string]*Participant
	ended      endedSessions // sessions that ended here: their credentials resume nothing (resume.go)

	timers sync.WaitGroup // the rooms' empty timers that may still run (Close waits)
	stop   chan struct{}
}

// New starts a node: its workers.
func New(o Options) (*Node, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.ID == "" {
		o.ID = "N" + randomID()[:10]
	}
	n := &Node{opts: o, log: o.Logger.With("node", o.ID), rooms: make(map[string]*Room),
		identities: make(map[string]map[string]*Participant), stop: make(chan struct{}), started: time.Now(),
		rtx: rtxbudget.Config{Share: float64(o.RTXBudget) / 100, MaxPerNack: o.Limits.NackSeqs}.WithDefaults()}
	public, _ := ParsePublicIPs(o.PublicIP) // validated
	if o.TCPPort >= 0 {
		l, err := o.ListenTCP(mediaNetwork("tcp", o.UDPHost), &net.TCPAddr{IP: net.ParseIP(o.UDPHost), Port: o.TCPPort})
		if err != nil {
			return nil, fmt.Errorf("ice-tcp: listen tcp %s: %w", net.JoinHostPort(o.UDPHost, strconv.Itoa(o.TCPPort)), err)
		}
		lf := logging.NewDefaultLoggerFactory()
		lf.DefaultLogLevel = logging.LogLevelError
		n.tcpAddr = l.Addr()
		n.tcp = webrtc.NewICETCPMux(junkLogger{lf.NewLogger("tcpmux"), &n.tcpRefused}, l, tcpReadPackets)
	}
	for i := 0; i < o.Workers; i++ {
		w, err := newWorker(i, o, n.tcp, public)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.workers = append(n.workers, w)
		n.log.Debug("worker started", "worker", i, "udp", w.Addr())
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	n.metrics = newMetrics(n)
	if err := reg.Register(n.metrics); err != nil {
		n.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if err := reg.Register(newBWEMetrics(n)); err != nil { // bwe.go
		n.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	n.log.Info("node started", "workers", len(n.workers), "udp_first", n.workers[0].Addr(), "ice_tcp", n.tcpAddr)
	return n, nil
}

// SetRelayAddr sets the relay address announced in the heartbeat.
func (n *Node) SetRelayAddr(a string) { n.relay.Store(&a) }

// RelayAddr is the announced relay address ("" without a cluster).
func (n *Node) RelayAddr() string {
	if a := n.relay.Load(); a != nil {
		return *a
	}
	return ""
}

// Region is the node's region.
func (n *Node) Region() string { return n.opts.Region }

// ID is the node's id.
func (n *Node) ID() string { return n.opts.ID }

// Workers is the number of workers.
func (n *Node) Workers() int { return len(n.workers) }

// WorkerAddr is the media UDP address of worker i.
func (n *Node) WorkerAddr(i int) net.Addr { return n.workers[i].Addr() }

// TCPAddr is the address of the ICE-TCP listener, nil when ICE-TCP is off.
func (n *Node) TCPAddr() net.Addr { return n.tcpAddr }

// Drain stops new sessions (Ready turns false); sessions already in progress continue.
func (n *Node) Drain() { n.draining.Store(true) }

// Ready tells whether the node accepts new sessions (the cluster layer's readiness is its own).
func (n *Node) Ready() bool { return !n.draining.Load() }

// Join adds a participant with the given identity to a room, creating the room on the
// least-loaded worker if it is new. A participant already in the room with the same identity is
// replaced: it gets an EventClosed notification and is removed.
func (n *Node) Join(room, identity string, g Grant, autoSubscribe bool, l Listener) (*Participant, error) {
	return n.join(room, identity, g, autoSubscribe, l, nil)
}

// join is Join, and with res JoinResumed (resume.go): the participant takes over the session
// res names, and the room hears of no join if it knew the session.
func (n *Node) join(room, identity string, g Grant, autoSubscribe bool, l Listener, res *Resume) (*Participant, error) {
	if n.draining.Load() {
		return nil, ErrDraining
	}
	n.mu.Lock()
	r := n.rooms[room]
	if r == nil && n.opts.Limits.Rooms >= 0 && len(n.rooms) >= n.opts.Limits.Rooms {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w (%d)", ErrTooManyRooms, n.opts.Limits.Rooms)
	}
	if r == nil {
		r = newRoom(room, n, n.leastLoaded())
		n.rooms[room] = r
		n.identities[room] = make(map[string]*Participant)
		n.log.Debug("room created", "room", room, "worker", r.home.index)
	}
	old := n.identities[room][identity]
	var take resumeTake
	if res != nil {
		var err error
		if take, err = r.resumableLocked(old, identity, *res); err != nil {
			n.mu.Unlock()
			return nil, err
		}
	}
	if limit, full := n.roomFull(r, old, identity, nil); full {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w (%d participants)", ErrRoomFull, limit)
	}
	n.cancelEmptyLocked(r) // someone is in it again
	now := time.Now()
	p := &Participant{id: n.newID("PA"), identity: identity, joined: now, node: n, room: r, grant: g, autoSubscribe: autoSubscribe,
		listener: l, done: make(chan struct{}), byMid: make(map[string]*Producer), consumers: make(map[string]*Consumer),
		chat: newSendLimit(n.opts.Limits.Chat, maxChatMessage, now), data: newSendLimit(n.opts.Limits.Data, maxDataMessage, now)}
	if res != nil {
		p.id, p.epoch, p.resumed = res.ID, res.Epoch+1, slices.Clone(res.Producers)
		if res.JoinedAt > 0 {
			p.joined = time.UnixMilli(res.JoinedAt)
		}
		if old == take.local {
			old = nil // the stale copy of the session is superseded below, not replaced
		}
	}
	p.log = n.log.With("room", room, "participant", p.id, "identity", identity)
	if g.Metadata != "" {
		p.metadata.Store(&g.Metadata)
	}
	n.identities[room][identity] = p
	r.mu.Lock()
	if take.local != nil {
		take.local.superseded = true // under r.mu: its leave must not remove p, which takes its id
	}
	delete(r.remote, p.id) // a session of another node becomes local here, unannounced
	r.participants[p.id] = p
	opened := !r.opened
	r.opened = true
	r.mu.Unlock()
	n.mu.Unlock()

	if opened {
		n.emit(RoomOpened{Room: r}) // the cluster syncs the room: its remote sessions are known after
		// Counted again with what the other nodes said: the room's participants there, and
		// its own maxParticipants (a room the room API created elsewhere).
		n.mu.Lock()
		limit, full := n.roomFull(r, nil, identity, p)
		n.mu.Unlock()
		if full {
			n.unjoin(p)
			return nil, fmt.Errorf("%w (%d participants)", ErrRoomFull, limit)
		}
		if res != nil && r.fencedAfterSync(p) { // the room's other nodes hold a newer session
			n.unjoin(p)
			return nil, fmt.Errorf("%w: a newer session of participant %s exists", ErrResume, p.id)
		}
	}
	// The remote sessions of this identity that this join supersedes, wherever they are.
	replaces := r.sessionsOf(identity)
	p.knewIDs.Store(&replaces)
	if old != nil {
		old.listener.Notify(EventClosed, map[string]string{"reason": ReasonReplaced})
		old.Close()
	}
	if take.local != nil {
		take.local.fence()
	}
	if !take.known() {
		r.broadcast(p, EventParticipantJoined, p.Info())
	}
	n.emit(ParticipantJoined{Room: r, Participant: p.Info(), Replaces: replaces, Resumed: res != nil})
	p.log.Info("participant joined", "resumed", res != nil, "epoch", p.epoch)
	return p, nil
}

// unjoin takes back a join that no one has heard of yet (refused after the room's sync): the
// participant goes without a notification, and the room it opened with it. If something closed
// it meanwhile (the room API, a newer session), that close did all of it.
func (n *Node) unjoin(p *Participant) {
	r := p.room
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	n.mu.Lock()
	r.mu.Lock()
	if r.participants[p.id] == p {
		delete(r.participants, p.id)
	}
	r.mu.Unlock()
	if n.identities[r.name][p.identity] == p {
		delete(n.identities[r.name], p.identity)
	}
	closed := r.emptyTimer == nil && n.closeIfEmptyLocked(r)
	n.mu.Unlock()
	if closed {
		n.roomClosed(r)
	}
}

// leave removes a closed participant from its room, and the room from the node when it is empty
// here: at once, or after its empty timeout (a join meanwhile keeps it open).
func (n *Node) leave(p *Participant) {
	r := p.room
	n.mu.Lock()
	r.mu.Lock()
	if r.participants[p.id] == p { // a superseded copy left the room already; its id may be another's now
		delete(r.participants, p.id)
	}
	empty := len(r.participants) == 0
	superseded := p.superseded
	r.mu.Unlock()
	if n.identities[r.name][p.identity] == p {
		delete(n.identities[r.name], p.identity)
	}
	if !superseded {
		n.ended.add(p.id, time.Now())
	}
	closed := false
	if empty && n.rooms[r.name] == r {
		if d := n.emptyTimeout(r); d > 0 && !r.deleted && !n.stopped() {
			n.armEmptyLocked(r)
		} else {
			closed = n.closeIfEmptyLocked(r)
		}
	}
	n.mu.Unlock()
	if !superseded { // the session goes on elsewhere: no one hears of a leave
		r.broadcast(p, EventParticipantLeft, map[string]string{"id": p.id})
		n.emit(ParticipantLeft{Room: r, ID: p.id})
	}
	if closed {
		n.roomClosed(r)
	}
	p.log.Info("participant left", "superseded", superseded)
}

// stopped tells whether Close has begun.
func (n *Node) stopped() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

func (n *Node) leastLoaded() *Worker {
	best := n.workers[0]
	for _, w := range n.workers[1:] {
		if w.load() < best.load() || (w.load() == best.load() && w.nRouters.Load() < best.nRouters.Load()) {
			best = w
		}
	}
	return best
}

// Room returns a room by name, or nil.
func (n *Node) Room(name string) *Room {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rooms[name]
}

// Stats is a snapshot of the node's load; the cluster layer announces it on its heartbeat.
type Stats struct {
	ID           string        `json:"id"`
	Region       string        `json:"region,omitempty"`
	HTTPURL      string        `json:"http_url,omitempty"`
	RelayAddr    string        `json:"relay_addr,omitempty"`
	Draining     bool          `json:"draining"`
	Rooms        int           `json:"rooms"`
	Participants int           `json:"participants"`
	Producers    int64         `json:"producers"`
	Consumers    int64         `json:"consumers"`
	Workers      []WorkerStats `json:"workers"`
	// ICETCP is the ICE-TCP listener's address ("" when off).
	ICETCP    string `json:"ice_tcp,omitempty"`
	UptimeSec int64  `json:"uptime_s"`
}

// WorkerStats is one worker's load.
type WorkerStats struct {
	Index     int    `json:"index"`
	UDP       string `json:"udp"`
	Routers   int64  `json:"routers"`
	Producers int64  `json:"producers"`
	Consumers int64  `json:"consumers"`
	Packets   uint64 `json:"forwarded_packets"`
	Bytes     uint64 `json:"forwarded_bytes"`
	Dropped   uint64 `json:"dropped_packets"`
	// Transports whose selected candidate pair is UDP or TCP, over IPv4 or IPv6 (connected ones).
	UDP4 int64 `json:"transports_udp4"`
	UDP6 int64 `json:"transports_udp6"`
	TCP4 int64 `json:"transports_tcp4"`
	TCP6 int64 `json:"transports_tcp6"`
}

// Stats reports the node's current load.
func (n *Node) Stats() Stats {
	s := Stats{ID: n.opts.ID, Region: n.opts.Region, HTTPURL: n.opts.HTTPURL, Draining: n.draining.Load(), RelayAddr: n.RelayAddr(),
		UptimeSec: int64(time.Since(n.started).Seconds())}
	n.mu.Lock()
	if n.tcpAddr != nil {
		s.ICETCP = n.tcpAddr.String()
	}
	s.Rooms = len(n.rooms)
	for _, r := range n.rooms {
		r.mu.Lock()
		s.Participants += len(r.participants)
		r.mu.Unlock()
	}
	n.mu.Unlock()
	for _, w := range n.workers {
		ws := WorkerStats{Index: w.index, UDP: w.Addr().String(), Routers: w.nRouters.Load(), Producers: w.nProducers.Load(),
			Consumers: w.nConsumers.Load(), Packets: w.packets.Load(), Bytes: w.bytes.Load(), Dropped: w.dropped.Load(),
			UDP4: w.paths[pathUDP4].Load(), UDP6: w.paths[pathUDP6].Load(), TCP4: w.paths[pathTCP4].Load(), TCP6: w.paths[pathTCP6].Load()}
		s.Producers += ws.Producers
		s.Consumers += ws.Consumers
		s.Workers = append(s.Workers, ws)
	}
	return s
}

// Close ends every participant and stops the workers. Close is idempotent.
func (n *Node) Close() {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	n.mu.Lock()
	var ps []*Participant
	for _, r := range n.rooms {
		ps = append(ps, r.others(nil)...)
	}
	n.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
	// The rooms left are empty ones waiting for their timeout: they close now.
	n.mu.Lock()
	var empty []*Room
	for _, r := range n.rooms {
		if n.closeIfEmptyLocked(r) {
			empty = append(empty, r)
		}
	}
	n.mu.Unlock()
	for _, r := range empty {
		n.roomClosed(r)
	}
	n.timers.Wait()
	for _, w := range n.workers {
		w.close()
	}
	if n.tcp != nil {
		_ = n.tcp.Close()
	}
	n.log.Info("node stopped")
}

func (n *Node) newID(prefix string) string { return prefix + randomID()[:12] }

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
