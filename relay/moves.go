package relay

import (
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// SwitchWindow is how long the pipe of a moved producer's old source stays after the move
// (make-before-break): its consumers forward the old source until the new one's first keyframe
// arrives, which needs the new pipe up and a keyframe through it.
const SwitchWindow = 2 * time.Second

// Moving producers (node.ProducerMoved). A producer whose publisher resumed on another node keeps
// its Producer object here, its consumers and the relay sinks towards this node's children; only
// its source changes. If it is wanted here and its new origin is another node, it is piped from
// the new origin's tree (the relay tree decides the parent, as for any demand), its packets
// tagged with the producer's generation at the move (Producer.InjectFrom), so that the
// consumers switch at the new source's first keyframe. The old pipe stays for SwitchWindow,
// or goes at once when the old origin left the cluster. If the new origin is this node (a local
// publisher adopted it), the old pipe goes after the window and the children keep their sinks,
// now fed by the local publisher. The old origin's tree records go: every carrier re-pipes from
// the new origin and announces it.

// moveQueue is the producers that moved, drained by the pipe manager, with the origin each
// moved from (the first one, if it moved twice before the manager looked).
type moveQueue struct {
	mu      sync.Mutex
	pending map[*node.Producer]string
	wake    chan struct{}
}

func newMoveQueue() moveQueue {
	return moveQueue{pending: make(map[*node.Producer]string), wake: make(chan struct{}, 1)}
}

func (q *moveQueue) post(p *node.Producer, from string) {
	q.mu.Lock()
	if _, ok := q.pending[p]; !ok {
		q.pending[p] = from
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *moveQueue) take() map[*node.Producer]string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	q.pending = make(map[*node.Producer]string)
	return out
}

// Moved queues a producer that changed origin (node.ProducerMoved; from is the old origin, ""
// for this node): the pipe manager re-pipes it from the new origin and retires the old pipe.
// Moved never blocks.
func (ps *Pipes) Moved(p *node.Producer, from string) {
	ps.trees.ForgetProducer(p.ID()) // the old origin's tree; the carriers announce the new one
	ps.moves.post(p, from)
}

// move serves a queued move on the manager goroutine (never while a set-up of the producer is
// under way): the current pipe in, unless it already carries the new source, is retired (or
// ended at once when the old origin is gone), and the producer's demand is served again.
func (ps *Pipes) move(p *node.Producer, from string) {
	ps.mu.Lock()
	in := ps.in[p.ID()]
	current := in != nil && in.gen == p.Generation() && in.origin == p.Origin()
	if in != nil && !current {
		delete(ps.in, p.ID())
	}
	ps.mu.Unlock()
	if in != nil && !current {
		_, live := ps.peers.Peer(from)
		if _, parentLive := ps.peers.Peer(in.parent); from != "" && !live || !parentLive {
			ps.unrouteIn(in) // nothing comes from a dead source: no window
			if parentLive {
				ps.sig.Unpipe(in.parent, PipeRequest{Room: p.Room().Name(), Producer: p.ID(), From: ps.o.Self, SSRC: in.ssrc})
			}
		} else {
			ps.mu.Lock()
			ps.retiring[in] = time.Now().Add(SwitchWindow)
			ps.mu.Unlock()
		}
	}
	ps.log.Debug("producer moved", "producer", p.ID(), "from", from, "origin", p.Origin(), "generation", p.Generation())
	if p.Origin() == "" {
		return // adopted here: the local publisher feeds the consumers and the children's sinks
	}
	ps.Demand(p) // served as any demand (the manager's retry: the new origin may not carry it yet)
}

// expireRetired ends the old pipes whose switch window is over at now: routing stops and the
// parent is told, by the old pipe's SSRC (a pipe made again from the same parent has replaced
// it there already). The tree edge is the new pipe's: it stays.
func (ps *Pipes) expireRetired(now time.Time) {
	ends := ps.takeRetiring(func(_ *inPipe, until time.Time) bool { return !now.Before(until) })
	for _, in := range ends {
		ps.unrouteIn(in)
		ps.sig.Unpipe(in.parent, PipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: ps.o.Self, SSRC: in.ssrc})
	}
}

// endRetiring ends at once the old pipes that match (their producer ended, their room closed
// here, their parent left): routing stops; the parent is told unless it left.
func (ps *Pipes) endRetiring(match func(*inPipe) bool, tell bool) {
	for _, in := range ps.takeRetiring(func(in *inPipe, _ time.Time) bool { return match(in) }) {
		ps.unrouteIn(in)
		if tell {
			ps.sig.Unpipe(in.parent, PipeRequest{Room: in.p.Room().Name(), Producer: in.p.ID(), From: ps.o.Self, SSRC: in.ssrc})
		}
	}
}

func (ps *Pipes) takeRetiring(match func(*inPipe, time.Time) bool) []*inPipe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []*inPipe
	for in, until := range ps.retiring {
		if match(in, until) {
			delete(ps.retiring, in)
			out = append(out, in)
		}
	}
	return out
}

// Retiring counts the old pipes of moved producers still in their switch window.
func (ps *Pipes) Retiring() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.retiring)
}
