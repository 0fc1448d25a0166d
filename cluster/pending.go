package cluster

import (
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Pending is a placing node's optimistic accounting: the clients it sent to other nodes that
// those nodes' loads, as last heard, do not show yet. Every node places from peers' loads a
// heartbeat old, so without it a join storm goes, from every node, to the same least loaded
// (or room-carrying) node until its next heartbeat shows it full: a region fills one node per
// heartbeat while others stay empty. With it, each placement adds to its target's load at
// once, on the node that made it, until the target's heartbeats reflect it: an entry ends when
// the target's heard load changes (a newer heartbeat) at least grace after the placement
// (time for the client to get there and the target to beat; a heartbeat heard sooner may have
// left before the client arrived, so the entry stays), or ttl after it at the latest (the
// target went silent). Not safe for concurrent use: Placer guards it.
type Pending struct {
	ttl, grace time.Duration
	byNode     map[string][]pendingEntry
}

// pendingEntry is one placement on a node: what it adds to the node's load, and the node's
// load as heard when it was made (or since, until grace passed).
type pendingEntry struct {
	at           time.Time
	participants int
	consumers    int64
	heardP       int
	heardC       int64
}

// NewPending returns an accounting whose entries end at their target's first new heartbeat
// heard grace after the placement, or ttl after it.
func NewPending(ttl, grace time.Duration) *Pending {
	return &Pending{ttl: ttl, grace: grace, byNode: map[string][]pendingEntry{}}
}

// PendingTimes are the ttl and grace of a placer's Pending for a heartbeat interval: a load
// heard an interval and a half after a placement reflects it (the client got there, the target
// beat since, and its region's digest, up to an interval after the heartbeat, carried it: see
// Aggregator); an entry lasts three intervals at most. (A quarter interval ended the entries
// too soon: the town hall in cascade sim had 360 viewers give up instead of 70; with
// aggregated heartbeats, half an interval and two intervals had 26,420 placements refused and
// retried, this 14,570.)
func PendingTimes(heartbeat time.Duration) (ttl, grace time.Duration) {
	return 3 * heartbeat, 3 * heartbeat / 2
}

// Add counts participants (with consumers among them) placed at now on the node whose load is
// heard as heard.
func (p *Pending) Add(heard node.Stats, participants int, consumers int64, now time.Time) {
	p.byNode[heard.ID] = append(p.byNode[heard.ID], pendingEntry{at: now, participants: participants, consumers: consumers,
		heardP: heard.Participants, heardC: heard.Consumers})
}

// Apply returns peers with the pending placements added to their loads (peers itself when
// none is pending: the caller's slice is never written), and ends the entries their targets'
// heartbeats now reflect.
func (p *Pending) Apply(peers []node.Stats, now time.Time) []node.Stats {
	if len(p.byNode) == 0 {
		return peers
	}
	var out []node.Stats
	seen := 0
	for i := range peers {
		es, ok := p.byNode[peers[i].ID]
		if !ok {
			continue
		}
		seen++
		st := &peers[i]
		kept := es[:0]
		var addP int
		var addC int64
		for _, e := range es {
			if now.Sub(e.at) >= p.ttl {
				continue
			}
			if e.heardP != st.Participants || e.heardC != st.Consumers { // a newer heartbeat
				if now.Sub(e.at) >= p.grace {
					continue
				}
				e.heardP, e.heardC = st.Participants, st.Consumers
			}
			kept = append(kept, e)
			addP += e.participants
			addC += e.consumers
		}
		if len(kept) == 0 {
			delete(p.byNode, st.ID)
			continue
		}
		p.byNode[st.ID] = kept
		if out == nil {
			out = make([]node.Stats, len(peers))
			copy(out, peers)
		}
		out[i].Participants += addP
		out[i].Consumers += addC
	}
	if seen < len(p.byNode) { // entries of nodes gone from the peers
		for id, es := range p.byNode {
			if now.Sub(es[len(es)-1].at) >= p.ttl {
				delete(p.byNode, id)
			}
		}
	}
	if out == nil {
		return peers
	}
	return out
}

// Len is the number of placements still counted.
func (p *Pending) Len() int {
	n := 0
	for _, es := range p.byNode {
		n += len(es)
	}
	return n
}

// PlaceCounted is Place with optimistic accounting: the peers' loads include what pend says
// this node sent them recently, and a redirect of participants clients (each with perClient
// consumers) is added to pend. Placer and cascade sim both decide through it.
//
// A redirect counts once for every candidate node of the client's region, not once: every
// node of the region places that region's clients (a load balancer spreads them over all),
// each from the same stale loads, so while this node sends a client to a node, each of the
// others likely sends one there too. Counting only its own would still let the region's nodes
// together pile a heartbeat's worth of a join storm onto one node; counting the region's share
// makes each node move on to the next as soon as the first would fill. Overcounting only
// spreads clients further, and lasts until the entry expires.
func PlaceCounted(in PlacementInput, pend *Pending, now time.Time, participants int, perClient int64) Decision {
	if pend == nil {
		return Place(in)
	}
	heard := in.Peers
	in.Peers = pend.Apply(heard, now)
	d := Place(in)
	if d.Redirect {
		placers := 0
		in.each(in.region(), func(*node.Stats) { placers++ })
		n := participants * max(placers, 1)
		for i := range heard {
			if heard[i].ID == d.Node {
				pend.Add(heard[i], n, int64(n)*perClient, now)
				break
			}
		}
	}
	return d
}
