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

// MaxSetups bounds the pipe set-ups one node has under way at once. A set-up is a request and
// a reply across the cluster (two region delays when the parent is in another region), so a
// node that serves its demand one producer at a time, as it once did, waits that round trip
// once per producer: with hundreds of small rooms the last one's media came seconds late. The
// manager instead starts up to MaxSetups set-ups, each on a goroutine of its own that walks
// the candidate parents, and goes on serving the rest of the demand (unpipes, hub waits, moves)
// while they run. The bound keeps a burst of demand from flooding the parents and the bus: 32
// set-ups of 2 x 150 ms are about a hundred a second across the farthest boundary.
const MaxSetups = 32

// setupDone is a finished set-up: its producer, and what pipeFromAny said.
type setupDone struct {
	p   *node.Producer
	err error
}

// manager is the pipe manager's state, owned by its goroutine (manage).
type manager struct {
	ready    []*node.Producer            // demand not yet served, in the order it came
	queued   map[*node.Producer]bool     // in ready
	inflight map[*node.Producer]bool     // a set-up is under way
	again    map[*node.Producer]bool     // demand that came while its set-up was under way
	moved    map[*node.Producer]string   // moves that came while a set-up was under way
	retry    map[*node.Producer]struct{} // looked at again on the next tick
	failures map[*node.Producer]int      // consecutive, for the log
	done     chan setupDone
}

func newManager() *manager {
	return &manager{queued: map[*node.Producer]bool{}, inflight: map[*node.Producer]bool{}, again: map[*node.Producer]bool{},
		moved: map[*node.Producer]string{}, retry: map[*node.Producer]struct{}{}, failures: map[*node.Producer]int{},
		done: make(chan setupDone, MaxSetups)}
}

// enqueue adds p to the demand to serve, once.
func (m *manager) enqueue(p *node.Producer) {
	if m.inflight[p] {
		m.again[p] = true // served when its set-up ends: no two requests for one producer overlap
		return
	}
	if !m.queued[p] {
		m.queued[p] = true
		m.ready = append(m.ready, p)
	}
}

// manage is the pipe manager: it serves queued demand (one request for a producer at a time,
// and no lock held across a request), with up to MaxSetups set-ups under way at once, and
// retries the producers it could not pipe every RetryInterval.
func (ps *Pipes) manage(ctx context.Context) {
	defer ps.wg.Done()
	tick := time.NewTicker(RetryInterval)
	defer tick.Stop()
	m := newManager()
	for {
		select {
		case <-ps.stop:
			return
		case <-ps.demand.wake:
			for _, p := range ps.demand.take() {
				delete(m.retry, p)
				m.enqueue(p)
			}
		case d := <-m.done:
			ps.finished(m, d)
		case <-ps.moves.wake:
			for p, from := range ps.moves.take() {
				delete(m.retry, p)
				if m.inflight[p] {
					if _, ok := m.moved[p]; !ok {
						m.moved[p] = from
					}
					continue
				}
				ps.move(p, from)
			}
		case now := <-tick.C:
			ps.expireRetired(now)
			for p := range m.retry {
				delete(m.retry, p)
				ps.Demand(p)
			}
			ps.handOff(ctx, m.inflight)
		}
		ps.dispatch(ctx, m)
	}
}

// dispatch serves the ready demand while fewer than MaxSetups set-ups are under way.
func (ps *Pipes) dispatch(ctx context.Context, m *manager) {
	for len(m.ready) > 0 && len(m.inflight) < MaxSetups {
		p := m.ready[0]
		m.ready[0] = nil
		m.ready = m.ready[1:]
		delete(m.queued, p)
		if m.inflight[p] {
			m.again[p] = true
			continue
		}
		ps.serve(ctx, m, p)
	}
	if len(m.ready) == 0 {
		m.ready = nil // let the backing array go after a burst
	}
}

// retryLogEvery: one pipe failure of a producer in so many is logged.
const retryLogEvery = 20

