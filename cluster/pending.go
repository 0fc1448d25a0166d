package cluster

import (
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Pending is a placing node's optimistic accounting: the clients it sent to other nodes that
// those nodes' loads, as last heard, do not show yet. Every node places from peers' loads a
// heartbeat (and, with regional aggregation, a digest) old, so without it a join storm goes,
// from every node, to the same least loaded (or room-carrying) node until its load as heard
// shows it full: a region fills one node per heartbeat while others stay empty. With it, each
// placement adds to its target's load at once, on the node that made it, until a heartbeat
// that includes it is heard.
//
// Which heartbeat includes a placement is told by when it was taken, not by when it reached
// this node: Membership records a digest's entry as heard at now - age (the heartbeat's
// arrival at its aggregator, plus the digest's own transit), so a load heard at h was taken
// before h, whatever the digest's delay. A placement made at t is in every load taken after
// its client got to the target: after t + the client's way there (the redirect's answer, a
// connect and a join). An entry therefore ends when its target's load heard at bound or more
// after t arrives (bound: the client's way plus the heartbeat's and the digest's transit), and
// not before, however long the digest took; or ttl after t (the target went silent). A
// time-windowed end (the first new load heard an interval and a half after the placement)
// let a digest's heartbeat taken before the client arrived end the entry, or kept an entry a
// heartbeat already showed: with aggregated heartbeats cascade sim's town hall had 14,570
// placements refused and retried. Not safe for concurrent use: Placer guards it.
type Pending struct {
	ttl, bound, interval time.Duration
	byNode               map[string][]pendingEntry
	storm                joinStorm // whether a join storm is on, and the random choices it takes
}

// pendingEntry is one placement on a node: when it was made and what it adds to the node's
// load.
type pendingEntry struct {
	at           time.Time
	participants int
	consumers    int64
}

// Pending's times, in heartbeat intervals for a heartbeat interval h: a load heard 3h/4
// after a placement was taken after its client arrived (a client takes well under that to
// follow a redirect, and a heartbeat and a digest cross a region in a fraction of it: 750 ms
// at the default 1 s, 150 ms in internal/reallab's 200 ms cluster); a silent target's entries
// end 3h after that (the membership's default timeout).
const (
	pendingBoundQuarters = 3
	pendingTTLIntervals  = 3
)

// NewPending returns the accounting of a placer whose peers beat every heartbeat: an entry
// ends when its target's load heard 3/4 of an interval or more after the placement arrives,
// or three intervals after that.
func NewPending(heartbeat time.Duration) *Pending {
	bound := heartbeat * pendingBoundQuarters / 4
	return &Pending{ttl: bound + pendingTTLIntervals*heartbeat, bound: bound, interval: heartbeat, byNode: map[string][]pendingEntry{}}
}

// Add counts participants (with consumers among them) placed at now on node id.
func (p *Pending) Add(id string, participants int, consumers int64, now time.Time) {
	p.byNode[id] = append(p.byNode[id], pendingEntry{at: now, participants: participants, consumers: consumers})
}

// Apply returns peers with the pending placements added to their loads (peers itself when
// none is pending: the caller's slice is never written), and ends the entries their targets'
// loads now include. heard[i] is when peers[i]'s load was heard (Membership.PeersHeard); a
// peer without one (heard shorter, or a zero time) keeps its entries until the ttl.
func (p *Pending) Apply(peers []node.Stats, heard []time.Time, now time.Time) []node.Stats {
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
		var h time.Time
		if i < len(heard) {
			h = heard[i]
		}
		kept := es[:0]
		var addP int
		var addC int64
		for _, e := range es {
			if now.Sub(e.at) >= p.ttl || (!h.IsZero() && h.Sub(e.at) >= p.bound) {
				continue // the target went silent, or its load as heard includes the client
			}
			kept = append(kept, e)
			addP += e.participants
			addC += e.consumers
		}
		id := peers[i].ID
		if len(kept) == 0 {
			delete(p.byNode, id)
			continue
		}
		p.byNode[id] = kept
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
// this node sent them and their loads (heard when in.Heard says) do not show yet, and a
// redirect of participants clients (each with perClient consumers) is added to pend. Placer
// and cascade sim both decide through it.
//
// A lone join is Place's decision on those loads, and its redirect counts once: the count
// stays exact (internal/reallab compares real placements with Place's on exact loads). During
// a storm (this node placed another client within the time a load takes to show a placement:
// the bound and two intervals, a heartbeat's and a digest's), every node of the region places
// that region's clients (a load balancer spreads them over all) from the same loads, so this
// node compares itself with two random nodes of the region (see stormChoices) instead of all,
// and a redirect counts once for every node of the region: each placer chooses as this one
// does, so in expectation each sends the target as many clients as this one does. Counting
// only its own would let the region's nodes together pile a digest's worth of the storm onto
// a node; the random choice keeps them from all sending theirs at once (counting the region's
// share without it still had each node's first redirect after a digest go to one node: 1,710
// joins in a second in cascade sim's town hall). Overcounting only spreads clients further,
// and lasts until the target's load shows the placement.
func PlaceCounted(in PlacementInput, pend *Pending, now time.Time, participants int, perClient int64) Decision {
	if pend == nil {
		return Place(in)
	}
	in.Peers = pend.Apply(in.Peers, in.Heard, now)
	n := participants
	if pend.storm.on(now, pend.bound+2*pend.interval) { // see Pending's doc
		var placers int
		in, placers = pend.storm.sample(in, in.Self.ID)
		n *= max(1, placers)
	}
	d := Place(in)
	if d.Redirect {
		pend.Add(d.Node, n, int64(n)*perClient, now)
	}
	return d
}
