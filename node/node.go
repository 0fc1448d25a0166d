// Package node is one Cascade media node: its workers, the rooms (routers) on them, the
// participants' transports, producers and consumers, and its NATS connection.
package node

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// SubjectHeartbeat is the NATS subject prefix of node heartbeats: SubjectHeartbeat + "." + id.
const SubjectHeartbeat = "cascade.node.heartbeat"

// A Node runs the workers, rooms and participants of one cascade node process.
type Node struct {
	opts       Options
	log        hclog.Logger
	workers    []*Worker
	nats       *nats.Conn
	natsClosed chan struct{} // closed by the connection's last callback
	embedded   *server.Server
	tempDir    string // JetStream store created by the node, removed on Close
	metrics    *metrics
	started    time.Time
	draining   atomic.Bool
	cluster    Cluster // nil: a single node
	relay      atomic.Pointer[string]
	rtx        rtxbudget.Config // every consumer's retransmission budget

	mu    sync.Mutex
	rooms map[string]*Room
	// by room, then identity: a second join with the same identity replaces the first
	identities map[string]map[string]*Participant

	stop chan struct{}
	wg   sync.WaitGroup
}

// New starts a node: NATS (embedded or external), the workers and the heartbeat.
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
		rtx: rtxbudget.Config{Share: float64(o.RTXBudget) / 100}.WithDefaults()}
	if err := n.startNATS(); err != nil {
		return nil, err
	}
	for i := 0; i < o.Workers; i++ {
		w, err := newWorker(i, o)
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
	n.wg.Add(1)
	go n.heartbeat()
	n.log.Info("node started", "workers", len(n.workers), "udp_first", n.workers[0].Addr(), "nats", n.nats.ConnectedUrl(), "embedded_nats", n.embedded != nil)
	return n, nil
}

func (n *Node) startNATS() error {
	url := n.opts.NATSURL
	if url == "" {
		host, portStr, _ := net.SplitHostPort(n.opts.NATSListen)
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return fmt.Errorf("%w: nats listen port %q", ErrBadOptions, portStr)
		}
		if port == 0 {
			port = -1
		}
		dir := n.opts.NATSStoreDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "cascade-nats-"); err != nil {
				return fmt.Errorf("nats store dir: %w", err)
			}
			n.tempDir = dir
		}
		so := &server.Options{ServerName: n.opts.ID, Host: host, Port: port, NoSigs: true,
			JetStream: true, StoreDir: dir, MaxPayload: 1 << 20}
		if n.opts.NATSCluster != "" {
			ch, cp, err := net.SplitHostPort(n.opts.NATSCluster)
			p, perr := strconv.Atoi(cp)
			if err != nil || perr != nil {
				return fmt.Errorf("%w: nats cluster address %q", ErrBadOptions, n.opts.NATSCluster)
			}
			if p == 0 {
				p = -1
			}
			so.Cluster = server.ClusterOpts{Name: n.clusterName(), Host: ch, Port: p}
			// Clustered JetStream needs every server's routes up front (the seed has none);
			// Cascade does not use JetStream, so embedded clusters run without it.
			so.JetStream = false
			for _, r := range n.opts.NATSRoutes {
				u, err := neturl.Parse(r)
				if err != nil || u.Host == "" {
					return fmt.Errorf("%w: nats route %q (want nats-route://host:port)", ErrBadOptions, r)
				}
				so.Routes = append(so.Routes, u)
			}
		}
		if err := n.gatewayOptions(so); err != nil {
			return err
		}
		s, err := server.NewServer(so)
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			if n.tempDir != "" {
				_ = os.RemoveAll(n.tempDir)
			}
			return fmt.Errorf("embedded nats did not start on %s", n.opts.NATSListen)
		}
		n.embedded = s
		url = s.ClientURL()
	}
	log := n.log.Named("nats")
	connOpts := []nats.Option{}
	if n.opts.NATSCreds != "" {
		connOpts = append(connOpts, nats.UserCredentials(n.opts.NATSCreds))
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(url, append(connOpts, nats.Name("cascade "+n.opts.ID), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		// nats.go runs its callbacks in order on a goroutine of its own: Close waits for this
		// last one, so no callback (a log line) runs after Close returned.
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.RetryOnFailedConnect(n.opts.NATSURL != ""),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrl()) }))...)
	if err != nil {
		if n.embedded != nil {
			n.embedded.Shutdown()
		}
		if n.tempDir != "" {
			_ = os.RemoveAll(n.tempDir)
		}
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	n.nats, n.natsClosed = nc, closed
	return nil
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

// HeartbeatInterval is how often the node announces itself.
func (n *Node) HeartbeatInterval() time.Duration { return n.opts.Heartbeat }

func (n *Node) clusterName() string {
	if n.opts.NATSClusterName != "" {
		return n.opts.NATSClusterName
	}
	return "cascade"
}

// gatewayOptions adds the embedded server's gateway (supercluster) configuration.
func (n *Node) gatewayOptions(so *server.Options) error {
	o, err := GatewayOptions(n.clusterName(), n.opts.NATSGateway, n.opts.NATSGateways)
	if err != nil || o == nil {
		return err
	}
	so.Cluster.Name = n.clusterName() // the gateway's name is its cluster's
	so.JetStream = false
	so.Gateway = *o
	return nil
}

// GatewayOptions builds the NATS gateway options of an embedded server named name, listening on
// listen (host:port), with the other regions' gateways; nil without a listen address. The Helm
// chart's tests use it to check rendered gateway settings.
func GatewayOptions(name, listen string, remotes map[string][]string) (*server.GatewayOpts, error) {
	if listen == "" {
		if len(remotes) > 0 {
			return nil, fmt.Errorf("%w: nats gateways need a gateway listen address", ErrBadOptions)
		}
		return nil, nil
	}
	gh, gp, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(gp)
	if err != nil || perr != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: nats gateway address %q", ErrBadOptions, listen)
	}
	if port == 0 {
		port = -1
	}
	o := &server.GatewayOpts{Name: name, Host: gh, Port: port}
	names := make([]string, 0, len(remotes))
	for g := range remotes {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		rg := &server.RemoteGatewayOpts{Name: g}
		for _, raw := range remotes[g] {
			u, err := neturl.Parse(raw)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("%w: nats gateway %s URL %q (want nats://host:port)", ErrBadOptions, g, raw)
			}
			rg.URLs = append(rg.URLs, u)
		}
		o.Gateways = append(o.Gateways, rg)
	}
	return o, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.opts.ID }

