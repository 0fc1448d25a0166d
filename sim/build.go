package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/relay"
)

// report assembles the run's report.
func (m *metrics) report(wall time.Duration) *Report {
	s, sc := m.s, m.s.sc
	r := &Report{Scenario: sc.Name, Nodes: len(s.nodes), Regions: s.regions, Fanout: sc.Fanout,
		Heartbeat: sc.Heartbeat.String(), Timeout: sc.Timeout.String(), VirtualSec: sc.Duration.Seconds(),
		WallSec: wall.Seconds(), Events: s.q.runs, Series: m.series,
		Costs: CostReport{CPUPerPacketUs: float64(sc.Costs.CPUPerPacket) / 1e3, HopLatencyMs: ms(sc.Costs.HopLatency),
			PacketsPerSec: sc.Costs.PacketsPerSec, Source: "BENCHMARKS.md: 1 -> 200 cascade CPU per forwarded packet; relay chain p50 added latency per hop (unless the scenario sets them)"}}
	r.Viewers = ViewerReport{Arrived: m.joinsTotal + m.refused, Refusals: m.refusals, Refused: m.refused, PublishersRefused: m.publishersRefused}
	for _, room := range s.rooms {
		r.Viewers.Served += room.viewers
	}
	for _, sec := range m.series {
		r.Viewers.PeakServed = max(r.Viewers.PeakServed, sec.Viewers)
		r.Load.PeakHerding = max(r.Load.PeakHerding, sec.Herding)
		r.Load.PeakJoinsPerNodeSec = max(r.Load.PeakJoinsPerNodeSec, sec.MaxJoinsPerNode)
	}
	if m.steadySent == nil { // the run ended before its steady state
		m.snapshotSteady()
	}
	r.Trees = m.steadyTree
	r.TreesEnd = m.trees()
	r.Load = m.load(r.Load)
	r.Latency = m.latency()
	r.Control = m.control()
	r.Placement = m.placement()
	r.Pipes = PipeReport{Asks: m.pipeAsks, Refused: m.pipeRefused, Retries: m.pipeRetries, Ranked: m.parentsRanked, HubWaits: m.hubWaits,
		SetupMs: quantiles(slices.Clone(m.setup)), MaxQueue: m.maxQueue}
	for _, f := range m.failures {
		r.Failures = append(r.Failures, f.rep)
	}
	if len(m.decisions) <= MaxListed {
		r.Placements = m.decisions
	}
	r.Checks = checks(r, sc)
	return r
}

