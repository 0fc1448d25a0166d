package sim

import (
	"sort"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// Message types, as the cluster names them on the wire.
const (
	msgHeartbeat = "heartbeat"
	msgDigest    = "digest"
	msgJoined    = "participantJoined"
	msgLeft      = "participantLeft"
	msgProducer  = "producerAdded"
	msgPiped     = "piped"
	msgPipe      = "pipe"
	msgPipeReply = "pipeReply"
	msgSync      = "sync"
	msgSyncReply = "syncReply"
)

// inc is every simulated node's incarnation (no node restarts under its id here).
const inc = "sim"

// beat sends the heartbeats of the nodes of slot: one message each on its region's heartbeat
// subject, which only the region's aggregators listen to (cluster.Aggregator: primary and
// backup, the region's two lowest ids), and the relay keepalives on their links. Deliveries
// are grouped by region.
func (s *Sim) beat(slot int) {
	senders := make([][]*simNode, len(s.regions))
	for _, n := range s.nodes {
		if n.alive && n.slot == slot {
			senders[n.region] = append(senders[n.region], n)
		}
	}
	now := s.now()
	for src, ns := range senders {
		if len(ns) == 0 {
			continue
		}
		stats := make([]node.Stats, len(ns))
		for i, n := range ns {
			stats[i] = n.load()
			s.m.sent(n, msgHeartbeat, 1)
			s.keepalives(n, now)
		}
		s.q.after(s.delay[src][src], func() { s.deliverBeats(ns, stats, src) })
	}
}

// deliverBeats hands heartbeats to the live nodes of region that listen to them (its
// aggregators, as their last Tick said).
func (s *Sim) deliverBeats(from []*simNode, stats []node.Stats, region int) {
	now := s.now()
	for _, n := range s.inReg[region] {
		if !n.alive || !n.listening {
			continue
		}
		s.m.received(n, msgHeartbeat, len(from))
		for i := range from {
			n.agg.Heard(inc, stats[i], s.cert, now)
		}
	}
}

// aggregate ticks n's aggregator (the real cluster.Aggregator) at now: whether it listens to
// its region's heartbeats, and the digests it publishes to every node.
func (s *Sim) aggregate(n *simNode, now time.Time) {
	plan := n.agg.Tick(now, n.mem, false)
	n.listening = plan.Listen
	for _, d := range plan.Publish {
		s.m.sent(n, msgDigest, 1)
		for dst := range s.regions {
			if !s.reach(n.region, dst) {
				continue
			}
			if dst != n.region {
				s.m.gateway(msgDigest, 1)
			}
			s.q.after(s.delay[n.region][dst], func() { s.deliverDigest(n, d, dst) })
		}
	}
}

// deliverDigest hands a region's digest to the live nodes of region dst: each feeds it to its
// membership (cluster.ApplyDigest, as the cluster does), its own entry included.
func (s *Sim) deliverDigest(from *simNode, d cluster.Digest, dst int) {
	now := s.now()
	for _, n := range s.inReg[dst] {
		if !n.alive || !s.reach(from.region, n.region) {
			continue
		}
		s.m.received(n, msgDigest, 1)
		n.heardAt = s.q.now
		a, err := cluster.ApplyDigest(n.mem, from.id, d, now, nil)
		if err != nil {
			continue
		}
		if n.region == from.region {
			n.agg.Digested(from.id, now)
		}
		for _, ch := range a.Changes {
			switch ch.Change {
			case cluster.Joined, cluster.Returned:
				if s.q.now > 2*s.sc.Timeout { // not the cluster forming: back after a partition
					s.rejoined(n, s.byID[ch.ID])
				}
			}
		}
	}
}

// load is the node's heartbeat: who it is and its load now.
func (n *simNode) load() node.Stats {
	st := n.stats
	st.Rooms, st.Participants, st.Consumers = len(n.rooms), n.viewers, n.consumers
	for _, kids := range n.out { // a relay child is a consumer on its parent (relay.Pipes serves it with one)
		st.Consumers += int64(len(kids))
	}
	return st
}

// keepalives: a node's relay links hear it (its parents and children in every tree).
func (s *Sim) keepalives(n *simNode, at time.Time) {
	hear := func(peer *simNode) {
		if peer.alive && s.reach(n.region, peer.region) {
			peer.mem.Relayed(n.id, at)
		}
	}
	for _, parent := range n.in {
		hear(parent)
	}
	for _, kids := range n.out {
		for _, c := range kids {
			hear(c)
		}
	}
}

// nodeGone is what node n does when its membership drops peer (cluster.nodeGone's relay
// part, relay.Pipes.NodeGone): its tree view forgets the peer and the peer's children, pipes
// from and to the peer end, producers it got from the peer are asked for again (unless the
// peer was their origin).
func (s *Sim) nodeGone(n, peer *simNode) {
	s.m.detected(n, peer)
	n.trees.RemoveNode(peer.id)
	for _, p := range sortedProducers(n.in) {
		if parent := n.in[p]; parent == peer || p.origin == peer {
			delete(n.in, p)
			delete(p.edges, n)
			if p.origin != peer {
				s.demand(n, p)
			}
		}
	}
	for p, kids := range n.out {
		for i, c := range kids {
			if c == peer {
				n.out[p] = append(kids[:i:i], kids[i+1:]...)
				break
			}
		}
	}
}

// rejoined: peer f is back in n's table after n had dropped it (a partition healed). The
// room re-sync brings its producers back: n asks again for those its viewers want.
func (s *Sim) rejoined(n, f *simNode) {
	for _, r := range sortedRooms(n.rooms) {
		if n.rooms[r].viewers == 0 {
			continue
		}
		s.q.after(2*s.delay[n.region][f.region], func() {
			if !n.alive {
				return
			}
			for _, p := range r.producers { // the sync answers carry the trees' edges
				for child, parent := range p.edges {
					n.trees.Piped(r.name, p.id, child.id, parent.id)
				}
				if n.in[p] == nil {
					s.demand(n, p)
				}
			}
		})
	}
}

// sortedProducers lists a node's piped producers by id (map order would make runs differ).
func sortedProducers(m map[*producer]*simNode) []*producer {
	out := make([]*producer, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// sortedRooms lists a node's rooms in creation order.
func sortedRooms(m map[*room]*nodeRoom) []*room {
	out := make([]*room, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].idx < out[j].idx })
	return out
}

// peersFor is the membership's peers (and when each one's load was heard) as a placement on
// n reads them: read again once a
// heartbeat arrived since the last read.
func (n *simNode) peersFor(now time.Duration) ([]node.Stats, []time.Time) {
	if n.peers == nil || n.heardAt > n.peersAt {
		n.peers, n.heard = n.mem.PeersHeard()
		n.peersAt = now
	}
	return n.peers, n.heard
}
