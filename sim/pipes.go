package sim

import (
	"time"

	"github.com/cascade-sfu/cascade/relay"
)

// pipeManager is a node's relay pipe manager (relay.Pipes.manage): it serves the node's demand
// for remote producers with up to relay.MaxSetups set-ups under way at once, each asking the
// candidate parents relay.Parents ranks, in turn; a producer no candidate took is tried again
// after relay.RetryInterval. One producer has at most one set-up under way: demand for it that
// comes meanwhile is served when that one ends.
type pipeManager struct {
	queue     []*producer
	queued    map[*producer]bool
	inflight  map[*producer]bool
	again     map[*producer]bool          // demanded while its set-up was under way
	scheduled bool                        // a serveNext is queued
	since     map[*producer]time.Duration // when the node first wanted the producer, until piped
	hubSince  map[*producer]time.Duration // when its wait for its region's hub began (relay.HubWaits)
}

// demand queues producer p at node n (node.Demand): the manager pipes it here while n has
// viewers of it.
func (s *Sim) demand(n *simNode, p *producer) {
	if n.pm.queued == nil {
		n.pm.queued, n.pm.inflight, n.pm.again = map[*producer]bool{}, map[*producer]bool{}, map[*producer]bool{}
	}
	if n.pm.since == nil {
		n.pm.since = map[*producer]time.Duration{}
	}
	if _, ok := n.pm.since[p]; !ok && n.in[p] == nil {
		n.pm.since[p] = s.q.now
	}
	if n.pm.inflight[p] {
		n.pm.again[p] = true
		return
	}
	if n.pm.queued[p] {
		return
	}
	n.pm.queued[p] = true
	n.pm.queue = append(n.pm.queue, p)
	s.m.maxQueue = max(s.m.maxQueue, len(n.pm.queue)+len(n.pm.inflight))
	s.wakeManager(n)
}

// wakeManager queues a serveNext of n's manager, unless one is queued or no set-up can start.
func (s *Sim) wakeManager(n *simNode) {
	if n.pm.scheduled || len(n.pm.inflight) >= relay.MaxSetups {
		return
	}
	n.pm.scheduled = true
	s.q.after(0, func() {
		n.pm.scheduled = false
		s.serveNext(n)
	})
}

// wants tells whether n needs p piped here: it has viewers of p's room, knows the room (its
// sync answered) and is not p's origin.
func (n *simNode) wants(p *producer) bool {
	nr := n.rooms[p.room]
	return n.alive && nr != nil && nr.viewers > 0 && nr.synced && p.origin != n
}

// serveNext serves n's queued demand while fewer than relay.MaxSetups set-ups are under way.
func (s *Sim) serveNext(n *simNode) {
	for len(n.pm.queue) > 0 && len(n.pm.inflight) < relay.MaxSetups && n.alive {
		p := n.pm.queue[0]
		n.pm.queue = n.pm.queue[1:]
		delete(n.pm.queued, p)
		if n.pm.inflight[p] {
			n.pm.again[p] = true
			continue
		}
		if !n.wants(p) || n.in[p] != nil {
			if !n.wants(p) {
				delete(n.pm.since, p)
				delete(n.pm.hubSince, p) // as the real manager forgets its hub wait
			}
			continue
		}
		cands := relay.Parents(n.trees.Tree(p.id), p.origin.id, n.id, s.regions[n.region], s.sc.Fanout, n.mem.Regions(), n.mem.Draining()...)
		s.m.parentsRanked++
		if n.pm.hubSince == nil {
			n.pm.hubSince = map[*producer]time.Duration{}
		}
		live := n.mem.Regions()
		if !relay.HubWaits(s.regions[n.region], cands, live) {
			delete(n.pm.hubSince, p) // the wait starts at the first try with only other regions' carriers
		} else if _, ok := n.pm.hubSince[p]; !ok {
			n.pm.hubSince[p] = s.q.now
		}
		if wait := relay.HubDelay(n.trees.Tree(p.id), p.id, n.id, s.regions[n.region], cands, live, s.roomPeers(n, p.room), s.q.now-n.pm.hubSince[p]); wait > 0 {
			// Not the region's hub: look again when the tree view may have changed (the real
			// manager's retry tick) or the wait ends, whichever comes first.
			s.m.hubWaits++
			s.q.after(min(wait, relay.RetryInterval), func() { s.demand(n, p) })
			continue
		}
		n.pm.inflight[p] = true
		s.ask(n, p, cands, map[string]bool{}, !relay.HubWaits(s.regions[n.region], cands, live), false)
	}
}

// setupDone ends p's set-up at n (piped or not): demand for p that came meanwhile is served,
// and the freed place takes the next queued producer.
func (s *Sim) setupDone(n *simNode, p *producer) {
	delete(n.pm.inflight, p)
	if n.pm.again[p] {
		delete(n.pm.again, p)
		s.demand(n, p)
	}
	s.wakeManager(n)
}

// roomPeers lists the nodes of n's region that n knows have participants in room r (what
// cluster.RoomState tells a real node): those the room opened on at least the in-region delay
// ago, when their first participant's joined announcement reached n.
func (s *Sim) roomPeers(n *simNode, r *room) []string {
	var out []string
	for _, o := range r.open[n.region] {
		if nr := o.rooms[r]; o != n && o.alive && nr != nil && s.q.now-nr.opened >= s.sc.IntraRegionDelay {
			out = append(out, o.id)
		}
	}
	return out
}