// NATS is the node's NATS connection (shared with the cluster layer).
func (n *Node) NATS() *nats.Conn { return n.nats }

// NATSURL is the client URL of the embedded NATS server, or "" with an external one.
func (n *Node) NATSURL() string {
	if n.embedded == nil {
		return ""
	}
	return n.embedded.ClientURL()
}

// NATSRouteURL is the route URL of the embedded NATS server's cluster listener ("" without one),
// for other nodes' NATSRoutes.
func (n *Node) NATSRouteURL() string {
	if n.embedded == nil || n.opts.NATSCluster == "" {
		return ""
	}
	if a := n.embedded.ClusterAddr(); a != nil {
		return "nats-route://" + a.String()
	}
	return ""
}

// NATSGatewayURL is the gateway URL of the embedded server ("" without a gateway).
func (n *Node) NATSGatewayURL() string {
	if n.embedded == nil || n.opts.NATSGateway == "" {
		return ""
	}
	if a := n.embedded.GatewayAddr(); a != nil {
		return "nats://" + a.String()
	}
	return ""
}

// Workers is the number of workers.
func (n *Node) Workers() int { return len(n.workers) }

// WorkerAddr is the media UDP address of worker i.
func (n *Node) WorkerAddr(i int) net.Addr { return n.workers[i].Addr() }

// Drain stops new sessions (Ready turns false); sessions already in progress continue.
func (n *Node) Drain() { n.draining.Store(true) }

// Ready tells whether the node accepts new sessions.
func (n *Node) Ready() bool { return !n.draining.Load() && n.nats.IsConnected() }

