// Package sim is Cascade's cluster simulator (`cascade sim`): it drives the real membership
// (cluster.Membership), placement (cluster.Place) and relay-tree (relay.Parents, relay.Trees)
// state machines over simulated nodes, regions, viewers and virtual time, on one goroutine with
// one event queue, and reports what a deployment would see: viewers served and refused, load
// per node, origin egress, region crossings, tree depth, server-path latency, control traffic
// per node, placement decision time and repair time after injected failures.
//
// What is simulated rather than run: the network (one-way delays per region pair), the media
// (a node gets a producer when an unbroken chain of live pipes reaches its origin), NATS (a
// message reaches every subscriber after the delay between their regions; counted, not sent),
// and the clients (a viewer arrives at a node of its region chosen round robin, as a load
// balancer would, and goes where the node's placement decision sends it).
package sim

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// checksPerBeat mirrors the cluster's: a node looks for silent peers ten times an interval.
const checksPerBeat = 10

// base is virtual time zero as the state machines see it.
var base = time.Unix(1_800_000_000, 0)

// Sim is one run of a scenario.
type Sim struct {
	sc      *Scenario
	q       queue
	rng     *rand.Rand
	regions []string
	delay   [][]time.Duration // by region index
	nodes   []*simNode
	byID    map[string]*simNode
	inReg   [][]*simNode // by region index
	lbNext  []int        // round-robin position of each region's load balancer
	rooms   []*room
	cut     []bool // regions partitioned off the others
	// alertUntil: until then every node ticks every slot (a failure is being noticed).
	alertUntil time.Duration
	m          *metrics
	sizes      map[string]int
	cert       *cluster.Cert // a node's cert, in every digest entry (its size counts)
}

// simNode is one simulated node: the real membership table and relay-tree view, and the few
// facts the simulator keeps about it (its viewers, its pipes).
type simNode struct {
	idx    int
	id     string
	region int
	cap    int
	slot   int // the tenth of the interval it beats in
	alive  bool
	stats  node.Stats // id, region and URLs; the load is filled at each beat

	mem       *cluster.Membership
	agg       *cluster.Aggregator // its part in its region's heartbeat aggregation
	listening bool                // to its region's heartbeats: an aggregator
	trees     *relay.Trees
	pending   *cluster.Pending // the placer's redirects not yet in their targets' heartbeats

	viewers   int
	consumers int64
	rooms     map[*room]*nodeRoom
	in        map[*producer]*simNode   // pipes in: producer -> parent
	out       map[*producer][]*simNode // pipes out: producer -> children
	pm        pipeManager
	peers     []node.Stats // the membership's peers as last read for a placement
	heard     []time.Time  // when each of peers' loads was heard
	peersAt   time.Duration
	heardAt   time.Duration // last heartbeat delivery
}

// nodeRoom is a room open on a node.
type nodeRoom struct {
	viewers int
	synced  bool          // the room's sync answered: the node knows its producers and trees
	opened  time.Duration // when the room opened on the node (its first participant joined)
}

// room is one simulated room.
type room struct {
	idx       int
	name      string
	group     *RoomGroup
	producers []*producer
	carrying  map[string]bool // the nodes the room is open on (Place's Carrying)
	open      [][]*simNode    // the same, by region index
	viewers   int
}

// producer is one published track.
type producer struct {
	id     string
	room   *room
	origin *simNode
	edges  map[*simNode]*simNode // the true tree: child -> parent
}

