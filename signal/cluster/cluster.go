// Package cluster joins nodes into one cluster over NATS: the node registry (heartbeats), room
// events (every participant sees the same room on every node), and relays that pipe a producer
// to exactly the nodes that have consumers for it, as a tree of fan-out at most K.
package cluster

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
)

// Defaults.
const (
	DefaultFanout  = 3
	requestTimeout = 2 * time.Second
	syncWait       = 300 * time.Millisecond
)

// Options configure a Cluster.
type Options struct {
	// RelayListen is the relay socket's address (host:port; port 0 picks one).
	RelayListen string
	// RelayHost is the address other nodes reach the relay at; empty means the listen host
	// (127.0.0.1 when that is unspecified).
	RelayHost string
	// Fanout is K: a node relays one producer to at most K other nodes.
	Fanout int
	// Logger receives the cluster's logs.
	Logger hclog.Logger
}

// Cluster is a node's membership in the cluster. It implements node.Cluster and
// relay.Handler.
type Cluster struct {
	n     *node.Node
	nc    *nats.Conn
	relay *relay.Transport
	o     Options
	log   hclog.Logger
	me    string
	addr  netip.AddrPort // announced relay address

	mu        sync.Mutex
	peers     map[string]*peer
	rooms     map[string]*roomState // open rooms, by name
	in        map[string]*inPipe    // producers piped here, by producer id
	out       map[outKey]*outPipe   // producers piped from here, by child and producer
	pipeLocks map[string]*sync.Mutex
	syncWaits map[string]chan *nats.Msg // room syncs in progress, by reply token

	ssrcMu    sync.RWMutex
	inBySSRC  map[linkSSRC]*inPipe
	outBySSRC map[linkSSRC]*outPipe

	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup

	metrics metrics
}

type peer struct {
	stats node.Stats
	seen  time.Time
}

type linkSSRC struct {
	peer string
	ssrc uint32
}

type outKey struct {
	child, producer string
}

// New joins the node to the cluster on its NATS connection and opens the relay socket. Call
// it before the node serves clients; Close leaves.
func New(n *node.Node, o Options) (*Cluster, error) {
	if o.Fanout <= 0 {
		o.Fanout = DefaultFanout
	}
	if o.RelayListen == "" {
		o.RelayListen = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	c := &Cluster{n: n, nc: n.NATS(), o: o, log: o.Logger.Named("cluster").With("node", n.ID()), me: n.ID(),
		peers: make(map[string]*peer), rooms: make(map[string]*roomState), in: make(map[string]*inPipe),
		out: make(map[outKey]*outPipe), pipeLocks: make(map[string]*sync.Mutex), syncWaits: make(map[string]chan *nats.Msg),
		inBySSRC: make(map[linkSSRC]*inPipe), outBySSRC: make(map[linkSSRC]*outPipe), stop: make(chan struct{})}
	t, err := relay.Listen(o.RelayListen, c, o.Logger)
	if err != nil {
		return nil, err
	}
	c.relay = t
	host := o.RelayHost
	if host == "" {
		host = t.Addr().Addr().String()
		if t.Addr().Addr().IsUnspecified() {
			host = "127.0.0.1"
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("relay host %q: %w", host, err)
	}
	c.addr = netip.AddrPortFrom(ip, t.Addr().Port())
	n.SetRelayAddr(c.addr.String())

	for subj, h := range map[string]nats.MsgHandler{
		node.SubjectHeartbeat + ".*":  c.onHeartbeat,
		subjectRelay(c.me, "pipe"):    c.onPipe,
		subjectRelay(c.me, "unpipe"):  c.onUnpipe,
		subjectRelay(c.me, "dropped"): c.onDropped,
		subjectRoom("*", "sync"):      c.onSync,
		subjectSyncReply(c.me, "*"):   c.onSyncReply,
	} {
		sub, err := c.nc.Subscribe(subj, h)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		c.subs = append(c.subs, sub)
	}
	_ = c.nc.Flush()
	c.wg.Add(1)
	go c.expire()
	n.SetCluster(c)
	c.log.Info("joined the cluster", "relay", c.addr, "fanout", o.Fanout)
	return c, nil
}

// RelayAddr is the announced relay address.
func (c *Cluster) RelayAddr() netip.AddrPort { return c.addr }

// Close leaves the cluster: relays stop and subscriptions end.
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
		subs = append(subs, r.subs...)
	}
	c.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	c.wg.Wait()
	c.relay.Close()
}

func subjectRelay(nodeID, verb string) string { return "cascade.relay." + nodeID + "." + verb }

// subjectRoom names a room's subject; the room name is hex-encoded, since room names may hold
// characters NATS subjects cannot (".", "*", ">", spaces).
func subjectRoom(roomHex, verb string) string { return "cascade.room." + roomHex + "." + verb }

func roomHex(name string) string { return hex.EncodeToString([]byte(name)) }

// onHeartbeat records a node's announcement.
func (c *Cluster) onHeartbeat(m *nats.Msg) {
	var s node.Stats
	if json.Unmarshal(m.Data, &s) != nil || s.ID == "" || s.ID == c.me {
		return
	}
	c.mu.Lock()
	p := c.peers[s.ID]
	if p == nil {
		p = &peer{}
		c.peers[s.ID] = p
		c.log.Info("node joined the cluster", "peer", s.ID, "region", s.Region, "relay", s.RelayAddr)
	}
	p.stats, p.seen = s, time.Now()
	c.mu.Unlock()
}

// expire forgets nodes that stopped beating: three missed heartbeats.
func (c *Cluster) expire() {
	defer c.wg.Done()
	hb := c.n.HeartbeatInterval()
	t := time.NewTicker(hb / 2)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			var gone []string
			c.mu.Lock()
			for id, p := range c.peers {
				if now.Sub(p.seen) > 3*hb {
					gone = append(gone, id)
					delete(c.peers, id)
				}
			}
			c.mu.Unlock()
			for _, id := range gone {
				c.nodeGone(id)
			}
		}
	}
}

// Peers lists the live nodes other than this one.
func (c *Cluster) Peers() []node.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]node.Stats, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p.stats)
	}
	return out
}

func (c *Cluster) peer(id string) (node.Stats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[id]
	if p == nil {
		return node.Stats{}, false
	}
	return p.stats, true
}

// nodeGone cleans up after a node that left: its participants and producers leave every
// room here, relays from and to it end, and producers it relayed here are piped again from
// another node that carries them.
func (c *Cluster) nodeGone(id string) {
	c.log.Warn("node left the cluster", "peer", id)
	for _, r := range c.n.Rooms() {
		r.RemoveNode(id)
	}
	c.mu.Lock()
	var gone []*inPipe
	for pid, in := range c.in {
		if in.parent == id || in.p.Origin() == id {
			delete(c.in, pid)
			gone = append(gone, in)
		}
	}
	var detach []*outPipe
	for k, o := range c.out {
		if k.child == id {
			delete(c.out, k)
			detach = append(detach, o)
		}
	}
	for _, r := range c.rooms {
		r.forgetNode(id)
	}
	c.mu.Unlock()
	for _, o := range detach {
		c.forgetOut(o)
		o.cons.Detach()
	}
	c.relay.RemoveLink(id)
	for _, in := range gone {
		c.forgetIn(in)
		in.p.SetUpstream(nil)
		if in.p.Origin() != id { // the parent died, the origin lives: pipe from another carrier
			go c.Demand(in.p)
		}
	}
}
