package node

import (
	"strconv"
	"sync/atomic"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports the node's counters, read from the workers' atomics at scrape time so the
// media path pays nothing for them.
type metrics struct {
	n                  *Node
	nackRetransmits    atomic.Uint64
	keyframesSent      atomic.Uint64
	keyframesCollapsed atomic.Uint64
	refused            [2]atomic.Uint64 // messages refused by the senders' limits, chat and data
	producerMoves      atomic.Uint64    // producers whose source changed (a publisher resumed)

	rooms, participants, routers, producers, consumers, packets, bytes, dropped, keyframes, nacks *prometheus.Desc

	rtxPackets, rtxBytes, rtxRefused, rtxKeyframes *prometheus.Desc

	transports, refusedMsgs *prometheus.Desc

	junk, tcpRefused *prometheus.Desc

	moves *prometheus.Desc

	layers layerMetrics // simulcast (layermetrics.go)
}

// Kinds of refused messages (metrics.refused).
const (
	refusedChat = iota
	refusedData
)

func newMetrics(n *Node) *metrics {
	wl := []string{"worker"}
	return &metrics{n: n,
		rooms:        prometheus.NewDesc("cascade_rooms", "Rooms on this node.", nil, nil),
		participants: prometheus.NewDesc("cascade_participants", "Participants connected to this node.", nil, nil),
		routers:      prometheus.NewDesc("cascade_routers", "Routers (room shards) per worker.", wl, nil),
		producers:    prometheus.NewDesc("cascade_producers", "Producers per worker (their home worker).", wl, nil),
		consumers:    prometheus.NewDesc("cascade_consumers", "Consumers per worker.", wl, nil),
		packets:      prometheus.NewDesc("cascade_forwarded_packets_total", "RTP packets forwarded to consumers.", wl, nil),
		bytes:        prometheus.NewDesc("cascade_forwarded_bytes_total", "RTP bytes forwarded to consumers.", wl, nil),
		dropped:      prometheus.NewDesc("cascade_dropped_packets_total", "Packets dropped because a worker's queue was full.", wl, nil),
		keyframes:    prometheus.NewDesc("cascade_keyframe_requests_total", "Keyframe requests from consumers, sent upstream or collapsed.", []string{"result"}, nil),
		nacks:        prometheus.NewDesc("cascade_nack_retransmits_total", "Packets retransmitted from producer caches on NACK.", nil, nil),
		rtxPackets:   prometheus.NewDesc("cascade_rtx_packets_total", "Packets retransmitted on NACK to subscribers and relay children, per worker.", wl, nil),
		rtxBytes:     prometheus.NewDesc("cascade_rtx_bytes_total", "RTP bytes retransmitted on NACK, per worker.", wl, nil),
		rtxRefused: prometheus.NewDesc("cascade_rtx_refused_total", "NACKed packets not retransmitted, per worker, by reason: budget (the consumer's "+
			"retransmission budget is spent), congested (the NACKed share says the path is congested), duplicate (resent within "+
			"the round trip), too_old (past its useful life or no longer cached), range (past the sequence numbers handled per NACK).",
			[]string{"worker", "reason"}, nil),
		transports: prometheus.NewDesc("cascade_transports", "Connected transports per worker, by the protocol (udp, tcp: ICE-TCP) and "+
			"address family (ipv4, ipv6) of their selected ICE candidate pair.", []string{"worker", "protocol", "family"}, nil),
		refusedMsgs: prometheus.NewDesc("cascade_messages_rate_limited_total", "Chat and data-channel messages refused at their sender by "+
			"its rate limit (chat answered rate_limited, data dropped), by kind.", []string{"kind"}, nil),
		rtxKeyframes: prometheus.NewDesc("cascade_rtx_keyframe_requests_total", "Keyframe requests made instead of retransmissions "+
			"(a consumer's budget spent or its path congested), before the per-producer collapse, per worker.", wl, nil),
		junk: prometheus.NewDesc("cascade_media_junk_total", "Datagrams on a worker's media port that no transport took: from an "+
			"unknown address and no STUN binding request for a known ufrag, or STUN that does not decode.", wl, nil),
		tcpRefused: prometheus.NewDesc("cascade_ice_tcp_refused_total", "ICE-TCP connections refused: their first packet was not a "+
			"STUN binding request for a known ufrag.", nil, nil),
		moves: prometheus.NewDesc("cascade_producer_moves_total", "Producers of rooms on this node whose source moved (their "+
			"publisher resumed here or on another node); their consumers switch at the new source's first keyframe.", nil, nil),
		layers: newLayerMetrics(),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.rooms, m.participants, m.routers, m.producers, m.consumers, m.packets, m.bytes, m.dropped, m.keyframes, m.nacks,
		m.rtxPackets, m.rtxBytes, m.rtxRefused, m.rtxKeyframes, m.transports, m.refusedMsgs, m.junk, m.tcpRefused, m.moves} {
		ch <- d
	}
	m.layers.describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.n.Stats()
	ch <- prometheus.MustNewConstMetric(m.rooms, prometheus.GaugeValue, float64(s.Rooms))
	ch <- prometheus.MustNewConstMetric(m.participants, prometheus.GaugeValue, float64(s.Participants))
	for _, w := range s.Workers {
		i := strconv.Itoa(w.Index)
		ch <- prometheus.MustNewConstMetric(m.routers, prometheus.GaugeValue, float64(w.Routers), i)
		ch <- prometheus.MustNewConstMetric(m.producers, prometheus.GaugeValue, float64(w.Producers), i)
		ch <- prometheus.MustNewConstMetric(m.consumers, prometheus.GaugeValue, float64(w.Consumers), i)
		ch <- prometheus.MustNewConstMetric(m.packets, prometheus.CounterValue, float64(w.Packets), i)
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.CounterValue, float64(w.Bytes), i)
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(w.Dropped), i)
	}
	for _, w := range m.n.workers {
		i := strconv.Itoa(w.index)
		ch <- prometheus.MustNewConstMetric(m.rtxPackets, prometheus.CounterValue, float64(w.rtxPackets.Load()), i)
		ch <- prometheus.MustNewConstMetric(m.rtxBytes, prometheus.CounterValue, float64(w.rtxBytes.Load()), i)
		ch <- prometheus.MustNewConstMetric(m.rtxKeyframes, prometheus.CounterValue, float64(w.rtxKeyframes.Load()), i)
		ch <- prometheus.MustNewConstMetric(m.junk, prometheus.CounterValue, float64(w.junk.Load()), i)
		for p := range w.paths {
			ch <- prometheus.MustNewConstMetric(m.transports, prometheus.GaugeValue, float64(w.paths[p].Load()), i, pathLabels[p][0], pathLabels[p][1])
		}
		for v := rtxbudget.Verdict(1); v < rtxbudget.NumVerdicts; v++ {
			ch <- prometheus.MustNewConstMetric(m.rtxRefused, prometheus.CounterValue, float64(w.rtxRefused[v].Load()), i, v.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(m.keyframes, prometheus.CounterValue, float64(m.keyframesSent.Load()), "sent")
	ch <- prometheus.MustNewConstMetric(m.keyframes, prometheus.CounterValue, float64(m.keyframesCollapsed.Load()), "collapsed")
	ch <- prometheus.MustNewConstMetric(m.nacks, prometheus.CounterValue, float64(m.nackRetransmits.Load()))
	ch <- prometheus.MustNewConstMetric(m.refusedMsgs, prometheus.CounterValue, float64(m.refused[refusedChat].Load()), "chat")
	ch <- prometheus.MustNewConstMetric(m.refusedMsgs, prometheus.CounterValue, float64(m.refused[refusedData].Load()), "data")
	ch <- prometheus.MustNewConstMetric(m.tcpRefused, prometheus.CounterValue, float64(m.n.tcpRefused.Load()))
	ch <- prometheus.MustNewConstMetric(m.moves, prometheus.CounterValue, float64(m.producerMoves.Load()))
	m.layers.collect(m.n, ch)
}
