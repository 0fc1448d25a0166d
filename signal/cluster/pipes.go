package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/nats-io/nats.go"
	"github.com/pion/rtcp"
)

// inPipe is a producer piped to this node from its parent in the relay tree.
type inPipe struct {
	p      *node.Producer
	parent string
	link   *relay.Link
	ssrc   uint32

	// Owned by the relay's read goroutine: loss detection on the link.
	started bool
	lastSeq uint16
}

// maxNackGap is the longest run of missing packets an edge asks its parent to resend; a longer
// gap is an outage, better healed by a keyframe.
const maxNackGap = 64

// missing returns the sequence numbers between last and seq that never arrived (none for an
// in-order, duplicate or late packet, or a gap past maxNackGap).
func missing(last, seq uint16) []uint16 {
	d := seq - last
	if d <= 1 || d > maxNackGap {
		return nil
	}
	out := make([]uint16, 0, d-1)
	for s := last + 1; s != seq; s++ {
		out = append(out, s)
	}
	return out
}

// received notes a packet's sequence number and asks the parent for what was lost before it.
func (in *inPipe) received(seq uint16) {
	if !in.started {
		in.started, in.lastSeq = true, seq
		return
	}
	if int16(seq-in.lastSeq) <= 0 {
		return // a retransmission or reordering
	}
	gap := seq - in.lastSeq
	lost := missing(in.lastSeq, seq)
	in.lastSeq = seq
	if gap > maxNackGap {
		in.p.RequestKeyframe() // too much lost to resend: start over from a keyframe
		return
	}
	if len(lost) == 0 {
		return
	}
	_ = in.link.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: in.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(lost)}})
}

// outPipe is a producer piped from this node to a child.
type outPipe struct {
	room     *node.Room
	producer string
	child    string
	link     *relay.Link
	ssrc     uint32
	cons     *node.Consumer
}

// upstream sends a remote producer's keyframe requests to its parent.
type upstream struct {
	link *relay.Link
	ssrc uint32
}

func (u upstream) RequestKeyframe() {
	_ = u.link.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: u.ssrc}})
}

// pipeRequest asks a node that carries a producer to relay it to the sender. The sender is
// ready for the media before it asks (its link expects the parent, the SSRC routes to the
// pipe), since the parent starts sending before its reply arrives.
type pipeRequest struct {
	Room      string `json:"room"`
	Producer  string `json:"producer"`
	From      string `json:"from"`
	RelayAddr string `json:"relay_addr"`
	Key       []byte `json:"key"`  // the sender's receiving key on the link
	SSRC      uint32 `json:"ssrc"` // the SSRC to relay the producer under
}

type pipeReply struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	RelayAddr string `json:"relay_addr,omitempty"`
	Key       []byte `json:"key,omitempty"` // the parent's receiving key on the link
}

var errFull = errors.New("fan-out full")

func (c *Cluster) pipeLock(id string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.pipeLocks[id]
	if l == nil {
		l = &sync.Mutex{}
		c.pipeLocks[id] = l
	}
	return l
}

// Demand implements node.Cluster: pipe a remote producer here while it has consumers.
func (c *Cluster) Demand(p *node.Producer) {
	select {
	case <-c.stop:
		return
	default:
	}
	lk := c.pipeLock(p.ID())
	lk.Lock()
	defer lk.Unlock()
	c.mu.Lock()
	in := c.in[p.ID()]
	c.mu.Unlock()
	switch {
	case p.Wanted() && in == nil:
		if err := c.pipeIn(p); err != nil {
			c.log.Warn("cannot pipe producer here, retrying", "producer", p.ID(), "origin", p.Origin(), "error", err)
			time.AfterFunc(time.Second, func() { c.Demand(p) })
		}
	case !p.Wanted() && in != nil:
		c.mu.Lock()
		delete(c.in, p.ID())
		c.mu.Unlock()
		c.forgetIn(in)
		c.requestUnpipe(in)
	}
}