// trees reports every producer's true relay tree now.
func (m *metrics) trees() []TreeReport {
	var out []TreeReport
	for _, p := range m.producers {
		t := TreeReport{Producer: p.id, Origin: p.origin.id, Carriers: len(p.edges), OriginEgress: len(p.origin.out[p]),
			MaxEgress: m.maxEgress[p], Crossings: crossings(p, m.s.regions), Depths: map[int]int{}}
		for n, parent := range p.edges {
			d := depth(p, n)
			t.Depths[d]++
			t.MaxDepth = max(t.MaxDepth, d)
			if len(p.edges) <= MaxListed {
				t.Edges = append(t.Edges, relay.Edge{Node: n.id, Parent: parent.id})
			}
		}
		slices.SortFunc(t.Edges, func(a, b relay.Edge) int { return strings.Compare(a.Node, b.Node) })
		for _, ns := range p.room.open {
			for _, n := range ns {
				if n != p.origin && n.alive && n.rooms[p.room] != nil && n.rooms[p.room].viewers > 0 && !m.s.flowing(n, p) {
					t.Detached++
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// crossings counts p's pipes into each region from another.
func crossings(p *producer, regions []string) map[string]int {
	out := map[string]int{}
	for child, parent := range p.edges {
		if child.region != parent.region && child.alive {
			out[regions[child.region]]++
		}
	}
	return out
}

// load reports the nodes' load now.
func (m *metrics) load(l LoadReport) LoadReport {
	s := m.s
	var viewers, cpu []float64
	for _, n := range s.nodes {
		if !n.alive {
			continue
		}
		out := 0
		for _, kids := range n.out {
			out += len(kids)
		}
		c := float64(n.consumers+int64(out)) * s.sc.Costs.PacketsPerSec * s.sc.Costs.CPUPerPacket.Seconds()
		viewers = append(viewers, float64(n.viewers))
		cpu = append(cpu, c)
		l.PerNode = append(l.PerNode, NodeLoad{ID: n.id, Region: s.regions[n.region], Viewers: n.viewers, RelayOut: out, CPUCores: c})
	}
	l.Viewers = quantiles(viewers)
	l.CPUCores = quantiles(cpu)
	if l.Viewers.Mean > 0 {
		l.MaxOverMean = l.Viewers.Max / l.Viewers.Mean
	}
	return l
}

// latency reports the server-path latency of each region's viewers, weighted by viewers: for
// each producer, the relay hops from its origin to the viewer's node times the hop cost, plus
// the one-way delays of the regions the pipes cross.
func (m *metrics) latency() []LatencyReport {
	s := m.s
	byRegion := make([][]float64, len(s.regions))
	hops := make([][]float64, len(s.regions))
	const maxSamples = 1 << 16
	for _, p := range m.producers {
		for _, n := range s.nodes {
			nr := n.rooms[p.room]
			if !n.alive || nr == nil || nr.viewers == 0 {
				continue
			}
			lat, h, ok := time.Duration(0), 0, true
			for x := n; x != p.origin; h++ {
				parent := p.edges[x]
				if parent == nil || h > len(p.edges) {
					ok = false
					break
				}
				lat += s.sc.Costs.HopLatency + s.delay[x.region][parent.region]
				x = parent
			}
			if !ok {
				continue
			}
			w := max(1, nr.viewers*len(s.nodes)/maxSamples) // weight by viewers, in bounded samples
			for range max(1, nr.viewers/w) {
				byRegion[n.region] = append(byRegion[n.region], ms(lat))
				hops[n.region] = append(hops[n.region], float64(h))
			}
		}
	}
	var out []LatencyReport
	for i, name := range s.regions {
		if len(byRegion[i]) > 0 {
			out = append(out, LatencyReport{Region: name, Ms: quantiles(byRegion[i]), Hops: quantiles(hops[i])})
		}
	}
	return out
}

// control reports the messages per node per second at steady state and the busiest second.
func (m *metrics) control() ControlReport {
	s := m.s
	c := ControlReport{NATSMaxPayload: NATSMaxPayload, ByType: sortedTypes(m.byType)}
	endSent, endRecv, end, agg := m.steadyEndSent, m.steadyEndRecv, m.steadyEnd, m.steadyEndAgg
	if endSent == nil {
		endSent, endRecv, end, agg = m.sentN, m.recvN, s.q.now, m.aggregators()
	}
	c.SteadyFromSec, c.SteadyToSec = m.steadyAt.Seconds(), end.Seconds()
	if span := (end - m.steadyAt).Seconds(); span > 0 && m.steadySent != nil {
		var sent, recv, aggSent, aggRecv, othSent, othRecv []float64
		for i, n := range s.nodes {
			if !n.alive {
				continue
			}
			ds, dr := float64(endSent[i]-m.steadySent[i])/span, float64(endRecv[i]-m.steadyRecv[i])/span
			sent, recv = append(sent, ds), append(recv, dr)
			if agg[i] {
				aggSent, aggRecv = append(aggSent, ds), append(aggRecv, dr)
				c.Aggregators++
			} else {
				othSent, othRecv = append(othSent, ds), append(othRecv, dr)
			}
		}
		c.SteadySent, c.SteadyReceived = quantiles(sent), quantiles(recv)
		c.AggregatorSent, c.AggregatorReceived = quantiles(aggSent), quantiles(aggRecv)
		c.OtherSent, c.OtherReceived = quantiles(othSent), quantiles(othRecv)
	}
	for _, sec := range m.series {
		c.ChurnSentMax = max(c.ChurnSentMax, sec.MaxSentPerNode)
		c.ChurnReceivedMax = max(c.ChurnReceivedMax, sec.MaxReceivedPerNode)
	}
	return c
}

// placement reports the decision times.
func (m *metrics) placement() PlacementReport {
	p := PlacementReport{Decisions: len(m.placeTimes), Nodes: m.placeNodes, ViewersPerDecision: m.s.sc.ViewersPerDecision}
	if len(m.placeTimes) == 0 {
		return p
	}
	ts := slices.Clone(m.placeTimes)
	slices.Sort(ts)
	at := func(q float64) time.Duration { return ts[min(len(ts)-1, int(q*float64(len(ts))))] }
	p.P50Ms, p.P99Ms, p.MaxMs = ms(at(0.5)), ms(at(0.99)), ms(ts[len(ts)-1])
	return p
}

// checks evaluates the "Done means" on this run.
func checks(r *Report, sc *Scenario) []Check {
	var out []Check
	add := func(name, value string, ok bool) { out = append(out, Check{Name: name, Value: value, OK: ok}) }
	egress, crossedTwice, detached := 0, 0, 0
	for _, t := range r.Trees {
		egress = max(egress, t.MaxEgress)
		for _, n := range t.Crossings {
			if n != 1 {
				crossedTwice++
				break
			}
		}
		detached += t.Detached
	}
	if len(r.Trees) > 0 {
		add("origin egress <= K relay streams", fmt.Sprintf("max %d over %d producers (K = %d)", egress, len(r.Trees), r.Fanout), egress <= r.Fanout)
		add("each region boundary crossed once per producer", fmt.Sprintf("%d of %d producers cross one more than once", crossedTwice, len(r.Trees)), crossedTwice == 0)
		add("every node with viewers gets the media (steady state)", fmt.Sprintf("%d (node, producer) pairs without", detached), detached == 0)
	}
	if r.Placement.Decisions > 0 {
		add(fmt.Sprintf("placement p99 < 10 ms at %d nodes", r.Placement.Nodes), fmt.Sprintf("%.3f ms", r.Placement.P99Ms), r.Placement.P99Ms < 10)
	}
	limit := (sc.Timeout + time.Second).Seconds()
	for _, f := range r.Failures {
		if f.Kind != "kill" {
			add("partition of "+f.Target+" repaired", fmt.Sprintf("%v, %.2f s after the heal", f.Repaired, f.RepairSec), f.Repaired)
			continue
		}
		add(fmt.Sprintf("subtree of %s re-attached within timeout + 1 s", f.Target), fmt.Sprintf("%.2f s (limit %.1f s)", f.RepairSec, limit), f.Repaired && f.RepairSec <= limit)
	}
	if r.Control.SteadyToSec > r.Control.SteadyFromSec {
		add("steady control traffic: < 50 msgs/s sent per node", fmt.Sprintf("max %.1f", r.Control.SteadySent.Max), r.Control.SteadySent.Max < 50)
		add("steady control traffic: < 1000 msgs/s received per node", fmt.Sprintf("max %.1f", r.Control.SteadyReceived.Max), r.Control.SteadyReceived.Max < 1000)
	}
	big := 0
	for _, t := range r.Control.ByType {
		big = max(big, t.Bytes)
	}
	add("control messages fit NATS's payload limit", fmt.Sprintf("largest %d B of %d", big, NATSMaxPayload), big < NATSMaxPayload)
	return out
}
