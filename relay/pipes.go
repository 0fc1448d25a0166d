package relay

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtcp"
)

// DefaultFanout is K: a node relays one producer to at most K other nodes.
const DefaultFanout = 3

// Producers finds the producers this node can relay; *node.Node is one.
type Producers interface {
	Producer(room, id string) *node.Producer
}

// Options configure Pipes.
type Options struct {
	// Self is this node's id; Region its region.
	Self, Region string
	// Listen is the relay socket's address (host:port; port 0 picks one).
	Listen string
	// Host is the address other nodes reach the relay at; empty means the listen host
	// (127.0.0.1 when that is unspecified).
	Host string
	// Fanout is K (0: DefaultFanout).
	Fanout int
	// KeyRotation is how long a relay link sends under one key before it moves to the next
	// (0: DefaultKeyRotation).
	KeyRotation time.Duration
	// Producers finds the producers to relay (the node).
	Producers Producers
	// Logger receives the pipes' logs.
	Logger hclog.Logger
}

// Pipes are this node's relayed producers: the pipes in (producers piped here from their
// parent in the relay tree, while they have consumers here), the pipes out (relay sinks towards
// children), the relay trees, and the pipe manager, one goroutine that serves the node's demand
// for remote producers. Pipes is the Transport's Handler.
type Pipes struct {
	o     Options
	log   hclog.Logger
	t     *Transport
	addr  netip.AddrPort // announced relay address
	trees *Trees
	sig   Signaler
	peers Peers

	mu       sync.Mutex
	in       map[string]*inPipe    // by producer id
	out      map[outKey]*outPipe   // by child and producer
	retiring map[*inPipe]time.Time // old pipes of moved producers, until their window ends

	hubSince map[string]time.Time // by producer: when this node began to wait for its region's hub (manager only)

	ssrcMu    sync.RWMutex
	inBySSRC  map[linkSSRC]*inPipe
	outBySSRC map[linkSSRC]*outPipe

	demand demandQueue
	moves  moveQueue
	stop   chan struct{}
	wg     sync.WaitGroup

	epoch atomic.Uint32 // advanced by Flowing; an in-pipe notes it with each packet

	// UnknownSSRC counts relayed packets no pipe takes (a pipe that just ended).
	UnknownSSRC atomic.Uint64
	// StrayDemands counts layer demands that named no pipe of their sender (layers.go).
	StrayDemands atomic.Uint64
}

type linkSSRC struct {
	peer string
	ssrc uint32
}

type outKey struct {
	child, producer string
}

// inPipe is a producer piped to this node from its parent in the relay tree.
type inPipe struct {
	p      *node.Producer
	parent string
	link   *Link
	ssrc   uint32
	// gen and origin are the producer's source generation and origin when the pipe was asked
	// for: its packets are injected as that generation's (a moved producer's consumers switch
	// at the new generation's first keyframe).
	gen    uint32
	origin string
	gaps   [pipeSSRCs]gaps // per layer, owned by the transport's read goroutine
	seen   atomic.Uint32   // Pipes.epoch at the last packet
	// A hand-off (handoff.go): next is the pipe that replaces this one; once it has carried a
	// packet (its flowing is set), this one's packets are dropped until it is unrouted.
	next    atomic.Pointer[inPipe]
	flowing atomic.Bool
}

// pipeSSRCs is how many SSRCs a pipe has: one per simulcast layer (the first is the pipe's
// SSRC, layer 0's; a producer without layers uses it alone).
const pipeSSRCs = proto.MaxLayers

// received runs the edge's NACK generator on a packet's sequence number (of one layer): a gap
// is NACKed to the parent over the link, an outage turns into a keyframe request.
func (in *inPipe) received(seq uint16, layer uint32) {
	lost, keyframe := in.gaps[layer].received(seq)
	if keyframe {
		in.p.RequestLayerKeyframe(int(layer)) // throttled per layer, through the upstream
		return
	}
	if len(lost) > 0 {
		_ = in.link.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: in.ssrc + layer, Nacks: rtcp.NackPairsFromSequenceNumbers(lost)}})
	}
}

