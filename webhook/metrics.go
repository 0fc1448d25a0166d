package webhook

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a Sender's counters to Prometheus, read at scrape time.
type Collector struct {
	s                                  *Sender
	events, deliveries, dropped, queue *prometheus.Desc
}

// NewCollector returns the collector of s.
func NewCollector(s *Sender) *Collector {
	return &Collector{s: s,
		events:     prometheus.NewDesc("cascade_webhook_events_total", "Webhook events this node sent, by event.", []string{"event"}, nil),
		deliveries: prometheus.NewDesc("cascade_webhook_deliveries_total", "Webhook delivery attempts, by result (ok: answered 2xx; retry: failed, tried again; failed: failed, the event's last attempt).", []string{"result"}, nil),
		dropped:    prometheus.NewDesc("cascade_webhook_dropped_total", "Webhook events given up for one URL, by reason (queue_full; expired: the retry window ended; shutdown: the node stopped first).", []string{"reason"}, nil),
		queue:      prometheus.NewDesc("cascade_webhook_queue_length", "Webhook events waiting to be delivered, over every URL.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.deliveries, c.dropped, c.queue} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	k := prometheus.CounterValue
	for _, n := range Names {
		ch <- prometheus.MustNewConstMetric(c.events, k, float64(st.Events[n]), n)
	}
	ch <- prometheus.MustNewConstMetric(c.deliveries, k, float64(st.OK), "ok")
	ch <- prometheus.MustNewConstMetric(c.deliveries, k, float64(st.Retry), "retry")
	ch <- prometheus.MustNewConstMetric(c.deliveries, k, float64(st.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(st.QueueFull), "queue_full")
	ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(st.Expired), "expired")
	ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(st.Shutdown), "shutdown")
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queued))
}
