package node

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bandwidth estimation per subscriber (issue 15): each receive transport has a ccSender (the
// transport-wide sequence and the estimator, twcc.go) and an allocator (allocator.go) that
// gives its consumers the layers that fit the estimate. Options.NoBWE turns it all off: no
// stamping, no estimator, no allocator (today's path, the bench's baseline).

// startBWE equips a new receive transport with estimation, unless the node turned it off, and
// starts its allocator for participant p. The caller holds p.mu.
func (p *Participant) startBWE(t *transport) {
	if p.node.opts.NoBWE {
		return
	}
	t.cc = newCCSender(time.Now())
	t.worker.ccs.add(t.cc)
	a := newAllocator(p, t)
	t.goRead(func() {
		defer t.worker.ccs.remove(t.cc)
		a.run(t.done)
	})
}

// ccSet is a worker's live subscriber transports' estimators, for the estimate histogram, and
// the queue of their feedback to the worker goroutine.
type ccSet struct {
	mu       sync.Mutex
	set      map[*ccSender]struct{}
	feedback chan ccFeedback
	bufs     sync.Pool // *[rtcpBufferLen]byte: the feedbacks' copies (twcc.go)
}

// feedbackQueue is the depth of a worker's feedback queue.
const feedbackQueue = 256

func newCCSet() ccSet { return ccSet{feedback: make(chan ccFeedback, feedbackQueue)} }

func (s *ccSet) add(c *ccSender) {
	s.mu.Lock()
	if s.set == nil {
		s.set = make(map[*ccSender]struct{})
	}
	s.set[c] = struct{}{}
	s.mu.Unlock()
}

func (s *ccSet) remove(c *ccSender) {
	s.mu.Lock()
	delete(s.set, c)
	s.mu.Unlock()
}

// estimateBuckets are the bounds (bits/s) of the estimate histogram: a thumbnail's 100 kbit/s
// to a 10 Mbit/s link.
var estimateBuckets = []float64{100e3, 200e3, 300e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 10e6}

// bweMetrics exports the distribution of the subscribers' current estimates, built at scrape
// time from the estimators (the feedback path pays nothing for it).
type bweMetrics struct {
	n              *Node
	estimate, held *prometheus.Desc
}

func newBWEMetrics(n *Node) *bweMetrics {
	return &bweMetrics{n: n, estimate: prometheus.NewDesc("cascade_subscriber_estimate_bps",
		"Subscribers' estimated bandwidth (transport-wide congestion control), bits/s: one sample per "+
			"subscriber transport at scrape time.", nil, nil),
		held: prometheus.NewDesc("cascade_keyframe_requests_held_total", "Subscribers' keyframe requests not sent upstream because "+
			"retransmissions sent within the round trip may still repair the loss (a repeated request goes up), per worker.",
			[]string{"worker"}, nil)}
}

func (m *bweMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.estimate; ch <- m.held }

func (m *bweMetrics) Collect(ch chan<- prometheus.Metric) {
	buckets := make(map[float64]uint64, len(estimateBuckets))
	var count uint64
	var sum float64
	for _, w := range m.n.workers {
		w.ccs.mu.Lock()
		for c := range w.ccs.set {
			e := float64(c.estimate.Load())
			count++
			sum += e
			for _, b := range estimateBuckets {
				if e <= b {
					buckets[b]++
				}
			}
		}
		w.ccs.mu.Unlock()
	}
	ch <- prometheus.MustNewConstHistogram(m.estimate, count, sum, buckets)
	for i, w := range m.n.workers {
		ch <- prometheus.MustNewConstMetric(m.held, prometheus.CounterValue, float64(w.heldPLIs.Load()), strconv.Itoa(i))
	}
}

// Estimate is the participant's current bandwidth estimate as a subscriber, in bits/s (0: no
// receive transport, or estimation off).
func (p *Participant) Estimate() int64 {
	p.mu.Lock()
	t := p.recv
	p.mu.Unlock()
	if t == nil || t.cc == nil {
		return 0
	}
	return t.cc.estimate.Load()
}
