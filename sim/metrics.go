package sim

import (
	"time"
)

// metrics gathers what the report shows, as the run goes.
type metrics struct {
	s *Sim

	sentN, recvN       []uint64 // per node, cumulative
	lastSent, lastRecv []uint64 // at the last whole second
	joinsSec           []int    // per node, this second
	byType             map[string]*TypeTraffic
	series             []Second

	steadyAt, steadyEnd          time.Duration
	steadySent, steadyRecv       []uint64 // at steadyAt
	steadyEndSent, steadyEndRecv []uint64 // at steadyEnd (nil: the run's end)
	steadyEndAgg                 []bool   // the aggregators at steadyEnd
	steadyTree                   []TreeReport

	placeTimes []time.Duration
	placeNodes int
	decisions  []Placement // the first MaxListed+1 decisions

	producers                       []*producer
	refused, refusals, reconnecting int
	publishersRefused               int
	joinsTotal                      int
	pipeAsks, pipeRefused           int
	pipeRetries, parentsRanked      int
	hubWaits                        int
	maxEgress                       map[*producer]int
	setup                           []float64 // demand to pipe, ms
	maxQueue                        int
	failures                        []*failureRec
}

// failureRec follows one injected failure until the trees are whole again.
type failureRec struct {
	rep     FailureReport
	node    *simNode
	orphans map[*simNode][]*producer // the killed node's children, by producer
	at      time.Duration
	healAt  time.Duration // a partition's end
	done    bool
}

func newMetrics(s *Sim) *metrics {
	n := len(s.nodes)
	return &metrics{s: s, sentN: make([]uint64, n), recvN: make([]uint64, n), lastSent: make([]uint64, n), lastRecv: make([]uint64, n),
		joinsSec: make([]int, n), byType: map[string]*TypeTraffic{}, maxEgress: map[*producer]int{}, steadyAt: -1}
}

func (m *metrics) typ(t string) *TypeTraffic {
	tt := m.byType[t]
	if tt == nil {
		tt = &TypeTraffic{Type: t, Bytes: m.s.sizes[t]}
		m.byType[t] = tt
	}
	return tt
}

// sent counts count messages of type t sent by n.
func (m *metrics) sent(n *simNode, t string, count int) {
	m.sentN[n.idx] += uint64(count)
	m.typ(t).Sent += uint64(count)
}

// received counts count messages of type t delivered to n.
func (m *metrics) received(n *simNode, t string, count int) {
	m.recvN[n.idx] += uint64(count)
	m.typ(t).Received += uint64(count)
}

// gateway counts messages of type t crossing a gateway between regions.
func (m *metrics) gateway(t string, count int) { m.typ(t).Gateway += uint64(count) }

func (m *metrics) placed(d time.Duration, nodes int) {
	m.placeTimes = append(m.placeTimes, d)
	m.placeNodes = max(m.placeNodes, nodes)
}

func (m *metrics) joins(n *simNode, c int) {
	m.joinsSec[n.idx] += c
	m.joinsTotal += c
}

func (m *metrics) refusal(c int) { m.refusals += c }

// attached: n got p piped; the origin's egress may have grown, a failure may be repaired.
func (m *metrics) attached(n *simNode, p *producer) {
	m.maxEgress[p] = max(m.maxEgress[p], len(p.origin.out[p]))
	m.checkRepairs()
}

// second closes one second of the time series.
func (m *metrics) second() {
	s := m.s
	sec := Second{T: s.q.now.Seconds()}
	live, joins := 0, 0
	for i, n := range s.nodes {
		ds, dr := m.sentN[i]-m.lastSent[i], m.recvN[i]-m.lastRecv[i]
		m.lastSent[i], m.lastRecv[i] = m.sentN[i], m.recvN[i]
		sec.Sent += ds
		sec.Received += dr
		sec.MaxSentPerNode = max(sec.MaxSentPerNode, ds)
		sec.MaxReceivedPerNode = max(sec.MaxReceivedPerNode, dr)
		if n.alive {
			live++
			joins += m.joinsSec[i]
			sec.MaxJoinsPerNode = max(sec.MaxJoinsPerNode, m.joinsSec[i])
			sec.MaxLoad = max(sec.MaxLoad, float64(n.viewers)/float64(n.cap))
		}
		m.joinsSec[i] = 0
	}
	sec.Joins = joins
	if live > 0 && joins > 0 {
		sec.Herding = float64(sec.MaxJoinsPerNode) / (float64(joins) / float64(live))
	}
	for _, r := range s.rooms {
		sec.Viewers += r.viewers
	}
	sec.Refused = m.refused
	sec.Reconnecting = m.reconnecting
	sec.NodesWithoutMedia = m.nodesWithoutMedia()
	for _, p := range m.producers {
		m.maxEgress[p] = max(m.maxEgress[p], len(p.origin.out[p]))
	}
	var gw uint64
	for _, tt := range m.byType {
		gw += tt.Gateway
	}
	sec.GatewayTotal = gw
	m.series = append(m.series, sec)
}

