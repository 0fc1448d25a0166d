package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// schedulePublishers: each room's publishers join at their group's publish time, placed like
// any client in their region; the node they land on is their producers' origin.
func (s *Sim) schedulePublishers() {
	for _, r := range s.rooms {
		for j := range r.group.Publishers {
			region := s.regionIndex(r.group.PublisherRegions[j%len(r.group.PublisherRegions)])
			s.q.at(r.group.PublishAt, func() { s.publish(r, j, region) })
		}
	}
}

// publish places a publisher and adds its producers to the room.
func (s *Sim) publish(r *room, j, region int) {
	n := s.place(r, region, 1, 0)
	if n == nil || n.viewers >= n.cap {
		s.m.publishersRefused++
		return
	}
	s.join(n, r, 1, false)
	for k := range r.group.Producers {
		p := &producer{id: fmt.Sprintf("%s/p%d/%d", r.name, j, k), room: r, origin: n, edges: map[*simNode]*simNode{}}
		r.producers = append(r.producers, p)
		s.m.producers = append(s.m.producers, p)
		s.roomBroadcast(r, n, msgProducer, 1, func(to *simNode) {
			if nr := to.rooms[r]; nr != nil && nr.synced && nr.viewers > 0 {
				s.demand(to, p)
			}
		})
	}
}

// scheduleArrivals schedules every viewer stream: groups of ViewersPerDecision viewers, evenly
// spaced, each group to the next room of its room group.
func (s *Sim) scheduleArrivals() {
	first := 0
	for gi := range s.sc.Rooms {
		g := &s.sc.Rooms[gi]
		rooms := s.rooms[first : first+g.Count]
		first += g.Count
		next := 0
		for _, a := range g.Arrivals {
			region := s.regionIndex(a.Region)
			total := int(math.Round(a.PerSec * (a.End - a.Start).Seconds()))
			step := s.sc.ViewersPerDecision
			groups := (total + step - 1) / step
			for i := range groups {
				c := min(step, total-i*step)
				at := a.Start + time.Duration(float64(a.End-a.Start)*float64(i)/float64(groups))
				r := rooms[next%len(rooms)]
				next++
				s.q.at(at, func() { s.arrive(r, region, c, *s.sc.JoinRetries) })
			}
		}
	}
}

// arrive: c viewers of region arrive for room r at a node of their region (the load
// balancer's next live one), which places them with the real placement function.
func (s *Sim) arrive(r *room, region, c, retries int) {
	n := s.place(r, region, c, int64(r.group.Producers*r.group.Publishers))
	if n == nil || !n.alive || n.viewers+c > n.cap {
		s.m.refusal(c)
		if retries > 0 {
			s.q.after(time.Second, func() { s.arrive(r, region, c, retries-1) })
		} else {
			s.m.refused += c
		}
		return
	}
	s.join(n, r, c, true)
}

// place runs the entry node's placement decision for count clients of room r in region, each
// with perClient consumers: the node they land on (nil when the region has no live node). The
// decision is the Placer's (cluster.PlaceCounted): the entry node counts its recent redirects
// against their targets' loads until their heartbeats show them.
func (s *Sim) place(r *room, region, count int, perClient int64) *simNode {
	nodes := s.inReg[region]
	var entry *simNode
	for range nodes {
		n := nodes[s.lbNext[region]%len(nodes)]
		s.lbNext[region]++
		if n.alive {
			entry = n
			break
		}
	}
	if entry == nil {
		return nil
	}
	// The entry node knows the room's nodes only while the room is open on it (cluster.Placer:
	// its room's participants on other nodes); elsewhere it ranks by region and load alone.
	// internal/reallab's TestSimMatchesReality checks this against real nodes.
	carrying := map[string]bool{}
	if entry.rooms[r] != nil {
		carrying = r.carrying
	}
	in := cluster.PlacementInput{Self: entry.load(), Carrying: carrying, Region: s.regions[region], Full: s.full, Spread: s.sc.PlacementSpread}
	in.Peers, in.Heard = entry.peersFor(s.q.now)
	t0 := threadCPU()
	d := cluster.PlaceCounted(in, entry.pending, s.now(), count, perClient)
	s.m.placed(time.Duration(threadCPU()-t0), len(in.Peers)+1)
	target := entry
	if d.Redirect {
		target = s.byID[d.Node]
	}
	if len(s.m.decisions) <= MaxListed && target != nil {
		s.m.decisions = append(s.m.decisions, Placement{T: s.q.now.Seconds(), Room: r.name, Region: s.regions[region],
			Entry: entry.id, Node: target.id, Count: count})
	}
	return target
}

