package relay

import (
	"context"
	"slices"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Relay hand-off (PROTOCOL.md, "Resume", "Migration"). A node that drains stops being a parent
// for new children (Parents ranks it last), and its children move away from it before it goes,
// make-before-break: each child pipes the producer from another carrier while the draining
// parent's pipe still runs, drops the old pipe's packets once the new one carries media (both
// carry the same stream: a relay sink keeps the producer's sequence numbers and timestamps, so
// the seam is at most a few lost packets, which NACKs repair), and only then unpipes the old one.
// A producer whose origin drains cannot move this way: its publisher migrates, and the producer
// moves with it (node.ProducerMoved).

// HandoffTimeout bounds a hand-off: the old pipe ends once the new one carried a packet, or this
// long after the new one was set up (a paused producer sends nothing to prove it).
const HandoffTimeout = 2 * time.Second

// handoff is one producer moving from a draining parent: old still routed, next its successor.
type handoff struct {
	old, next *inPipe
	at        time.Time
}

// handOff runs on the pipe manager's tick: it ends the hand-offs whose new pipe carries media
// (or that timed out), and starts one for each producer piped here from a draining parent that
// another carrier can relay.
func (ps *Pipes) handOff(ctx context.Context, moving map[*node.Producer]*handoff) {
	now := time.Now()
	for p, h := range moving {
		if h.next.flowing.Load() || now.Sub(h.at) >= HandoffTimeout {
			delete(moving, p)
			ps.retire(h.old)
		}
	}
	draining := ps.peers.Draining()
	if len(draining) == 0 {
		return
	}
	ps.mu.Lock()
	var from []*inPipe
	for _, in := range ps.in {
		if slices.Contains(draining, in.parent) && in.parent != in.p.Origin() && moving[in.p] == nil {
			from = append(from, in)
		}
	}
	ps.mu.Unlock()
	for _, old := range from {
		select {
		case <-ps.stop:
			return
		default:
		}
		p := old.p
		for _, parent := range Parents(ps.trees.Tree(p.ID()), p.Origin(), ps.o.Self, ps.o.Region, ps.o.Fanout, ps.peers.Regions(), draining...) {
			if slices.Contains(draining, parent) {
				break // draining carriers come last: no other carrier takes it, keep the old pipe
			}
			next, err := ps.pipeFrom(ctx, p, parent)
			if err != nil {
				continue
			}
			old.next.Store(next)
			moving[p] = &handoff{old: old, next: next, at: now}
			ps.log.Debug("handing producer off from a draining parent", "producer", p.ID(), "from", old.parent, "to", parent)
			break
		}
	}
}

// retire ends a handed-off pipe: its packets are no longer routed and its parent stops
// relaying it. The room is not told: this node still carries the producer, from its new parent.
func (ps *Pipes) retire(old *inPipe) {
	ps.unrouteIn(old)
	ps.sig.Unpipe(old.parent, PipeRequest{Room: old.p.Room().Name(), Producer: old.p.ID(), From: ps.o.Self, SSRC: old.ssrc})
}
