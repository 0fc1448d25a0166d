package turnsrv

import "github.com/prometheus/client_golang/prometheus"

// metrics are the cascade_turn_* series.
type metrics struct {
	allocations                                                prometheus.Gauge
	quota, refused, dropped, authFailed                        prometheus.Counter
	toNodePackets, toNodeBytes, toClientPackets, toClientBytes prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	if r == nil {
		r = prometheus.NewRegistry()
	}
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_turn_relayed_packets_total",
		Help: "Datagrams relayed by the TURN server, by direction: to_node (from clients to the node's media sockets) or to_client."},
		[]string{"direction"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_turn_relayed_bytes_total",
		Help: "Payload bytes relayed by the TURN server, by direction (to_node, to_client)."}, []string{"direction"})
	m := &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cascade_turn_allocations",
			Help: "Live TURN allocations."}),
		quota: prometheus.NewCounter(prometheus.CounterOpts{Name: "cascade_turn_allocations_refused_total",
			Help: "TURN allocations refused because their user held the most allowed (--turn-max-allocations)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "cascade_turn_permissions_refused_total",
			Help: "TURN permissions and channel bindings refused: their peer was not one of the node's media addresses."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "cascade_turn_dropped_packets_total",
			Help: "Datagrams a TURN relay dropped: to or from a port of the node that is not a media socket."}),
		authFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "cascade_turn_auth_failures_total",
			Help: "TURN requests refused for bad or expired credentials."}),
		toNodePackets:   packets.WithLabelValues("to_node"),
		toClientPackets: packets.WithLabelValues("to_client"),
		toNodeBytes:     bytes.WithLabelValues("to_node"),
		toClientBytes:   bytes.WithLabelValues("to_client"),
	}
	for _, c := range []prometheus.Collector{m.allocations, m.quota, m.refused, m.dropped, m.authFailed, packets, bytes} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
