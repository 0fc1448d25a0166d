package bwe

import "time"

// The queue gate: a second opinion on the delay detector's overuse. The trend detector reads a
// slope over a few dozen groups, and receive-side scheduling noise (a receiver under CPU load
// that timestamps arrivals when its read loop runs, not when the packet reached the socket:
// bursts of 5-30 ms, then a batch read at once) makes steep slopes that are not a queue. A
// queue that grows delays every packet: over a window of queueSpan, even the least delayed
// group is late against the path's base delay. Scheduling noise delays some packets and not
// the ones read just before the stall, so the window's least delay stays near the base.
//
// The estimator acts on the detector's overuse (decrease) or underuse (hold, the queue drains)
// only while this gate says a queue stands: the least delay of the last queueSpan exceeds the
// base delay (the least of the last baseBuckets*baseBucket) by queueMin.

const (
	queueSpan   = 150 * time.Millisecond // a queue must delay every group this long
	queueMin    = 8.0                    // ms: the least delay over queueSpan above the base that reads as a queue
	baseBucket  = time.Second
	baseBuckets = 10 // the base delay is the least over this many buckets
	recentCap   = 128
)

type delayPoint struct {
	rx    time.Duration // arrival of the group
	delay float64       // ms, one-way delay up to a constant (arrival minus send)
}

// queueGate keeps the recent groups' delays and the base delay.
type queueGate struct {
	recent [recentCap]delayPoint
	n      int
	base   [baseBuckets]float64
	bucket int64 // index of the current bucket (arrival / baseBucket)
	have   bool
}

// add records a group's send and arrival.
func (q *queueGate) add(sent, rx time.Duration) {
	d := float64(rx-sent) / float64(time.Millisecond)
	q.recent[q.n%recentCap] = delayPoint{rx, d}
	q.n++
	b := int64(rx / baseBucket)
	switch {
	case !q.have:
		q.have, q.bucket = true, b
		for i := range q.base {
			q.base[i] = d
		}
	case b > q.bucket:
		for k := q.bucket + 1; k <= b && k <= q.bucket+baseBuckets; k++ {
			q.base[k%baseBuckets] = d
		}
		q.bucket = b
	}
	i := q.bucket % baseBuckets
	q.base[i] = min(q.base[i], d)
}

// queue is how much the least delay over the last queueSpan exceeds the base delay, in ms
// (0 while the history is shorter than queueSpan).
func (q *queueGate) queue() float64 {
	if q.n == 0 {
		return 0
	}
	last := q.recent[(q.n-1)%recentCap]
	least, span := last.delay, time.Duration(0)
	for k := 1; k < min(q.n, recentCap); k++ {
		p := q.recent[(q.n-1-k)%recentCap]
		if last.rx-p.rx > queueSpan {
			span = queueSpan
			break
		}
		least = min(least, p.delay)
		span = last.rx - p.rx
	}
	if span < queueSpan {
		return 0
	}
	base := q.base[0]
	for _, b := range q.base[1:] {
		base = min(base, b)
	}
	return least - base
}
