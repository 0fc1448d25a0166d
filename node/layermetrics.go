package node

import (
	"strconv"
	"sync/atomic"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// layerMetrics are the simulcast metrics: the subscribers' consumers of simulcast producers by
// the layer they forward (counted at scrape time from the workers' consumers), and the layer
// switches made (counted at each switch, never per packet).
type layerMetrics struct {
	switches atomic.Uint64

	perLayer, switchesDesc *prometheus.Desc
}

func newLayerMetrics() layerMetrics {
	return layerMetrics{
		perLayer: prometheus.NewDesc("cascade_consumers_per_layer", "Subscribers' consumers of simulcast producers, by the layer "+
			"they forward (0: the lowest).", []string{"layer"}, nil),
		switchesDesc: prometheus.NewDesc("cascade_layer_switches_total", "Simulcast layer switches made by consumers (each at a "+
			"keyframe of the new layer).", nil, nil),
	}
}

func (m *layerMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.perLayer
	ch <- m.switchesDesc
}

func (m *layerMetrics) collect(n *Node, ch chan<- prometheus.Metric) {
	var count [proto.MaxLayers]int
	for _, w := range n.workers {
		w.mu.Lock()
		for c := range w.consumers {
			if l := c.Layer(); c.sub != nil && c.producer.layered() && l >= 0 && l < len(count) {
				count[l]++
			}
		}
		w.mu.Unlock()
	}
	for l, k := range count {
		ch <- prometheus.MustNewConstMetric(m.perLayer, prometheus.GaugeValue, float64(k), strconv.Itoa(l))
	}
	ch <- prometheus.MustNewConstMetric(m.switchesDesc, prometheus.CounterValue, float64(m.switches.Load()))
}