// parents orders the nodes that can relay p here: nodes already carrying it in this node's
// region first (so media crosses a region boundary once), then the others; among those, the
// fewest hops from the origin first (the origin itself while it has fan-out left), then the
// fewest children.
func (c *Cluster) parents(p *node.Producer) []string {
	type cand struct {
		id       string
		sameRgn  bool
		depth    int
		children int
	}
	c.mu.Lock()
	var tree map[string]string
	if s := c.rooms[p.Room().Name()]; s != nil {
		tree = s.tree[p.ID()]
	}
	carriers := map[string]bool{p.Origin(): true}
	children := map[string]int{}
	for child, parent := range tree {
		carriers[child] = true
		children[parent]++
	}
	var cs []cand
	for id := range carriers {
		pe := c.peers[id]
		if id == c.me || pe == nil {
			continue
		}
		cs = append(cs, cand{id: id, sameRgn: pe.stats.Region == c.n.Region(), depth: depth(tree, id, p.Origin()), children: children[id]})
	}
	c.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].sameRgn != cs[j].sameRgn {
			return cs[i].sameRgn
		}
		if cs[i].depth != cs[j].depth {
			return cs[i].depth < cs[j].depth
		}
		if cs[i].children != cs[j].children {
			return cs[i].children < cs[j].children
		}
		return cs[i].id < cs[j].id
	})
	out := make([]string, len(cs))
	for i, x := range cs {
		out[i] = x.id
	}
	return out
}

// depth is the number of relay hops from the origin to id in tree (child -> parent).
func depth(tree map[string]string, id, origin string) int {
	d := 0
	for id != origin && d <= len(tree) {
		parent, ok := tree[id]
		if !ok {
			return len(tree) + 1 // not attached (yet): last
		}
		id = parent
		d++
	}
	return d
}

// pipeIn asks the candidate parents in turn to relay p here.
func (c *Cluster) pipeIn(p *node.Producer) error {
	cands := c.parents(p)
	if len(cands) == 0 {
		return errors.New("no live node carries the producer")
	}
	var last error
	for _, parent := range cands {
		err := c.pipeFrom(p, parent)
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

func (c *Cluster) pipeFrom(p *node.Producer, parent string) error {
	// Ready the link before asking: the parent sends as soon as it has the request, before its
	// answer arrives here.
	pe, ok := c.peer(parent)
	if !ok {
		return fmt.Errorf("%s left the cluster", parent)
	}
	paddr, err := netip.ParseAddrPort(pe.RelayAddr)
	if err != nil {
		return fmt.Errorf("relay address of %s: %w", parent, err)
	}
	link, err := c.relay.Expect(parent, paddr)
	if err != nil {
		return err
	}
	in := &inPipe{p: p, parent: parent, link: link}
	c.routeIn(in)
	if err := c.askPipe(in); err != nil {
		c.unrouteIn(in)
		return err
	}
	c.mu.Lock()
	c.in[p.ID()] = in
	if s := c.rooms[p.Room().Name()]; s != nil {
		s.setTree(p.ID(), c.me, parent)
	}
	c.mu.Unlock()
	p.SetUpstream(upstream{link: link, ssrc: in.ssrc})
	p.RequestKeyframe()
	c.publish(p.Room().Name(), evPiped, pipedEvent{Producer: p.ID(), Parent: parent})
	c.log.Debug("producer piped here", "producer", p.ID(), "parent", parent)
	return nil
}

// askPipe asks in's parent to relay its producer here, and completes the link with the
// parent's answer.
func (c *Cluster) askPipe(in *inPipe) error {
	req := pipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: c.me, RelayAddr: c.addr.String(), Key: in.link.Key(), SSRC: in.ssrc}
	b, _ := json.Marshal(req)
	m, err := c.nc.Request(subjectRelay(in.parent, "pipe"), b, requestTimeout)
	if err != nil {
		return err
	}
	var rep pipeReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return err
	}
	if !rep.OK {
		return errors.New(rep.Error)
	}
	addr, err := netip.ParseAddrPort(rep.RelayAddr)
	if err != nil {
		return err
	}
	link, err := c.relay.Link(in.parent, addr, rep.Key)
	if err != nil {
		return err
	}
	if link != in.link {
		return errors.New("the link to the parent was reset while asking")
	}
	return nil
}