// outPipe is a producer piped from this node to a child: one relay sink per layer, layer l's
// under SSRC ssrc+l.
type outPipe struct {
	room     *node.Room
	producer string
	child    string
	link     *Link
	ssrc     uint32
	sinks    []*node.Consumer
}

// detach removes the pipe's relay sinks from the fan-out.
func (o *outPipe) detach() {
	for _, c := range o.sinks {
		c.Detach()
	}
}

// sink is the relay sink of the layer sent under ssrc (nil: none).
func (o *outPipe) sink(ssrc uint32) *node.Consumer {
	if l := ssrc - o.ssrc; l < uint32(len(o.sinks)) {
		return o.sinks[l]
	}
	return nil
}

// setLayers gates the pipe's layers: layer l flows while bit l of mask is set (dynacast).
func (o *outPipe) setLayers(mask uint32) {
	for l, c := range o.sinks {
		c.Gate(mask&(1<<l) != 0)
	}
}

// upstream sends a remote producer's keyframe requests to its parent.
type upstream struct {
	link *Link
	ssrc uint32
}

func (u upstream) RequestKeyframe() {
	_ = u.link.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: u.ssrc}})
}

// RequestLayerKeyframe implements node.LayerUpstream: a keyframe of one layer, whose SSRC is
// the pipe's plus the layer.
func (u upstream) RequestLayerKeyframe(layer int) {
	_ = u.link.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: u.ssrc + uint32(layer)}})
}

// Open opens the relay socket. The pipes serve demand once Start gives them the control path.
func Open(o Options) (*Pipes, error) {
	if o.Fanout <= 0 {
		o.Fanout = DefaultFanout
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	ps := &Pipes{o: o, log: o.Logger.Named("pipes").With("node", o.Self), trees: NewTrees(),
		in: make(map[string]*inPipe), out: make(map[outKey]*outPipe), retiring: make(map[*inPipe]time.Time),
		inBySSRC: make(map[linkSSRC]*inPipe), outBySSRC: make(map[linkSSRC]*outPipe),
		demand: newDemandQueue(), moves: newMoveQueue(), stop: make(chan struct{})}
	t, err := ListenKeyed(o.Listen, ps, o.Logger, Keying{Rotation: o.KeyRotation})
	if err != nil {
		return nil, err
	}
	ps.t = t
	host := o.Host
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
	ps.addr = netip.AddrPortFrom(ip, t.Addr().Port())
	return ps, nil
}

// Start starts the pipe manager with the control path to other nodes and their membership.
func (ps *Pipes) Start(sig Signaler, peers Peers) {
	ps.mu.Lock() // ServePipe may run before Start (the cluster subscribes first): see region
	ps.sig, ps.peers = sig, peers
	ps.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	ps.wg.Add(2)
	go func() { // Close cancels a pipe request in flight
		defer ps.wg.Done()
		<-ps.stop
		cancel()
	}()
	go ps.manage(ctx)
}

// Close stops the pipe manager and closes the relay socket.
func (ps *Pipes) Close() {
	select {
	case <-ps.stop:
		return
	default:
	}
	close(ps.stop)
	ps.wg.Wait()
	ps.t.Close()
}

// Addr is the announced relay address.
func (ps *Pipes) Addr() netip.AddrPort { return ps.addr }

// Transport is the relay socket (its counters feed the metrics).
func (ps *Pipes) Transport() *Transport { return ps.t }

// Trees are the relay trees this node knows.
func (ps *Pipes) Trees() *Trees { return ps.trees }

// Fanout is K.
func (ps *Pipes) Fanout() int { return ps.o.Fanout }

// Counts reports the pipes in and out.
func (ps *Pipes) Counts() (in, out int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.in), len(ps.out)
}

// Piped lists the producers of room piped here and their parents (a room's sync answer).
func (ps *Pipes) Piped(room string) []Edge {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []Edge
	for pid, in := range ps.in {
		if in.p.Room().Name() == room {
			out = append(out, Edge{Node: pid, Parent: in.parent})
		}
	}
	return out
}