// serve brings p's pipe in line with its demand: it unpipes a producer no longer wanted, and
// starts the set-up of one wanted and not piped here, unless it waits for its region's hub.
func (ps *Pipes) serve(ctx context.Context, m *manager, p *node.Producer) {
	select {
	case <-ps.stop:
		return
	default:
	}
	ps.mu.Lock()
	in := ps.in[p.ID()]
	ps.mu.Unlock()
	switch wanted := p.Wanted(); {
	case wanted && in == nil:
		gen := p.Generation() // before the origin is read: a move meanwhile makes the pipe stale, never wrong
		cands := ps.parents(p)
		if len(cands) == 0 {
			delete(ps.hubSince, p.ID()) // no hub wait runs without a carrier (HubWaits)
			ps.failed(m, p, ErrNoCarrier)
			return
		}
		if ps.waitForHub(p, cands) {
			m.retry[p] = struct{}{} // looked at again on the next tick: no failure
			return
		}
		m.inflight[p] = true
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			err := ps.pipeFromAny(ctx, p, gen, cands)
			select {
			case m.done <- setupDone{p, err}:
			case <-ps.stop:
			}
		}()
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
}

// finished takes a set-up's end on the manager goroutine: a failed one is retried on the next
// tick; demand or a move that came meanwhile is served now.
func (ps *Pipes) finished(m *manager, d setupDone) {
	p := d.p
	delete(m.inflight, p)
	if d.err == nil {
		delete(ps.hubSince, p.ID())
		delete(m.failures, p)
		m.enqueue(p) // demand may have ended while asking: look again
	} else if errors.Is(d.err, errHubWait) {
		m.retry[p] = struct{}{} // looked at again on the next tick: no failure
	} else {
		ps.failed(m, p, d.err)
	}
	if from, ok := m.moved[p]; ok {
		delete(m.moved, p)
		delete(m.retry, p)
		ps.move(p, from)
	}
	if m.again[p] {
		delete(m.again, p)
		delete(m.retry, p)
		m.enqueue(p)
	}
}

// failed notes a producer that could not be piped: it is tried again on the next tick.
func (ps *Pipes) failed(m *manager, p *node.Producer, err error) {
	m.retry[p] = struct{}{}
	if m.failures[p]++; m.failures[p]%retryLogEvery == 1 { // the first, then every 5 s or so
		ps.log.Warn("cannot pipe producer here, retrying", "producer", p.ID(), "origin", p.Origin(), "attempts", m.failures[p], "error", err)
	}
}

// parents ranks p's candidate parents from this node's tree view and membership now.
func (ps *Pipes) parents(p *node.Producer) []string {
	return Parents(ps.trees.Tree(p.ID()), p.Origin(), ps.o.Self, ps.o.Region, ps.o.Fanout, ps.peers.Regions(), ps.peers.Draining()...)
}

// pipeFromAny asks the candidate parents in turn to relay p here, ranking them again after each
// refusal: what this node heard while it asked (its region hub's piped announcement, a carrier
// filling up) counts, so that a node that crosses a region boundary in a storm switches to a
// carrier of its region as soon as there is one. A candidate that answers that it does not
// carry p leaves this node's view of the tree (it was stale: a carrier that lost its parent in
// a partition); a walk that began with a carrier of this region and met such a stale one does
// not go on across the boundary, but ends (errHubWait) so that the manager's next try, with
// only other regions' carriers left, waits for the region's hub (HubDelay) instead of every
// node of a healed region crossing at once. It runs on a set-up goroutine of its own.
func (ps *Pipes) pipeFromAny(ctx context.Context, p *node.Producer, gen uint32, cands []string) error {
	var errs []error
	tried := map[string]bool{}
	local, stale := !HubWaits(ps.o.Region, cands, ps.peers.Regions()), false
	for {
		parent := ""
		for _, c := range cands {
			if !tried[c] {
				parent = c
				break
			}
		}
		if parent == "" {
			if len(errs) == 0 {
				return ErrNoCarrier
			}
			return errors.Join(errs...)
		}
		if local && stale {
			if r, ok := ps.peers.Regions()[parent]; ok && r != ps.o.Region {
				return errHubWait
			}
		}
		tried[parent] = true
		_, err := ps.pipeFrom(ctx, p, parent, gen)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNotCarried) {
			ps.trees.Piped(p.Room().Name(), p.ID(), parent, "")
			stale = true
		}
		errs = append(errs, fmt.Errorf("%s: %w", parent, err))
		cands = ps.parents(p)
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
		if rep.Error == ErrNotCarried.Error() {
			return ErrNotCarried
		}
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