// routeIn picks the SSRC in's parent relays it under, one no other pipe from that parent uses,
// and routes packets under it to in.
func (c *Cluster) routeIn(in *inPipe) {
	c.ssrcMu.Lock()
	defer c.ssrcMu.Unlock()
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		s := binary.BigEndian.Uint32(b[:])
		if k := (linkSSRC{in.parent, s}); s != 0 && c.inBySSRC[k] == nil {
			in.ssrc = s
			c.inBySSRC[k] = in
			return
		}
	}
}

// unrouteIn stops routing packets to in.
func (c *Cluster) unrouteIn(in *inPipe) {
	c.ssrcMu.Lock()
	if c.inBySSRC[linkSSRC{in.parent, in.ssrc}] == in {
		delete(c.inBySSRC, linkSSRC{in.parent, in.ssrc})
	}
	c.ssrcMu.Unlock()
}

// forgetIn removes an in-pipe's packet routing (the pipe is already out of c.in).
func (c *Cluster) forgetIn(in *inPipe) {
	c.unrouteIn(in)
	c.mu.Lock()
	if s := c.rooms[in.p.Room().Name()]; s != nil {
		if t := s.tree[in.p.ID()]; t != nil {
			delete(t, c.me)
		}
	}
	c.mu.Unlock()
}

func (c *Cluster) requestUnpipe(in *inPipe) {
	b, _ := json.Marshal(pipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: c.me, SSRC: in.ssrc})
	_ = c.nc.Publish(subjectRelay(in.parent, "unpipe"), b)
	c.publish(in.p.Room().Name(), evUnpiped, pipedEvent{Producer: in.p.ID()})
}

// onPipe serves a pipe request: attach a relay sink for the requester, if this node carries
// the producer and has fan-out left.
func (c *Cluster) onPipe(m *nats.Msg) {
	var req pipeRequest
	reply := func(r pipeReply) {
		b, _ := json.Marshal(r)
		_ = m.Respond(b)
	}
	if err := json.Unmarshal(m.Data, &req); err != nil || req.From == "" || req.From == c.me || req.SSRC == 0 {
		reply(pipeReply{Error: "bad request"})
		return
	}
	addr, err := netip.ParseAddrPort(req.RelayAddr)
	if err != nil {
		reply(pipeReply{Error: "bad relay address"})
		return
	}
	p := c.n.Producer(req.Room, req.Producer)
	if p == nil {
		reply(pipeReply{Error: "producer not here"})
		return
	}
	c.mu.Lock()
	if p.Origin() != "" && c.in[p.ID()] == nil {
		c.mu.Unlock()
		reply(pipeReply{Error: "producer not carried here"})
		return
	}
	// Asked again for a pipe it has (the child's earlier request timed out, or it piped the
	// producer again): the child routes the new SSRC only, so the new pipe replaces the old.
	old := c.out[outKey{req.From, req.Producer}]
	delete(c.out, outKey{req.From, req.Producer})
	children := 0
	for k := range c.out {
		if k.producer == req.Producer {
			children++
		}
	}
	c.mu.Unlock()
	if old != nil {
		c.forgetOut(old)
		old.cons.Detach()
	}
	if children >= c.o.Fanout {
		reply(pipeReply{Error: errFull.Error()})
		return
	}
	c.ssrcMu.RLock()
	used := c.outBySSRC[linkSSRC{req.From, req.SSRC}] != nil
	c.ssrcMu.RUnlock()
	if used { // the child forgot a pipe this node has not yet been told to end
		reply(pipeReply{Error: "ssrc in use"})
		return
	}
	link, err := c.relay.Link(req.From, addr, req.Key)
	if err != nil {
		reply(pipeReply{Error: err.Error()})
		return
	}
	cons, err := p.Attach(link, req.SSRC)
	if err != nil {
		reply(pipeReply{Error: err.Error()})
		return
	}
	o := &outPipe{room: p.Room(), producer: p.ID(), child: req.From, link: link, ssrc: req.SSRC, cons: cons}
	c.mu.Lock()
	c.out[outKey{req.From, req.Producer}] = o
	c.mu.Unlock()
	c.ssrcMu.Lock()
	c.outBySSRC[linkSSRC{req.From, req.SSRC}] = o
	c.ssrcMu.Unlock()
	c.log.Debug("relaying producer", "producer", p.ID(), "child", req.From)
	reply(pipeReply{OK: true, RelayAddr: c.addr.String(), Key: link.Key()})
}

