package relay

import (
	"net/netip"

	"github.com/cascade-sfu/cascade/node"
)

// ServePipe serves another node's pipe request: attach a relay sink for the asker, if this node
// carries the producer and has fan-out left. It does no I/O beyond the local socket.
func (ps *Pipes) ServePipe(req PipeRequest) PipeReply {
	fail := func(err error) PipeReply { return PipeReply{Error: err.Error()} }
	if req.From == "" || req.From == ps.o.Self || req.SSRC == 0 {
		return fail(ErrBadRequest)
	}
	addr, err := netip.ParseAddrPort(req.RelayAddr)
	if err != nil {
		return fail(ErrBadRequest)
	}
	p := ps.o.Producers.Producer(req.Room, req.Producer)
	if p == nil {
		return fail(ErrNotCarried)
	}
	ps.mu.Lock()
	if p.Origin() != "" && ps.in[p.ID()] == nil {
		ps.mu.Unlock()
		return fail(ErrNotCarried)
	}
	// Asked again for a pipe it has (the child's earlier request timed out, or it piped the
	// producer again): the child routes the new SSRC only, so the new pipe replaces the old.
	old := ps.out[outKey{req.From, req.Producer}]
	delete(ps.out, outKey{req.From, req.Producer})
	var kids []string
	for k := range ps.out {
		if k.producer == req.Producer {
			kids = append(kids, k.child)
		}
	}
	ps.mu.Unlock()
	if old != nil {
		ps.forgetOut(old)
		old.cons.Detach()
	}
	if err := Accept(ps.o.Fanout, ps.o.Region, ps.region(req.From), ps.regionsOf(kids)); err != nil {
		return fail(err)
	}
	ps.ssrcMu.RLock()
	used := ps.outBySSRC[linkSSRC{req.From, req.SSRC}] != nil
	ps.ssrcMu.RUnlock()
	if used { // the child forgot a pipe this node has not yet been told to end
		return fail(ErrSSRCInUse)
	}
	link, err := ps.t.Link(req.From, addr, PeerKey{Key: req.Key, Epoch: req.KeyEpoch, SSRC: req.SSRC})
	if err != nil {
		return fail(err)
	}
	if link.sentUnder(req.SSRC) { // never on a counter's SSRC: a replayed or forged request
		return fail(ErrSSRCInUse)
	}
	cons, err := p.Attach(link, req.SSRC)
	if err != nil {
		return fail(err)
	}
	o := &outPipe{room: p.Room(), producer: p.ID(), child: req.From, link: link, ssrc: req.SSRC, cons: cons}
	ps.mu.Lock()
	ps.out[outKey{req.From, req.Producer}] = o
	ps.mu.Unlock()
	ps.ssrcMu.Lock()
	ps.outBySSRC[linkSSRC{req.From, req.SSRC}] = o
	ps.ssrcMu.Unlock()
	ps.log.Debug("relaying producer", "producer", p.ID(), "child", req.From)
	k := link.Key()
	return PipeReply{OK: true, RelayAddr: ps.addr.String(), Key: k.Key, KeyEpoch: k.Epoch, SSRC: k.SSRC}
}

// Unpiped stops relaying a producer to a child that asked: the pipe under the SSRC the child
// names, not one it asked for again since (that request may overtake the unpipe).
func (ps *Pipes) Unpiped(req PipeRequest) {
	ps.mu.Lock()
	o := ps.out[outKey{req.From, req.Producer}]
	if o != nil && o.ssrc == req.SSRC {
		delete(ps.out, outKey{req.From, req.Producer})
	} else {
		o = nil
	}
	ps.mu.Unlock()
	if o != nil {
		ps.forgetOut(o)
		o.cons.Detach()
	}
}

// Dropped: the parent stopped relaying a producer here; pipe it again from another carrier.
func (ps *Pipes) Dropped(req PipeRequest) {
	ps.mu.Lock()
	in := ps.in[req.Producer]
	if in == nil || in.parent != req.From || in.ssrc != req.SSRC {
		ps.mu.Unlock()
		return
	}
	delete(ps.in, req.Producer)
	ps.mu.Unlock()
	ps.forgetIn(in)
	in.p.SetUpstream(nil)
	ps.Demand(in.p)
}

