package sim

import (
	"container/heap"
	"time"
)

// event is one thing that happens at a virtual time. Events at the same time run in the order
// they were scheduled (seq), so a run is deterministic.
type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

// queue is the simulator's only scheduler: every simulated node, link and viewer acts through
// events on it, on one goroutine; there is no goroutine or timer per node.
type queue struct {
	evs  evHeap
	seq  uint64
	now  time.Duration
	runs uint64
}

type evHeap []event

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *evHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// at schedules fn at virtual time t (now, if t is in the past).
func (q *queue) at(t time.Duration, fn func()) {
	if t < q.now {
		t = q.now
	}
	q.seq++
	heap.Push(&q.evs, event{at: t, seq: q.seq, fn: fn})
}

// after schedules fn d after now.
func (q *queue) after(d time.Duration, fn func()) { q.at(q.now+d, fn) }

// run runs events until the queue is empty or the next one is after end.
func (q *queue) run(end time.Duration) {
	for len(q.evs) > 0 && q.evs[0].at <= end {
		e := heap.Pop(&q.evs).(event)
		q.now = e.at
		q.runs++
		e.fn()
	}
	q.now = end
}