// onUnpipe stops relaying a producer to a child: the pipe under the SSRC the child names, not
// one it asked for again since (that request may overtake the unpipe).
func (c *Cluster) onUnpipe(m *nats.Msg) {
	var req pipeRequest
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	c.mu.Lock()
	o := c.out[outKey{req.From, req.Producer}]
	if o != nil && o.ssrc == req.SSRC {
		delete(c.out, outKey{req.From, req.Producer})
	} else {
		o = nil
	}
	c.mu.Unlock()
	if o != nil {
		c.forgetOut(o)
		o.cons.Detach()
	}
}

func (c *Cluster) forgetOut(o *outPipe) {
	c.ssrcMu.Lock()
	if c.outBySSRC[linkSSRC{o.child, o.ssrc}] == o {
		delete(c.outBySSRC, linkSSRC{o.child, o.ssrc})
	}
	c.ssrcMu.Unlock()
}

// notifyDropped tells a child that this node no longer relays a producer to it.
func (c *Cluster) notifyDropped(o *outPipe) {
	b, _ := json.Marshal(pipeRequest{Room: o.room.Name(), Producer: o.producer, From: c.me, SSRC: o.ssrc})
	_ = c.nc.Publish(subjectRelay(o.child, "dropped"), b)
}

// onDropped: the parent stopped relaying a producer here; pipe it again from another carrier.
func (c *Cluster) onDropped(m *nats.Msg) {
	var req pipeRequest
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	c.mu.Lock()
	in := c.in[req.Producer]
	if in == nil || in.parent != req.From || in.ssrc != req.SSRC {
		c.mu.Unlock()
		return
	}
	delete(c.in, req.Producer)
	c.mu.Unlock()
	c.forgetIn(in)
	in.p.SetUpstream(nil)
	go c.Demand(in.p)
}

// dropProducer forgets the pipes of a producer that ended.
func (c *Cluster) dropProducer(id string) {
	c.mu.Lock()
	in := c.in[id]
	delete(c.in, id)
	var outs []*outPipe
	for k, o := range c.out {
		if k.producer == id {
			delete(c.out, k)
			outs = append(outs, o)
		}
	}
	c.mu.Unlock()
	if in != nil {
		c.forgetIn(in)
	}
	for _, o := range outs {
		c.forgetOut(o)
		o.cons.Detach()
	}
}

// HandleRTP implements relay.Handler: media of a producer piped here.
func (c *Cluster) HandleRTP(l *relay.Link, ssrc uint32, pkt []byte) {
	c.ssrcMu.RLock()
	in := c.inBySSRC[linkSSRC{l.Peer, ssrc}]
	c.ssrcMu.RUnlock()
	if in == nil {
		c.metrics.unknownSSRC.Add(1) // a pipe that just ended; one not yet asked for would be a bug
		return
	}
	if len(pkt) < 12 {
		return
	}
	in.received(uint16(pkt[2])<<8 | uint16(pkt[3]))
	in.p.Inject(pkt)
}

// HandleRTCP implements relay.Handler: a child's feedback on a producer piped to it.
func (c *Cluster) HandleRTCP(l *relay.Link, pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		for _, ssrc := range pkt.DestinationSSRC() {
			c.ssrcMu.RLock()
			o := c.outBySSRC[linkSSRC{l.Peer, ssrc}]
			c.ssrcMu.RUnlock()
			if o == nil {
				continue
			}
			switch p := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				o.cons.RequestKeyframe()
			case *rtcp.TransportLayerNack:
				var seqs []uint16
				for _, n := range p.Nacks {
					seqs = append(seqs, n.PacketList()...)
				}
				o.cons.Nack(seqs)
			}
		}
	}
}
