package sim

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// maxTreeLines bounds the trees listed in the text summary.
const maxTreeLines = 6

// WriteText writes the report's summary for a terminal.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("scenario %s: %d nodes in %s, K=%d, heartbeat %s / timeout %s; %.0f s virtual in %.1f s (%d events)",
		r.Scenario, r.Nodes, strings.Join(r.Regions, ", "), r.Fanout, r.Heartbeat, r.Timeout, r.VirtualSec, r.WallSec, r.Events)
	p("costs: %.2f µs CPU per forwarded packet, %.2f ms per relay hop, %.1f packets/s per stream (%s)",
		r.Costs.CPUPerPacketUs, r.Costs.HopLatencyMs, r.Costs.PacketsPerSec, r.Costs.Source)
	v := r.Viewers
	p("\nviewers: %d arrivals (reconnects included), %d served at the end (peak %d), %d placements refused (retried), %d gave up", v.Arrived, v.Served, v.PeakServed, v.Refusals, v.Refused)
	l := r.Load
	p("load per node (viewers): min %.0f, p50 %.0f, p99 %.0f, max %.0f (max/mean %.2f); CPU cores p50 %.2f, max %.2f",
		l.Viewers.Min, l.Viewers.P50, l.Viewers.P99, l.Viewers.Max, l.MaxOverMean, l.CPUCores.P50, l.CPUCores.Max)
	p("herding (stale loads during joins): at most %d joins at one node in one second, %.1fx the mean", l.PeakJoinsPerNodeSec, l.PeakHerding)
	p("\nrelay trees (steady state), %d producers:", len(r.Trees))
	for i, t := range r.Trees {
		if i == maxTreeLines {
			p("  ... %d more in the JSON report", len(r.Trees)-i)
			break
		}
		p("  %s from %s: %d carriers, origin egress %d (max %d) relay streams, depth %d, crossings into %s, %d detached",
			t.Producer, t.Origin, t.Carriers, t.OriginEgress, t.MaxEgress, t.MaxDepth, fmtMap(t.Crossings), t.Detached)
	}
	pp := r.Pipes
	p("pipe setup: %d requests, %d refused (fan-out full or not carried), %d retries; demand to media p50 %.0f ms, p99 %.0f ms, max %.0f ms; most producers wanted at one manager %d",
		pp.Asks, pp.Refused, pp.Retries, pp.SetupMs.P50, pp.SetupMs.P99, pp.SetupMs.Max, pp.MaxQueue)
	p("server-path latency (relay hops x hop cost + region delays), per viewer region:")
	for _, lr := range r.Latency {
		p("  %-10s p50 %.1f ms, p99 %.1f ms, max %.1f ms; hops p50 %.0f, max %.0f", lr.Region, lr.Ms.P50, lr.Ms.P99, lr.Ms.Max, lr.Hops.P50, lr.Hops.Max)
	}
	c := r.Control
	p("\ncontrol traffic per node (from %.0f s to %.0f s, steady): sent mean %.1f / max %.1f msgs/s, received mean %.1f / max %.1f msgs/s",
		c.SteadyFromSec, c.SteadyToSec, c.SteadySent.Mean, c.SteadySent.Max, c.SteadyReceived.Mean, c.SteadyReceived.Max)
	p("  %d aggregators (primary and backup of each region's heartbeats): sent mean %.1f / max %.1f, received mean %.1f / max %.1f msgs/s",
		c.Aggregators, c.AggregatorSent.Mean, c.AggregatorSent.Max, c.AggregatorReceived.Mean, c.AggregatorReceived.Max)
	p("  the other nodes: sent mean %.1f / max %.1f, received mean %.1f / max %.1f msgs/s",
		c.OtherSent.Mean, c.OtherSent.Max, c.OtherReceived.Mean, c.OtherReceived.Max)
	p("busiest second (churn): %d sent, %d received by one node", c.ChurnSentMax, c.ChurnReceivedMax)
	p("  %-18s %8s %12s %14s %12s", "type", "bytes", "sent", "received", "gateway")
	for _, t := range c.ByType {
		p("  %-18s %8d %12d %14d %12d", t.Type, t.Bytes, t.Sent, t.Received, t.Gateway)
	}
	pl := r.Placement
	p("\nplacement (cluster.Place, thread CPU time): %d decisions at %d nodes (%d viewers each): p50 %.3f ms, p99 %.3f ms, max %.3f ms",
		pl.Decisions, pl.Nodes, pl.ViewersPerDecision, pl.P50Ms, pl.P99Ms, pl.MaxMs)
	for _, f := range r.Failures {
		if f.Kind == "partition" {
			p("failure at %.0f s: partition of %s until %.0f s: %d membership drops; every node with viewers had the media again %.2f s after the heal (repaired %v); crossings after: %s",
				f.AtSec, f.Target, f.HealedSec, f.Dropped, f.RepairSec, f.Repaired, fmtMap(f.Crossings))
			continue
		}
		p("failure at %.0f s: %s %s: %d orphans, %d nodes below; first noticed after %.2f s, by every node after %.2f s (%d live nodes wrongly dropped); repaired %v after %.2f s; crossings after: %s",
			f.AtSec, f.Kind, f.Target, f.Orphans, f.Subtree, f.DetectedSec, f.DetectedAllSec, f.LiveDropped, f.Repaired, f.RepairSec, fmtMap(f.Crossings))
	}
	p("\nchecks:")
	for _, ck := range r.Checks {
		mark := "ok  "
		if !ck.OK {
			mark = "FAIL"
		}
		p("  %s %s: %s", mark, ck.Name, ck.Value)
	}
}

func fmtMap(m map[string]int) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}