// join: c participants of room r (viewers, or a publisher) join n. The room opens on n at its
// first participant: n subscribes to it and syncs it (every node of the room answers), and
// from the answers it knows the producers and their trees, and asks for the producers.
func (s *Sim) join(n *simNode, r *room, c int, viewers bool) {
	n.viewers += c
	if viewers {
		s.m.joins(n, c)
	}
	nr := n.rooms[r]
	if nr == nil {
		nr = &nodeRoom{opened: s.q.now}
		n.rooms[r] = nr
		s.openRoom(n, r, nr)
	}
	if viewers {
		nr.viewers += c
		r.viewers += c
		n.consumers += int64(c * r.group.Producers * r.group.Publishers)
	}
	s.roomBroadcast(r, n, msgJoined, c, nil)
	if viewers && nr.synced && nr.viewers == c {
		for _, p := range r.producers {
			s.demand(n, p)
		}
	}
}

// openRoom: room r opens on n: n syncs it (one request on the room's subject, one answer from
// every node of the room) and, once the farthest answered, knows the room's producers and
// their trees.
func (s *Sim) openRoom(n *simNode, r *room, nr *nodeRoom) {
	r.carrying[n.id] = true
	r.open[n.region] = append(r.open[n.region], n)
	answering := 0
	farthest := s.sc.IntraRegionDelay
	for dst, ns := range r.open {
		live := 0
		for _, o := range ns {
			if o.alive && o != n {
				live++
			}
		}
		if live == 0 || !s.reach(n.region, dst) {
			continue
		}
		answering += live
		farthest = max(farthest, s.delay[n.region][dst])
		if dst != n.region {
			s.m.gateway(msgSync, 1)
			s.m.gateway(msgSyncReply, live)
		}
		for _, o := range ns {
			if o.alive && o != n {
				s.m.received(o, msgSync, 1)
				s.m.sent(o, msgSyncReply, 1)
			}
		}
	}
	s.m.sent(n, msgSync, 1)
	s.m.received(n, msgSyncReply, answering)
	s.q.after(2*farthest, func() {
		if !n.alive {
			return
		}
		nr.synced = true
		for _, p := range r.producers {
			for child, parent := range p.edges {
				n.trees.Piped(r.name, p.id, child.id, parent.id)
			}
			if nr.viewers > 0 {
				s.demand(n, p)
			}
		}
	})
}

// leaveAll: n died; its viewers are gone from their rooms (they come back through placement
// after ReconnectAfter).
func (s *Sim) leaveAll(n *simNode) {
	for _, r := range sortedRooms(n.rooms) {
		nr := n.rooms[r]
		delete(r.carrying, n.id)
		for i, o := range r.open[n.region] {
			if o == n {
				r.open[n.region] = append(r.open[n.region][:i:i], r.open[n.region][i+1:]...)
				break
			}
		}
		r.viewers -= nr.viewers
		if nr.viewers > 0 {
			c, region := nr.viewers, n.region
			s.m.reconnecting += c
			s.q.after(s.sc.ReconnectAfter, func() {
				s.m.reconnecting -= c
				for c > 0 {
					k := min(c, s.sc.ViewersPerDecision)
					c -= k
					s.arrive(r, region, k, *s.sc.JoinRetries)
				}
			})
		}
	}
	n.viewers, n.consumers = 0, 0
	n.rooms = map[*room]*nodeRoom{}
}

// full is the placement's capacity test: a node whose participants, as its last heartbeat
// (or, for the deciding node, its own count) says, reach its capacity.
func (s *Sim) full(st node.Stats) bool {
	n := s.byID[st.ID]
	return n != nil && st.Participants+s.sc.ViewersPerDecision > n.cap
}
