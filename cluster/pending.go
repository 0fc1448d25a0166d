package cluster

import (
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Pending is a placing node's optimistic accounting: the clients it sent to other nodes that
// those nodes' loads, as last heard, may not show yet. Every node places from peers' loads a
// heartbeat old, so without it a join storm goes, from every node, to the same least loaded
// (or room-carrying) node until its next heartbeat shows it full: a region fills one node per
// heartbeat while others stay empty. With it, each placement adds to its target's load at
// once, on the node that made it, until the target's heartbeats had time to reflect it (TTL,
// a heartbeat interval plus a margin): then the entry expires and the heard load alone counts.
// Between the heartbeat that shows a placement and the entry's expiry it counts twice, which
// only spreads joins a little more. Not safe for concurrent use: Placer guards it.
type Pending struct {
	ttl     time.Duration
	entries []pendingEntry // in placement order, so expiry trims the front
	byNode  map[string]pendingLoad
}

type pendingEntry struct {
	node string
	at   time.Time
	load pendingLoad
}

// pendingLoad is what placements add to a node's load.
type pendingLoad struct {
	participants int
	consumers    int64
}

// NewPending returns an accounting whose entries count for ttl after their placement.
func NewPending(ttl time.Duration) *Pending {
	return &Pending{ttl: ttl, byNode: map[string]pendingLoad{}}
}

// Add counts participants (with consumers among them) placed on id at now.
func (p *Pending) Add(id string, participants int, consumers int64, now time.Time) {
	l := pendingLoad{participants: participants, consumers: consumers}
	p.entries = append(p.entries, pendingEntry{node: id, at: now, load: l})
	t := p.byNode[id]
	t.participants += participants
	t.consumers += consumers
	p.byNode[id] = t
}

// expire drops the entries older than the TTL.
func (p *Pending) expire(now time.Time) {
	i := 0
	for ; i < len(p.entries) && now.Sub(p.entries[i].at) >= p.ttl; i++ {
		e := p.entries[i]
		t := p.byNode[e.node]
		t.participants -= e.load.participants
		t.consumers -= e.load.consumers
		if t.participants == 0 && t.consumers == 0 {
			delete(p.byNode, e.node)
		} else {
			p.byNode[e.node] = t
		}
	}
	if i > 0 {
		p.entries = append(p.entries[:0], p.entries[i:]...)
	}
}

// Apply returns peers with the pending placements added to their loads (peers itself when
// none is pending: the caller's slice is never written).
func (p *Pending) Apply(peers []node.Stats, now time.Time) []node.Stats {
	p.expire(now)
	if len(p.byNode) == 0 {
		return peers
	}
	out := make([]node.Stats, len(peers))
	copy(out, peers)
	for i := range out {
		if l, ok := p.byNode[out[i].ID]; ok {
			out[i].Participants += l.participants
			out[i].Consumers += l.consumers
		}
	}
	return out
}

// Len is the number of placements still counted.
func (p *Pending) Len() int { return len(p.entries) }

// PlaceCounted is Place with optimistic accounting: the peers' loads include what pend says
// this node sent them recently, and a redirect is added to pend (participants clients, each
// with perClient consumers). Placer and cascade sim both decide through it.
func PlaceCounted(in PlacementInput, pend *Pending, now time.Time, participants int, perClient int64) Decision {
	if pend == nil {
		return Place(in)
	}
	in.Peers = pend.Apply(in.Peers, now)
	d := Place(in)
	if d.Redirect {
		pend.Add(d.Node, participants, int64(participants)*perClient, now)
	}
	return d
}