// Flowing lists the origins of the producers piped here that received media since the last
// call: proof that those nodes live, even when their heartbeats are lost and no link to them
// exists (the media comes through another node of the tree).
func (ps *Pipes) Flowing() []string {
	e := ps.epoch.Add(1) - 1
	ps.mu.Lock()
	defer ps.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, in := range ps.in {
		if o := in.p.Origin(); in.seen.Load() == e && !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}

// routeIn picks the SSRCs in's parent relays it under (pipeSSRCs of them, one per layer), ones
// the link hands out once in its receiving key's life (so a pipe made again never restarts an
// SSRC at an index the parent sent before), and routes packets under them to in.
func (ps *Pipes) routeIn(in *inPipe) {
	ps.ssrcMu.Lock()
	defer ps.ssrcMu.Unlock()
next:
	for {
		s := in.link.NewSSRCs(pipeSSRCs)
		for l := uint32(0); l < pipeSSRCs; l++ {
			if ps.inBySSRC[linkSSRC{in.parent, s + l}] != nil {
				continue next
			}
		}
		in.ssrc = s
		for l := uint32(0); l < pipeSSRCs; l++ {
			ps.inBySSRC[linkSSRC{in.parent, s + l}] = in
		}
		return
	}
}

// unrouteIn stops routing packets to in.
func (ps *Pipes) unrouteIn(in *inPipe) {
	ps.ssrcMu.Lock()
	for l := uint32(0); l < pipeSSRCs; l++ {
		if k := (linkSSRC{in.parent, in.ssrc + l}); ps.inBySSRC[k] == in {
			delete(ps.inBySSRC, k)
		}
	}
	ps.ssrcMu.Unlock()
}

// forgetIn removes an in-pipe's routing and its edge in the tree (it is already out of ps.in).
func (ps *Pipes) forgetIn(in *inPipe) {
	ps.unrouteIn(in)
	ps.trees.Piped(in.p.Room().Name(), in.p.ID(), ps.o.Self, "")
}

func (ps *Pipes) forgetOut(o *outPipe) {
	ps.ssrcMu.Lock()
	for l := range o.sinks {
		if k := (linkSSRC{o.child, o.ssrc + uint32(l)}); ps.outBySSRC[k] == o {
			delete(ps.outBySSRC, k)
		}
	}
	ps.ssrcMu.Unlock()
	for l := range o.sinks {
		o.link.Retire(o.ssrc + uint32(l))
	}
}

// HandleRTP implements Handler: media of a producer piped here.
func (ps *Pipes) HandleRTP(l *Link, ssrc uint32, pkt []byte) {
	ps.ssrcMu.RLock()
	in := ps.inBySSRC[linkSSRC{l.Peer, ssrc}]
	ps.ssrcMu.RUnlock()
	if in == nil {
		ps.UnknownSSRC.Add(1) // a pipe that just ended; one not yet asked for would be a bug
		return
	}
	if len(pkt) < 12 {
		return
	}
	if !in.flowing.Load() {
		in.flowing.Store(true)
	}
	if nx := in.next.Load(); nx != nil && nx.flowing.Load() {
		return // handed off: the new parent's copy of the stream goes on
	}
	in.seen.Store(ps.epoch.Load())
	layer := ssrc - in.ssrc // < pipeSSRCs: routeIn routed only those
	in.received(uint16(pkt[2])<<8|uint16(pkt[3]), layer)
	in.p.InjectLayer(in.gen, int(layer), pkt)
}

// HandleRTCP implements Handler: a child's feedback on a producer piped to it.
func (ps *Pipes) HandleRTCP(l *Link, pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		for _, ssrc := range pkt.DestinationSSRC() {
			ps.ssrcMu.RLock()
			o := ps.outBySSRC[linkSSRC{l.Peer, ssrc}]
			ps.ssrcMu.RUnlock()
			if o == nil {
				continue
			}
			sink := o.sink(ssrc)
			if sink == nil {
				continue
			}
			switch p := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				sink.RequestKeyframe()
			case *rtcp.TransportLayerNack:
				var seqs []uint16
				for _, n := range p.Nacks {
					seqs = append(seqs, n.PacketList()...)
				}
				sink.Nack(seqs)
			}
		}
	}
}
