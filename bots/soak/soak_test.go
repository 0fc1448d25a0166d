package main

import (
	"math"
	"testing"
	"time"
)

func TestSlope(t *testing.T) {
	x := []float64{0, 1, 2, 3, 4}
	y := []float64{10, 12, 14, 16, 18}
	if s, ok := slope(x, y); !ok || math.Abs(s-2) > 1e-9 {
		t.Fatalf("slope = %v, %v; want 2", s, ok)
	}
	if _, ok := slope(x[:2], y[:2]); ok {
		t.Fatal("a slope from two points")
	}
	if _, ok := slope([]float64{1, 1, 1}, []float64{1, 2, 3}); ok {
		t.Fatal("a slope with no spread in x")
	}
}

func TestJudge(t *testing.T) {
	o := options{slack: 10, maxSlope: 5, window: 10 * time.Minute}
	good := nodeVerdict{BaselineGoroutines: 100, EndGoroutines: 110, HeapSlope: 4.9, RSSSlope: -3}
	good.judge(o, true, false)
	if !good.Pass {
		t.Fatalf("a node within every bound failed: %v", good.Why)
	}
	for name, v := range map[string]nodeVerdict{
		"goroutines": {BaselineGoroutines: 100, EndGoroutines: 111},
		"heap":       {HeapSlope: 5.1},
		"rss":        {RSSSlope: 6},
	} {
		v.judge(o, true, false)
		if v.Pass {
			t.Errorf("%s: a leaking node passed", name)
		}
	}
	v := nodeVerdict{}
	if v.judge(o, false, false); v.Pass {
		t.Error("a node without enough samples passed")
	}
	v = nodeVerdict{}
	if v.judge(o, true, true); v.Pass {
		t.Error("a dead node passed")
	}
}

func TestAccumulatorTakesTheSmallestHeap(t *testing.T) {
	var a accumulator
	for _, h := range []float64{30 << 20, 12 << 20, 25 << 20} {
		a.add(map[string]float64{mHeapInuse: h, mRSS: 60 << 20, mGoroutines: 7})
	}
	s := a.sample("n", "churn", 1)
	if s.HeapMiB != 12 || s.RSSMiB != 60 || s.Goroutines != 7 || s.Reads != 3 {
		t.Fatalf("sample %+v", s)
	}
}
