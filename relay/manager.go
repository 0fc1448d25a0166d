package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Pipe manager timing.
const (
	// RequestTimeout bounds one pipe request to a parent.
	RequestTimeout = 2 * time.Second
	// RetryInterval is how long a producer that could not be piped waits before the next try:
	// short, since the usual refusal is a carrier that has not yet noticed that a child of its
	// died (it is full) while the orphan has.
	RetryInterval = 250 * time.Millisecond
)

// demandQueue is the set of producers whose demand changed, drained by the pipe manager. Posting
// never blocks and a producer queued twice is served once, with its state at that time.
type demandQueue struct {
	mu      sync.Mutex
	pending map[*node.Producer]struct{}
	wake    chan struct{}
}

func newDemandQueue() demandQueue {
	return demandQueue{pending: make(map[*node.Producer]struct{}), wake: make(chan struct{}, 1)}
}

func (q *demandQueue) post(p *node.Producer) {
	q.mu.Lock()
	q.pending[p] = struct{}{}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *demandQueue) take() []*node.Producer {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*node.Producer, 0, len(q.pending))
	for p := range q.pending {
		out = append(out, p)
	}
	clear(q.pending)
	return out
}

// Demand queues a remote producer whose demand here changed (node.Demand): the pipe manager
// pipes it here while it has consumers, and unpipes it after. Demand never blocks.
func (ps *Pipes) Demand(p *node.Producer) { ps.demand.post(p) }

// manage is the pipe manager: it serves queued demand one producer at a time (so no two
// requests for one producer overlap, and no lock is held across a request), and retries the
// producers it could not pipe every RetryInterval.
func (ps *Pipes) manage(ctx context.Context) {
	defer ps.wg.Done()
	tick := time.NewTicker(RetryInterval)
	defer tick.Stop()
	retry := map[*node.Producer]struct{}{}
	failures := map[*node.Producer]int{} // consecutive, for the log
	for {
		select {
		case <-ps.stop:
			return
		case <-ps.demand.wake:
			for _, p := range ps.demand.take() {
				delete(retry, p)
				err := ps.serve(ctx, p)
				if err == nil {
					delete(failures, p)
					continue
				}
				retry[p] = struct{}{}
				if errors.Is(err, errHubWait) {
					continue // looked at again on the next tick: no failure
				}
				if failures[p]++; failures[p]%retryLogEvery == 1 { // the first, then every 5 s or so
					ps.log.Warn("cannot pipe producer here, retrying", "producer", p.ID(), "origin", p.Origin(), "attempts", failures[p], "error", err)
				}
			}
		case <-ps.moves.wake:
			for p, from := range ps.moves.take() {
				delete(retry, p)
				ps.move(ctx, p, from)
			}
		case now := <-tick.C:
			ps.expireRetired(now)
			for p := range retry {
				delete(retry, p)
				ps.Demand(p)
			}
			ps.handOff(ctx)
		}
	}
}

// retryLogEvery: one pipe failure of a producer in so many is logged.
const retryLogEvery = 20

// serve brings p's pipe in line with its demand; an error means: try again later.
func (ps *Pipes) serve(ctx context.Context, p *node.Producer) error {
	select {
	case <-ps.stop:
		return nil
	default:
	}
	ps.mu.Lock()
	in := ps.in[p.ID()]
	ps.mu.Unlock()
	switch wanted := p.Wanted(); {
	case wanted && in == nil:
		if err := ps.pipeIn(ctx, p); err != nil {
			return err
		}
		ps.Demand(p) // demand may have ended while asking: look again
	case !wanted:
		delete(ps.hubSince, p.ID())
		if in == nil {
			break
		}
		ps.mu.Lock()
		if ps.in[p.ID()] == in {
			delete(ps.in, p.ID())
		}
		ps.mu.Unlock()
		ps.forgetIn(in)
		ps.unpipe(in)
	}
	return nil
}

