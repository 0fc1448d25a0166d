package cluster

import (
	"github.com/cascade-sfu/cascade/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the cluster's and the relay's figures to Prometheus, read at scrape time.
type Collector struct {
	c       *Cluster
	members *Membership
	pipes   *relay.Pipes
	placer  *Placer

	nodes, reachable, resyncs, links, pipesG, packets, bytes, dropped, placed *prometheus.Desc
	rejected, refusedResend, aggregator                                       *prometheus.Desc
}

// NewCollector returns the collector of a node's cluster membership, pipes and placer.
func NewCollector(c *Cluster, placer *Placer) *Collector {
	return &Collector{c: c, members: c.members, pipes: c.pipes, placer: placer,
		nodes:         prometheus.NewDesc("cascade_cluster_nodes", "Live nodes in the cluster, this one included.", nil, nil),
		reachable:     prometheus.NewDesc("cascade_cluster_reachable", "1 while this node reaches the cluster (NATS connected, its own heartbeats come back), else 0.", nil, nil),
		resyncs:       prometheus.NewDesc("cascade_cluster_resyncs_total", "Re-sync passes of the rooms open here, after messages between nodes were lost.", nil, nil),
		links:         prometheus.NewDesc("cascade_relay_links", "Relay links to other nodes.", nil, nil),
		pipesG:        prometheus.NewDesc("cascade_relay_pipes", "Producers piped over relay links, by direction.", []string{"direction"}, nil),
		packets:       prometheus.NewDesc("cascade_relay_packets_total", "Relayed RTP packets, by direction.", []string{"direction"}, nil),
		bytes:         prometheus.NewDesc("cascade_relay_bytes_total", "Relayed bytes, by direction.", []string{"direction"}, nil),
		dropped:       prometheus.NewDesc("cascade_relay_dropped_total", "Relay datagrams dropped, by reason (unknown_source, auth, malformed, replay: received before, key: an unknown or expired key epoch, unknown_ssrc: no pipe here, as after an unpipe).", []string{"reason"}, nil),
		refusedResend: prometheus.NewDesc("cascade_relay_resends_refused_total", "Relay retransmissions not sent because their SSRC and index went out before with other bytes (a nonce must not repeat).", nil, nil),
		placed:        prometheus.NewDesc("cascade_placement_decisions_total", "Join placement decisions, by result (local, redirect, refused: cluster_unavailable).", []string{"result"}, nil),
		aggregator:    prometheus.NewDesc("cascade_cluster_aggregator", "1 for this node's part in its region's heartbeat aggregation (role: primary, backup), 0 for the others (see docs/CAPACITY.md).", []string{"role"}, nil),
		rejected:      prometheus.NewDesc("cascade_cluster_rejected_total", "Control messages from other nodes refused, by reason (malformed, unsigned, cert_mismatch, voucher: not vouched for by an accepted cluster secret, signature, stale_time: outside the freshness window, duplicate, old_incarnation, sealed, mismatch).", []string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodes, c.reachable, c.resyncs, c.links, c.pipesG, c.packets, c.bytes, c.dropped, c.placed, c.rejected, c.refusedResend, c.aggregator} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	t := c.pipes.Transport()
	in, out := c.pipes.Counts()
	local, redirect, refused := c.placer.Decisions()
	g, k := prometheus.GaugeValue, prometheus.CounterValue
	reachable := 0.0
	if c.c.Available() {
		reachable = 1
	}
	ch <- prometheus.MustNewConstMetric(c.nodes, g, float64(c.members.Len()+1))
	ch <- prometheus.MustNewConstMetric(c.reachable, g, reachable)
	for _, r := range []Role{RolePrimary, RoleBackup} {
		v := 0.0
		if c.c.Aggregation() == r {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.aggregator, g, v, r.String())
	}
	ch <- prometheus.MustNewConstMetric(c.resyncs, k, float64(c.c.Resyncs()))
	ch <- prometheus.MustNewConstMetric(c.links, g, float64(len(t.Links())))
	ch <- prometheus.MustNewConstMetric(c.pipesG, g, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(c.pipesG, g, float64(out), "out")
	ch <- prometheus.MustNewConstMetric(c.packets, k, float64(t.PacketsIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(c.packets, k, float64(t.PacketsOut.Load()), "out")
	ch <- prometheus.MustNewConstMetric(c.bytes, k, float64(t.BytesIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(c.bytes, k, float64(t.BytesOut.Load()), "out")
	for reason, n := range t.Drops() {
		ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(c.refusedResend, k, float64(t.RefusedResend.Load()))
	ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(c.pipes.UnknownSSRC.Load()), "unknown_ssrc")
	ch <- prometheus.MustNewConstMetric(c.placed, k, float64(local), "local")
	ch <- prometheus.MustNewConstMetric(c.placed, k, float64(redirect), "redirect")
	ch <- prometheus.MustNewConstMetric(c.placed, k, float64(refused), "refused")
	for reason, n := range c.c.Rejected() {
		ch <- prometheus.MustNewConstMetric(c.rejected, k, float64(n), reason)
	}
}