// Join adds a participant with the given identity to a room, creating the room on the
// least-loaded worker if it is new. A participant already in the room with the same identity is
// replaced: it gets an EventClosed notification and is removed.
func (n *Node) Join(room, identity string, g Grant, autoSubscribe bool, l Listener) (*Participant, error) {
	if n.draining.Load() {
		return nil, ErrDraining
	}
	n.mu.Lock()
	r := n.rooms[room]
	if r == nil {
		r = newRoom(room, n, n.leastLoaded())
		r.home.nRouters.Add(1)
		n.rooms[room] = r
		n.identities[room] = make(map[string]*Participant)
		n.log.Debug("room created", "room", room, "worker", r.home.index)
	}
	old := n.identities[room][identity]
	p := &Participant{id: n.newID("PA"), identity: identity, joined: time.Now(), node: n, room: r, grant: g, autoSubscribe: autoSubscribe,
		listener: l, done: make(chan struct{}), byMid: make(map[string]*Producer), consumers: make(map[string]*Consumer)}
	p.log = n.log.With("room", room, "participant", p.id, "identity", identity)
	n.identities[room][identity] = p
	r.mu.Lock()
	r.participants[p.id] = p
	opened := !r.opened
	r.opened = true
	r.mu.Unlock()
	n.mu.Unlock()

	if opened && n.cluster != nil {
		n.cluster.RoomOpened(r)
	}
	if old != nil {
		old.listener.Notify(EventClosed, map[string]string{"reason": "replaced by a newer session of the same identity"})
		old.Close()
	}
	r.broadcast(p, EventParticipantJoined, p.Info())
	n.publish(r, EventParticipantJoined, p.Info())
	p.log.Info("participant joined")
	return p, nil
}

// leave removes a closed participant from its room and the room from the node when empty.
func (n *Node) leave(p *Participant) {
	r := p.room
	n.mu.Lock()
	r.mu.Lock()
	delete(r.participants, p.id)
	empty := len(r.participants) == 0
	r.mu.Unlock()
	if n.identities[r.name][p.identity] == p {
		delete(n.identities[r.name], p.identity)
	}
	closed := false
	if empty && n.rooms[r.name] == r {
		delete(n.rooms, r.name)
		delete(n.identities, r.name)
		for w := range r.routers {
			w.nRouters.Add(-1)
		}
		closed = true
	}
	n.mu.Unlock()
	r.broadcast(p, EventParticipantLeft, map[string]string{"id": p.id})
	n.publish(r, EventParticipantLeft, map[string]string{"id": p.id})
	if closed {
		r.closeRemote()
		if n.cluster != nil {
			n.cluster.RoomClosed(r)
		}
	}
	p.log.Info("participant left")
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

// Stats is a snapshot of the node's load, published on the heartbeat.
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
	UptimeSec    int64         `json:"uptime_s"`
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
}

// Stats reports the node's current load.
func (n *Node) Stats() Stats {
	s := Stats{ID: n.opts.ID, Region: n.opts.Region, HTTPURL: n.opts.HTTPURL, Draining: n.draining.Load(), RelayAddr: n.RelayAddr(),
		UptimeSec: int64(time.Since(n.started).Seconds())}
	n.mu.Lock()
	s.Rooms = len(n.rooms)
	for _, r := range n.rooms {
		r.mu.Lock()
		s.Participants += len(r.participants)
		r.mu.Unlock()
	}
	n.mu.Unlock()
	for _, w := range n.workers {
		ws := WorkerStats{Index: w.index, UDP: w.Addr().String(), Routers: w.nRouters.Load(), Producers: w.nProducers.Load(),
			Consumers: w.nConsumers.Load(), Packets: w.packets.Load(), Bytes: w.bytes.Load(), Dropped: w.dropped.Load()}
		s.Producers += ws.Producers
		s.Consumers += ws.Consumers
		s.Workers = append(s.Workers, ws)
	}
	return s
}

// heartbeat announces the node on NATS so that other nodes (and operators) see it.
func (n *Node) heartbeat() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.Heartbeat)
	defer t.Stop()
	subject := SubjectHeartbeat + "." + n.opts.ID
	for {
		b, err := json.Marshal(n.Stats())
		if err == nil {
			_ = n.nats.Publish(subject, b)
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// Close ends every participant, stops the workers and NATS. Close is idempotent.
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
	n.wg.Wait()
	for _, w := range n.workers {
		w.close()
	}
	if n.nats != nil {
		n.nats.Close()
		select {
		case <-n.natsClosed:
		case <-time.After(5 * time.Second):
			n.log.Warn("nats connection: no closed callback within 5 s")
		}
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
		n.embedded.WaitForShutdown()
	}
	if n.tempDir != "" {
		_ = os.RemoveAll(n.tempDir)
	}
	n.log.Info("node stopped")
}

func (n *Node) newID(prefix string) string { return prefix + randomID()[:12] }

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
