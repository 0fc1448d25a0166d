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

// HandoffTimeout is how long a handed-off pipe stays after its successor is set up (it joins
// the moved producers' retiring pipes): its packets are dropped as soon as the successor carries
// media, and it ends after this window in any case (a paused producer sends nothing to prove the
// successor works).
const HandoffTimeout = SwitchWindow

// handOff runs on the pipe manager's tick: each producer piped here from a draining parent
// (not its origin: that one's publisher moves it; nor one whose set-up is under way) is piped again from another carrier, if one
// takes it, and the old pipe retires.
func (ps *Pipes) handOff(ctx context.Context, inflight map[*node.Producer]bool) {
	draining := ps.peers.Draining()
	if len(draining) == 0 {
		return
	}
	ps.mu.Lock()
	var from []*inPipe
	for _, in := range ps.in {
		if !inflight[in.p] && slices.Contains(draining, in.parent) && in.parent != in.origin && in.origin == in.p.Origin() && in.gen == in.p.Generation() {
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
		for _, parent := range Parents(ps.trees.Tree(p.ID()), old.origin, ps.o.Self, ps.o.Region, ps.o.Fanout, ps.peers.Regions(), draining...) {
			if slices.Contains(draining, parent) {
				break // draining carriers come last: no other carrier takes it, keep the old pipe
			}
			next, err := ps.pipeFrom(ctx, p, parent, old.gen)
			if err != nil {
				continue
			}
			old.next.Store(next)
			ps.mu.Lock()
			ps.retiring[old] = time.Now().Add(HandoffTimeout)
			ps.mu.Unlock()
			ps.log.Debug("handed producer off from a draining parent", "producer", p.ID(), "from", old.parent, "to", parent)
			break
		}
	}
}
