package sim

import (
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/cluster"
)

// scheduleFailures injects the scenario's failures at their times.
func (s *Sim) scheduleFailures() {
	for _, f := range s.sc.Failures {
		s.q.at(f.At, func() {
			s.alertUntil = max(s.alertUntil, s.q.now+f.For+2*s.sc.Timeout+2*s.sc.Heartbeat)
			if f.Kill != "" {
				s.kill(f.Kill)
				return
			}
			ri := s.regionIndex(f.Partition)
			s.cut[ri] = true
			s.m.failureStarted("partition", f.Partition, nil)
			s.q.after(f.For, func() {
				s.alertUntil = max(s.alertUntil, s.q.now+2*s.sc.Timeout+2*s.sc.Heartbeat)
				s.cut[ri] = false
				s.m.healed(f.Partition)
			})
		})
	}
}

// kill kills the node spec names (see Failure): it stops at once, with no goodbye; its viewers
// reconnect after ReconnectAfter.
func (s *Sim) kill(spec string) {
	n := s.resolve(spec)
	if n == nil || !n.alive {
		s.m.failureStarted("kill", spec+" (no such node)", nil)
		return
	}
	n.alive = false
	s.m.failureStarted("kill", spec+" = "+n.id, n)
	s.leaveAll(n)
	for _, p := range s.m.producers {
		delete(p.edges, n)
	}
}

// resolve finds the node a failure names, in the first producer's true tree.
func (s *Sim) resolve(spec string) *simNode {
	if n := s.byID[spec]; n != nil {
		return n
	}
	if region, ok := strings.CutPrefix(spec, "aggregator:"); ok {
		ri := s.regionIndex(region)
		for _, n := range s.nodes { // by id: the lowest listening one is the primary
			if n.region == ri && n.alive && n.listening && n.agg.Role() == cluster.RolePrimary {
				return n
			}
		}
		return nil
	}
	if len(s.m.producers) == 0 {
		return nil
	}
	p := s.m.producers[0]
	var cands []*simNode
	for child := range p.edges {
		cands = append(cands, child)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].id < cands[j].id })
	if region, ok := strings.CutPrefix(spec, "hub:"); ok {
		ri := s.regionIndex(region)
		for _, c := range cands {
			if c.region == ri && p.edges[c].region != ri {
				return c
			}
		}
		return nil
	}
	if spec == "mid-tree" {
		var best *simNode
		bestSize := 0
		for _, c := range cands {
			if depth(p, c) < 2 || len(c.out[p]) == 0 {
				continue
			}
			if size := subtree(p, c); size > bestSize {
				best, bestSize = c, size
			}
		}
		return best
	}
	return nil
}

// depth is the hops from p's origin to n in the true tree (-1: not attached).
func depth(p *producer, n *simNode) int {
	d := 0
	for n != p.origin {
		parent := p.edges[n]
		if parent == nil || d > len(p.edges) {
			return -1
		}
		n = parent
		d++
	}
	return d
}

// subtree counts the nodes below n in p's true tree.
func subtree(p *producer, n *simNode) int {
	count := 0
	for c := range p.edges {
		for x, hops := c, 0; x != nil && x != p.origin && hops <= len(p.edges); hops++ {
			x = p.edges[x]
			if x == n {
				count++
				break
			}
		}
	}
	return count
}