// pipeIn asks the candidate parents in turn to relay p here, ranking them again after each
// refusal: what this node heard while it asked (its region hub's piped announcement, a carrier
// filling up) counts, so that a node that crosses a region boundary in a storm switches to a
// carrier of its region as soon as there is one.
func (ps *Pipes) pipeIn(ctx context.Context, p *node.Producer) error {
	gen := p.Generation() // before the origin is read: a move meanwhile makes the pipe stale, never wrong
	parents := func() []string {
		return Parents(ps.trees.Tree(p.ID()), p.Origin(), ps.o.Self, ps.o.Region, ps.o.Fanout, ps.peers.Regions(), ps.peers.Draining()...)
	}
	cands := parents()
	if len(cands) == 0 {
		return ErrNoCarrier
	}
	if ps.waitForHub(p, cands) {
		return errHubWait
	}
	var errs []error
	tried := map[string]bool{}
	for {
		parent := ""
		for _, c := range cands {
			if !tried[c] {
				parent = c
				break
			}
		}
		if parent == "" {
			return errors.Join(errs...)
		}
		tried[parent] = true
		_, err := ps.pipeFrom(ctx, p, parent, gen)
		if err == nil {
			delete(ps.hubSince, p.ID())
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", parent, err))
		cands = parents()
	}
}

// pipeFrom pipes p here from parent, for p's source generation gen; the new pipe replaces the
// one p had (if any) as p's pipe in, its upstream and this node's edge in the tree.
func (ps *Pipes) pipeFrom(ctx context.Context, p *node.Producer, parent string, gen uint32) (*inPipe, error) {
	// Ready the link before asking: the parent sends as soon as it has the request, before its
	// answer arrives here.
	pe, ok := ps.peers.Peer(parent)
	if !ok {
		return nil, ErrPeerGone
	}
	paddr, err := netip.ParseAddrPort(pe.RelayAddr)
	if err != nil {
		return nil, fmt.Errorf("relay address %q: %w", pe.RelayAddr, err)
	}
	link, err := ps.t.Expect(parent, paddr)
	if err != nil {
		return nil, err
	}
	in := &inPipe{p: p, parent: parent, link: link, gen: gen, origin: p.Origin()}
	ps.routeIn(in)
	if err := ps.ask(ctx, in); err != nil {
		ps.unrouteIn(in)
		return nil, err
	}
	ps.mu.Lock()
	ps.in[p.ID()] = in
	ps.mu.Unlock()
	ps.trees.Piped(p.Room().Name(), p.ID(), ps.o.Self, parent)
	p.SetUpstream(upstream{link: link, ssrc: in.ssrc})
	p.RequestKeyframe()
	ps.LayerDemand(p, p.DemandedLayers()) // what changed while asking
	ps.sig.Piped(p.Room().Name(), p.ID(), parent)
	ps.log.Debug("producer piped here", "producer", p.ID(), "parent", parent)
	return in, nil
}

// ask asks in's parent to relay its producer here, and completes the link with the parent's
// answer.
func (ps *Pipes) ask(ctx context.Context, in *inPipe) error {
	k := in.link.Key()
	req := PipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: ps.o.Self, RelayAddr: ps.addr.String(), Key: k.Key, KeyEpoch: k.Epoch, SSRC: in.ssrc, Layers: pipeSSRCs,
		Demand: in.p.DemandedLayers()}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	rep, err := ps.sig.RequestPipe(ctx, in.parent, req)
	if err != nil {
		return err
	}
	if !rep.OK {
		return errors.New(rep.Error)
	}
	addr, err := netip.ParseAddrPort(rep.RelayAddr)
	if err != nil {
		return err
	}
	link, err := ps.t.Link(in.parent, addr, PeerKey{Key: rep.Key, Epoch: rep.KeyEpoch, SSRC: rep.SSRC})
	if err != nil {
		return err
	}
	if link != in.link {
		return ErrLinkChanged
	}
	return nil
}
