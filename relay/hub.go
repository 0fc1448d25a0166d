package relay

import (
	"errors"
	"hash/fnv"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// HubWait is how long the region's second node for a producer (by Hub's weight) waits for the
// hub to carry it into the region (its piped announcement) before it crosses the region boundary
// itself: the hub may have left, never subscribe, or be walking a list of carriers that refuse
// it (a stale tree view in a storm). The third waits twice as long, and so on up to
// HubWaitSteps times: the fallbacks are staggered, so that a slow hub lets one more node cross,
// not the whole region at once (which, all asking the same carriers in the same order, herd and
// cross one by one). 1.5 s is a few inter-region pipe set-ups (each a request and a reply across
// the boundary, 2 x 150 ms one way at worst here) plus the announcement; the cost is that a
// region whose hub is gone is fed up to 1.5 s late.
const HubWait = 1500 * time.Millisecond

// HubWaitSteps bounds the staggered fallbacks (HubWait): no node waits longer than
// HubWaitSteps x HubWait.
const HubWaitSteps = 3

// Hub picks the node of a region that carries producer across the region boundary when it is
// not yet carried there: the candidate of highest rendezvous weight (a hash of producer and
// node id). Every node of the region that knows the same candidates picks the same hub, with no
// message; a candidate joining or leaving moves only the producers it wins or won. "" for none.
func Hub(producer string, candidates []string) string {
	best, bestW := "", uint64(0)
	for _, c := range candidates {
		if w := weight(producer, c); best == "" || w > bestW || (w == bestW && c < best) {
			best, bestW = c, w
		}
	}
	return best
}

func weight(producer, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(producer))
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's last bytes mix weakly into the high bits: finish with a 64-bit mixer (splitmix64).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// HubJoinWait is how long a node that is its region's hub among the room's nodes it knows of,
// but not among all its region's live nodes, waits before it crosses the region boundary: a
// node of more weight may be joining the room in the same storm without this node having heard
// of it yet, and would then cross too. A real node asks for a producer as its viewer's join
// begins and announces the join when it ends (ICE and DTLS done: 250 to 300 ms later on the
// reality lab's loaded machine), and viewers that arrive 50 ms apart begin their joins up to
// 350 ms apart there (internal/reallab TestStormReality's debug logs), so the wait covers
// that and the hub's own crossing: three of the manager's retry ticks (750 ms to 1 s, as the
// ticks fall). A region-mate whose viewer comes later finds this node or the hub carrying the
// producer and pipes from it. The cost: a room's first crossing into a region comes that much
// later, unless this node outweighs every live node of its region for the producer (most
// rooms of a conference: conference-10k in the simulator, demand to media p50 80 -> about
// 830 ms).
const HubJoinWait = 3 * RetryInterval

// HubDelay tells how much longer self, of region selfRegion, should wait before it pipes
// producer (of tree t) from cands (Parents' order, so its carriers) when none of them is in its
// region: zero (pipe now) if one is. Else self is ranked by Hub's weight among roomNodes (the
// nodes known to have participants in the producer's room, with self added) that live says are
// in selfRegion and t does not have (a node with a parent in the tree asks for no pipe: a
// subtree cut off from the origin waits for its root, not for a hub that will never cross).
// Ranked r-th (the hub 0th), self waits until it has waited r x HubWait (at most HubWaitSteps x
// HubWait), and the caller looks again when its tree view changes (the hub's piped
// announcement) or then. The hub itself (r = 0) crosses at once if no live node of its region
// outweighs it; else it waits HubJoinWait, in which a region-mate of more weight that joined the
// room in the same storm is heard of (and self becomes its follower) or is not there. A quiet
// room (self alone in its region) crosses at once. Like Parents, a pure function, so that the
// nodes and a simulator decide alike.
func HubDelay(t Tree, producer, self, selfRegion string, cands []string, live map[string]string, roomNodes []string, waited time.Duration) time.Duration {
	if !HubWaits(selfRegion, cands, live) {
		return 0
	}
	mine := weight(producer, self)
	outweighs := func(n string) bool {
		w := weight(producer, n)
		return w > mine || (w == mine && n < self)
	}
	rank := 0
	for _, n := range roomNodes {
		if _, carries := t[n]; n == self || carries || live[n] != selfRegion {
			continue
		}
		if outweighs(n) {
			rank++
		}
	}
	wait := time.Duration(min(rank, HubWaitSteps)) * HubWait
	if rank == 0 {
		for n, r := range live {
			if _, carries := t[n]; r == selfRegion && n != self && !carries && outweighs(n) {
				wait = HubJoinWait
				break
			}
		}
	}
	if left := wait - waited; left > 0 {
		return left
	}
	return 0
}

// HubWaits tells whether a node of selfRegion with these candidate parents has a region hub to
// wait for at all: some candidate, and none of its region. Its wait (HubDelay's waited) is
// timed from the first try at which that holds, and starts again after a try at which it does
// not: a region cut off from the others, whose nodes' views of the tree lose the other regions'
// carriers, or keep only in-region ones that no longer carry, starts its wait at the heal, so
// that its nodes wait for its hub then instead of all crossing at once on waits that ran out
// during the cut.
func HubWaits(selfRegion string, cands []string, live map[string]string) bool {
	for _, c := range cands {
		if live[c] == selfRegion {
			return false
		}
	}
	return len(cands) > 0
}

// errHubWait: the producer waits for its region's hub to carry it here (HubDelay); the manager
// looks again on its next retry tick, RetryInterval, by when the hub's piped announcement has
// often arrived.
var errHubWait = errors.New("relay: waiting for the region's hub")

// waitForHub tells whether p should wait for its region's hub rather than be piped from cands
// now (HubDelay, timed from this node's first try with only other regions' carriers (HubWaits)
// until the producer is piped here, no longer wanted, or a try has a carrier of this region or
// none; the manager's goroutine only).
func (ps *Pipes) waitForHub(p *node.Producer, cands []string) bool {
	if ps.hubSince == nil {
		ps.hubSince = map[string]time.Time{}
	}
	live := ps.peers.Regions()
	if !HubWaits(ps.o.Region, cands, live) {
		delete(ps.hubSince, p.ID()) // the wait starts at the first try with only other regions' carriers
		return false
	}
	now := time.Now()
	since, ok := ps.hubSince[p.ID()]
	if !ok {
		since = now
	}
	var room []string
	if rn, ok := ps.sig.(RoomNodes); ok {
		room = rn.RoomNodes(p.Room().Name())
	}
	ps.hubSince[p.ID()] = since
	d := HubDelay(ps.trees.Tree(p.ID()), p.ID(), ps.o.Self, ps.o.Region, cands, live, room, now.Sub(since))
	if !ok {
		ps.log.Debug("asking for a producer", "producer", p.ID(), "candidates", cands, "room_nodes", room, "hub_wait", d)
	}
	return d > 0
}