// DropProducer forgets the pipes of a producer that ended here: its relay sinks are detached,
// and its parent is told when it was piped here (the room closed here, or its origin removed
// it: then the parent drops it too, and the unpipe finds nothing).
func (ps *Pipes) DropProducer(id string) {
	ins, outs := ps.take(func(in *inPipe) bool { return in.p.ID() == id },
		func(k outKey, _ *outPipe) bool { return k.producer == id })
	for _, in := range ins {
		ps.unrouteIn(in)
		ps.unpipe(in)
	}
	for _, o := range outs {
		ps.forgetOut(o)
		o.cons.Detach()
	}
	ps.endRetiring(func(in *inPipe) bool { return in.p.ID() == id }, true)
	ps.trees.ForgetProducer(id)
}

// CloseRoom stops relaying a room that closed here: its pipes in are unpiped from their
// parents, its children are told that this node no longer relays to them.
func (ps *Pipes) CloseRoom(r *node.Room) {
	ins, outs := ps.take(func(in *inPipe) bool { return in.p.Room() == r },
		func(_ outKey, o *outPipe) bool { return o.room == r })
	for _, in := range ins {
		ps.forgetIn(in)
		ps.unpipe(in)
	}
	for _, o := range outs {
		ps.forgetOut(o)
		o.cons.Detach()
		ps.sig.Dropped(o.child, PipeRequest{Room: r.Name(), Producer: o.producer, From: ps.o.Self, SSRC: o.ssrc})
	}
	ps.endRetiring(func(in *inPipe) bool { return in.p.Room() == r }, true)
	ps.trees.ForgetRoom(r.Name())
}

// NodeGone cleans up after a node that left the cluster: relays from and to it end, and the
// producers it relayed here are piped again from another carrier (the origin lives).
func (ps *Pipes) NodeGone(id string) {
	gone, detach := ps.take(func(in *inPipe) bool { return in.parent == id || in.p.Origin() == id },
		func(k outKey, _ *outPipe) bool { return k.child == id })
	ps.trees.RemoveNode(id)
	for _, o := range detach {
		ps.forgetOut(o)
		o.cons.Detach()
	}
	ps.endRetiring(func(in *inPipe) bool { return in.parent == id }, false)
	ps.t.RemoveLink(id)
	for _, in := range gone {
		ps.unrouteIn(in)
		in.p.SetUpstream(nil)
		if in.p.Origin() != id { // the parent died, the origin lives: pipe from another carrier
			ps.Demand(in.p)
		}
	}
}

// take removes the pipes in and out that match, under the lock, and returns them for the
// caller to end outside it.
func (ps *Pipes) take(in func(*inPipe) bool, out func(outKey, *outPipe) bool) ([]*inPipe, []*outPipe) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var ins []*inPipe
	for id, p := range ps.in {
		if in(p) {
			delete(ps.in, id)
			ins = append(ins, p)
		}
	}
	var outs []*outPipe
	for k, o := range ps.out {
		if out(k, o) {
			delete(ps.out, k)
			outs = append(outs, o)
		}
	}
	return ins, outs
}

// unpipe tells in's parent and the room that this node no longer carries in's producer.
func (ps *Pipes) unpipe(in *inPipe) {
	ps.sig.Unpipe(in.parent, PipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: ps.o.Self, SSRC: in.ssrc})
	ps.sig.Piped(in.p.Room().Name(), in.p.ID(), "")
}

// region is a live peer's region ("" when unknown).
func (ps *Pipes) region(id string) string {
	ps.mu.Lock()
	peers := ps.peers
	ps.mu.Unlock()
	if peers == nil {
		return ""
	}
	p, _ := peers.Peer(id)
	return p.Region
}

// regionsOf maps node ids to their regions.
func (ps *Pipes) regionsOf(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = ps.region(id)
	}
	return out
}
