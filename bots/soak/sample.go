package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/cascade-sfu/cascade/bots"
)

// The /metrics series the soak samples (Prometheus' Go and process collectors).
const (
	mGoroutines = "go_goroutines"
	mHeapInuse  = "go_memstats_heap_inuse_bytes"
	mHeapGoal   = "go_memstats_next_gc_bytes"
	mHeapAlloc  = "go_memstats_heap_alloc_bytes"
	mRSS        = "process_resident_memory_bytes"
)

// liveHeap makes the node collect its garbage twice (Go's heap profile with gc=1, served with
// --pprof) and then reads its metrics: right after a full collection the allocated heap is
// what is live, without the collector's sawtooth.
func liveHeap(nd *node) (map[string]float64, error) {
	c := http.Client{Timeout: 30 * time.Second}
	for range 2 { // what sync.Pools hold survives one collection (their victim cache)
		resp, err := nd.get(c, "/debug/pprof/heap?gc=1")
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s/debug/pprof/heap: HTTP %d", nd.base, resp.StatusCode)
		}
	}
	return bots.ScrapeMetrics(nd.base)
}

// Sample is one node's figures over one sampling period (a minute by default). The node is
// read every few seconds within it: HeapMiB is the smallest heap in use seen (near the heap
// right after a collection rather than wherever the collector's sawtooth happened to be),
// RSSMiB the mean resident set, Goroutines the last count. With --pprof, the period ends with
// a quiet reading (no session under way: see gate): LiveMiB is the heap allocated right after
// a full collection forced then (what is live), QuietRSSMiB the resident set then.
type Sample struct {
	Node        string  `json:"node"`
	Minute      float64 `json:"minute"` // since the churn started
	Phase       string  `json:"phase"`  // baseline, churn, settle
	Goroutines  int     `json:"goroutines"`
	HeapMiB     float64 `json:"heap_inuse_min_mib"`
	HeapGoalMiB float64 `json:"heap_goal_mib"`
	LiveMiB     float64 `json:"heap_live_mib,omitempty"`
	QuietRSSMiB float64 `json:"rss_quiet_mib,omitempty"`
	// QuietGoroutines is the count at the quiet reading.
	QuietGoroutines int     `json:"goroutines_quiet,omitempty"`
	RSSMiB          float64 `json:"rss_mib"`
	Reads           int     `json:"reads"`
}

// accumulator gathers a node's reads within one period.
type accumulator struct {
	reads                 int
	goroutines            float64
	heapMin, goal, rssSum float64
}

func (a *accumulator) add(m map[string]float64) {
	if a.reads == 0 || m[mHeapInuse] < a.heapMin {
		a.heapMin = m[mHeapInuse]
	}
	a.reads++
	a.goroutines = m[mGoroutines]
	a.goal = m[mHeapGoal]
	a.rssSum += m[mRSS]
}

func (a *accumulator) sample(node, phase string, minute float64) Sample {
	const mib = 1 << 20
	s := Sample{Node: node, Minute: minute, Phase: phase, Reads: a.reads}
	if a.reads > 0 {
		s.Goroutines = int(a.goroutines)
		s.HeapMiB = a.heapMin / mib
		s.HeapGoalMiB = a.goal / mib
		s.RSSMiB = a.rssSum / float64(a.reads) / mib
	}
	return s
}

// slope is the least-squares slope of y over x (units of y per unit of x); ok is false with
// fewer than three points or no spread in x.
func slope(x, y []float64) (float64, bool) {
	n := float64(len(x))
	if len(x) < 3 || len(x) != len(y) {
		return 0, false
	}
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	mx, my := sx/n, sy/n
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	if sxx == 0 || math.IsNaN(sxy) {
		return 0, false
	}
	return sxy / sxx, true
}