// ask asks the first of cands not tried yet to relay p to n (a pipe request over NATS,
// request/reply); on refusal the next, ranked again from n's tree view then (relay.Pipes.pipeIn:
// what it heard while asking, such as its region hub's piped announcement, counts); when none
// is left, p is tried again after the retry interval.
//
// local tells whether the walk began with a carrier of n's region, stale whether a candidate
// answered that it does not carry p (it leaves n's tree view): such a walk ends before it would
// cross the region boundary, and p is tried again after the retry interval, when n waits for
// its region's hub (relay.Pipes.pipeFromAny).
func (s *Sim) ask(n *simNode, p *producer, cands []string, tried map[string]bool, local, stale bool) {
	if !n.alive {
		delete(n.pm.inflight, p)
		return
	}
	i := 0
	for i < len(cands) && tried[cands[i]] {
		i++
	}
	if i < len(cands) && local && stale && s.byID[cands[i]].region != n.region {
		s.q.after(relay.RetryInterval, func() { s.demand(n, p) })
		s.setupDone(n, p)
		return
	}
	if i == len(cands) {
		s.m.pipeRetries++
		s.q.after(relay.RetryInterval, func() { s.demand(n, p) })
		s.setupDone(n, p)
		return
	}
	parent := s.byID[cands[i]]
	tried[parent.id] = true
	next := func() {
		s.m.parentsRanked++
		s.ask(n, p, relay.Parents(n.trees.Tree(p.id), p.origin.id, n.id, s.regions[n.region], s.sc.Fanout, n.mem.Regions(), n.mem.Draining()...), tried, local, stale)
	}
	s.m.sent(n, msgPipe, 1)
	s.m.pipeAsks++
	if !parent.alive || !s.reach(n.region, parent.region) {
		s.q.after(relay.RequestTimeout, next)
		return
	}
	d := s.delay[n.region][parent.region]
	if n.region != parent.region {
		s.m.gateway(msgPipe, 1)
		s.m.gateway(msgPipeReply, 1)
	}
	s.q.after(d, func() {
		s.m.received(parent, msgPipe, 1)
		ok, carried := s.servePipe(parent, n, p)
		s.m.sent(parent, msgPipeReply, 1)
		s.q.after(d, func() {
			if !n.alive {
				delete(n.pm.inflight, p)
				return
			}
			s.m.received(n, msgPipeReply, 1)
			if !ok {
				s.m.pipeRefused++
				if !carried { // a stale edge of n's tree view: it goes
					n.trees.Piped(p.room.name, p.id, parent.id, "")
					stale = true
				}
				next()
				return
			}
			if parent.alive && n.wants(p) && n.in[p] == nil {
				s.attach(n, p, parent)
			}
			s.setupDone(n, p)
		})
	})
}

// servePipe is the parent's side (relay.Pipes.ServePipe): it relays p to child if it carries p
// (its origin, or p is piped to it) and relay.Accept takes the child. Children it has not yet
// seen leave still count. carried tells a refusal for fan-out from one for not carrying p.
func (s *Sim) servePipe(parent, child *simNode, p *producer) (ok, carried bool) {
	if !parent.alive || (p.origin != parent && parent.in[p] == nil) {
		return false, false
	}
	kids := parent.out[p]
	for i, c := range kids {
		if c == child { // asked again: the new pipe replaces the old
			kids = append(kids[:i:i], kids[i+1:]...)
			break
		}
	}
	parent.out[p] = kids
	regions := make([]string, len(kids))
	for i, c := range kids {
		regions[i] = s.regions[c.region]
	}
	if relay.Accept(s.sc.Fanout, s.regions[parent.region], s.regions[child.region], regions) != nil {
		return false, true
	}
	parent.out[p] = append(kids, child)
	return true, true
}

// attach: p is piped to n from parent. n's tree view has the edge at once; the room's nodes
// learn it from n's piped announcement.
func (s *Sim) attach(n *simNode, p *producer, parent *simNode) {
	n.in[p] = parent
	p.edges[n] = parent
	if t, ok := n.pm.since[p]; ok {
		s.m.setup = append(s.m.setup, ms(s.q.now-t))
		delete(n.pm.since, p)
	}
	delete(n.pm.hubSince, p)
	n.trees.Piped(p.room.name, p.id, n.id, parent.id)
	s.m.attached(n, p)
	s.roomBroadcast(p.room, n, msgPiped, 1, func(to *simNode) { to.trees.Piped(p.room.name, p.id, n.id, parent.id) })
}

// roomBroadcast sends count messages of type typ from n on p's room subject: every node the
// room is open on gets them after the delay between their regions, and runs apply (if any)
// for each.
func (s *Sim) roomBroadcast(r *room, from *simNode, typ string, count int, apply func(to *simNode)) {
	s.m.sent(from, typ, count)
	for dst, ns := range r.open {
		if len(ns) == 0 || !s.reach(from.region, dst) {
			continue
		}
		if dst != from.region {
			s.m.gateway(typ, count)
		}
		targets := ns
		if apply != nil {
			targets = append([]*simNode(nil), ns...)
		}
		for _, to := range targets {
			if to.alive {
				s.m.received(to, typ, count)
			}
		}
		if apply == nil {
			continue
		}
		s.q.after(s.delay[from.region][dst], func() {
			for _, to := range targets {
				if to.alive && to != from {
					apply(to)
				}
			}
		})
	}
}