// nodesWithoutMedia counts the (node, producer) pairs where the node has viewers of the
// producer's room and its media does not reach the node.
func (m *metrics) nodesWithoutMedia() int {
	count := 0
	for _, p := range m.producers {
		if !p.origin.alive {
			continue
		}
		for _, ns := range p.room.open {
			for _, n := range ns {
				if n != p.origin && n.alive && n.rooms[p.room] != nil && n.rooms[p.room].viewers > 0 && !m.s.flowing(n, p) {
					count++
				}
			}
		}
	}
	return count
}

// snapshotSteady starts the steady-state window and records the trees as they are.
func (m *metrics) snapshotSteady() {
	m.steadyAt = m.s.q.now
	m.steadySent = append([]uint64(nil), m.sentN...)
	m.steadyRecv = append([]uint64(nil), m.recvN...)
	m.steadyTree = m.trees()
}

// aggregators tells, per node, whether it aggregates its region's heartbeats now.
func (m *metrics) aggregators() []bool {
	out := make([]bool, len(m.s.nodes))
	for i, n := range m.s.nodes {
		out[i] = n.alive && n.listening
	}
	return out
}

// failureStarted records an injected failure; n is the killed node (nil for a partition).
func (m *metrics) failureStarted(kind, target string, n *simNode) {
	if m.steadyAt >= 0 && m.steadyEndSent == nil {
		m.steadyEnd = m.s.q.now
		m.steadyEndSent = append([]uint64(nil), m.sentN...)
		m.steadyEndRecv = append([]uint64(nil), m.recvN...)
		m.steadyEndAgg = m.aggregators()
	}
	f := &failureRec{rep: FailureReport{Kind: kind, Target: target, AtSec: m.s.q.now.Seconds()}, node: n, at: m.s.q.now,
		orphans: map[*simNode][]*producer{}}
	if n != nil {
		f.rep.Node = n.id
		for _, p := range m.producers {
			for child, parent := range p.edges {
				if parent == n {
					f.orphans[child] = append(f.orphans[child], p)
				}
			}
			if p.edges[n] != nil || p.origin == n {
				f.rep.Subtree += subtree(p, n)
			}
		}
		f.rep.Orphans = len(f.orphans)
	}
	m.failures = append(m.failures, f)
}

// healed: a partition ended.
func (m *metrics) healed(region string) {
	for _, f := range m.failures {
		if f.rep.Kind == "partition" && f.rep.Target == region && f.healAt == 0 {
			f.healAt = m.s.q.now
			f.rep.HealedSec = m.s.q.now.Seconds()
		}
	}
}

// detected: node n dropped peer from its membership.
func (m *metrics) detected(n, peer *simNode) {
	for _, f := range m.failures {
		if f.node == peer && f.rep.DetectedSec == 0 {
			f.rep.DetectedSec = (m.s.q.now - f.at).Seconds()
		}
		if f.node == peer {
			f.rep.DetectedAllSec = (m.s.q.now - f.at).Seconds()
		}
		if f.rep.Kind == "partition" && !f.done {
			f.rep.Dropped++
		}
		if f.rep.Kind == "kill" && peer.alive && m.s.q.now-f.at <= m.s.sc.Timeout+2*m.s.sc.Heartbeat {
			f.rep.LiveDropped++
		}
	}
}

// checkRepairs closes the failures whose damage is repaired: a killed node's children get
// every producer again; after a partition healed, every node with viewers gets its media.
func (m *metrics) checkRepairs() {
	for _, f := range m.failures {
		if f.done || !m.repaired(f) {
			continue
		}
		f.done = true
		f.rep.Repaired = true
		if len(m.producers) > 0 {
			f.rep.Crossings = crossings(m.producers[0], m.s.regions)
		}
		f.rep.RepairSec = (m.s.q.now - f.at).Seconds()
		if f.healAt > 0 {
			f.rep.RepairSec = (m.s.q.now - f.healAt).Seconds()
		}
	}
}

func (m *metrics) repaired(f *failureRec) bool {
	if f.node == nil {
		return f.healAt > 0 && m.nodesWithoutMedia() == 0
	}
	for child, ps := range f.orphans {
		for _, p := range ps {
			if child.alive && child.rooms[p.room] != nil && !m.s.flowing(child, p) {
				return false
			}
		}
	}
	return true
}