// New prepares a run of sc.
func New(sc *Scenario) (*Sim, error) {
	s := &Sim{sc: sc, rng: rand.New(rand.NewPCG(uint64(sc.Seed), 1)), byID: map[string]*simNode{}}
	for _, r := range sc.Regions {
		s.regions = append(s.regions, r.Name)
	}
	s.delay = make([][]time.Duration, len(s.regions))
	for i, a := range s.regions {
		s.delay[i] = make([]time.Duration, len(s.regions))
		for j, b := range s.regions {
			s.delay[i][j] = sc.delay(a, b)
		}
	}
	s.inReg = make([][]*simNode, len(s.regions))
	s.lbNext = make([]int, len(s.regions))
	s.cut = make([]bool, len(s.regions))
	for ri, r := range sc.Regions {
		for i := range r.Nodes {
			n := &simNode{idx: len(s.nodes), id: fmt.Sprintf("%s-%03d", r.Name, i), region: ri, cap: r.Capacity, alive: true,
				rooms: map[*room]*nodeRoom{}, in: map[*producer]*simNode{}, out: map[*producer][]*simNode{}}
			n.slot = s.rng.IntN(checksPerBeat)
			n.stats = node.Stats{ID: n.id, Region: r.Name, HTTPURL: "http://" + n.id + ":7880",
				RelayAddr: fmt.Sprintf("10.%d.%d.%d:7882", ri, i/250, i%250+1)}
			n.mem = cluster.NewMembership(n.id, sc.Heartbeat, sc.Timeout)
			n.agg = cluster.NewAggregator(n.id, r.Name, sc.Heartbeat, sc.Timeout)
			n.trees = relay.NewTrees()
			if *sc.PlacementAccounting {
				n.pending = cluster.NewPending(sc.Heartbeat)
			}
			s.nodes = append(s.nodes, n)
			s.byID[n.id] = n
			s.inReg[ri] = append(s.inReg[ri], n)
		}
	}
	for _, g := range sc.Rooms {
		for i := range g.Count {
			r := &room{idx: len(s.rooms), name: g.Name, group: &g, carrying: map[string]bool{}, open: make([][]*simNode, len(s.regions))}
			if g.Count > 1 {
				r.name = fmt.Sprintf("%s-%04d", g.Name, i)
			}
			s.rooms = append(s.rooms, r)
		}
	}
	largest := 0
	for _, r := range sc.Regions {
		largest = max(largest, r.Nodes)
	}
	sizes, cert, err := messageSizes(s.nodes[0].stats, largest)
	if err != nil {
		return nil, err
	}
	s.sizes, s.cert = sizes, cert
	s.m = newMetrics(s)
	return s, nil
}

// now is the virtual time as the state machines see it.
func (s *Sim) now() time.Time { return base.Add(s.q.now) }

// regionIndex is the index of a region name (-1 if unknown).
func (s *Sim) regionIndex(name string) int {
	for i, r := range s.regions {
		if r == name {
			return i
		}
	}
	return -1
}

// reach tells whether messages and media pass between regions a and b now.
func (s *Sim) reach(a, b int) bool { return a == b || (!s.cut[a] && !s.cut[b]) }

// Run runs the scenario to its end and returns the report.
func (s *Sim) Run() *Report {
	runtime.LockOSThread() // the placement is timed on this thread's CPU clock
	defer runtime.UnlockOSThread()
	start := time.Now()
	s.q.at(s.sc.SteadyFrom, s.m.snapshotSteady) // before the beats of that instant: whole seconds
	for slot := time.Duration(0); slot < s.sc.Duration; slot += s.sc.Heartbeat / checksPerBeat {
		s.q.at(slot, s.checkSlot)
	}
	for sec := time.Second; sec <= s.sc.Duration; sec += time.Second {
		s.q.at(sec, s.m.second)
	}
	s.schedulePublishers()
	s.scheduleArrivals()
	s.scheduleFailures()
	s.q.run(s.sc.Duration)
	return s.m.report(time.Since(start))
}

// checkSlot is one tenth of a heartbeat interval: the nodes of this slot beat, and the nodes
// feed their relay and media evidence to their membership and tick it, then their aggregator. A real node ticks ten
// times an interval; the simulator does so from a failure until everyone noticed it
// (alertUntil), and otherwise ticks each node once an interval: while every node beats and
// every beat arrives, a tick finds nobody silent and changes nothing (ticks stay under two
// intervals apart, so Membership sees no pause), and it saves most of a large run's time.
func (s *Sim) checkSlot() {
	slot := int(s.q.now/(s.sc.Heartbeat/checksPerBeat)) % checksPerBeat
	s.beat(slot)
	now := s.now()
	every := s.q.now < s.alertUntil // a failure is being noticed: every node ticks every slot
	for _, n := range s.nodes {
		if !n.alive || !every && n.slot != slot {
			continue
		}
		for p := range n.in {
			if s.flowing(n, p) {
				n.mem.Carried(p.origin.id, now)
			}
		}
		for _, id := range n.mem.Tick(now) {
			s.nodeGone(n, s.byID[id])
		}
	}
	for _, n := range s.nodes { // aggregators every check, as the cluster does; the others once an interval
		if n.alive && (n.listening || every || n.slot == slot) {
			s.aggregate(n, now)
		}
	}
	s.m.checkRepairs()
}

// flowing tells whether p's media reaches n: every pipe from its origin to n is up, between
// live nodes that reach each other.
func (s *Sim) flowing(n *simNode, p *producer) bool {
	for hops := 0; n != p.origin; hops++ {
		parent := n.in[p]
		if parent == nil || !parent.alive || !s.reach(n.region, parent.region) || hops > len(s.nodes) {
			return false
		}
		n = parent
	}
	return n.alive
}
