package bots

import (
	"strings"
	"testing"
	"time"
)

const sec = int64(time.Second)

// feed records packets every step from a to b (unix nanos, exclusive of b).
func feed(g *trackGaps, a, b, step int64) {
	for t := a; t < b; t += step {
		g.packet(t)
	}
}

func TestTrackGapsStalls(t *testing.T) {
	var g trackGaps
	feed(&g, 10*sec, 12*sec, sec/50)       // 20 ms audio
	feed(&g, 15*sec, 20*sec, sec/50)       // after a 3 s hole
	feed(&g, 20*sec+sec/2, 21*sec, sec/50) // a 0.52 s hole: not a stall
	end := 24 * sec                        // and silent for ~3 s at the end
	got := g.stalls(end, span{0, end})
	if len(got) != 2 {
		t.Fatalf("stalls %v, want the 3 s hole and the trailing silence", got)
	}
	if got[0].from != 12*sec-sec/50 || got[0].to != 15*sec {
		t.Errorf("first stall %v", got[0])
	}
	if got[1].to != end || got[1].len() < 3*time.Second-50*time.Millisecond {
		t.Errorf("trailing stall %v", got[1])
	}
	if g.maxGap < 3*time.Second || g.maxGap > 3*time.Second+50*time.Millisecond {
		t.Errorf("longest gap %v", g.maxGap)
	}
	// The producer stopped sending at 21.5 s: the trailing silence is no stall.
	if got := g.stalls(end, span{0, 21*sec + sec/2}); len(got) != 1 {
		t.Errorf("stalls with the producer gone: %v, want only the first", got)
	}
	// The producer went live at 14.5 s: only 0.5 s of the first hole counts, so no stall.
	if got := g.stalls(end, span{14*sec + sec/2, end}); len(got) != 1 || got[0].to != end {
		t.Errorf("stalls with a late producer: %v, want only the trailing one", got)
	}
	// Recording the trailing silence must not write into the recorded gaps.
	if len(g.gaps) != 1 {
		t.Errorf("gaps changed: %v", g.gaps)
	}
}

func TestMergeSpans(t *testing.T) {
	got := mergeSpans([]span{{5, 9}, {1, 3}, {2, 4}, {9, 10}, {12, 13}})
	want := []span{{1, 4}, {5, 10}, {12, 13}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if mergeSpans(nil) != nil {
		t.Fatal("merge of nothing")
	}
}

// TestReportStalls: a subscriber that stops receiving is in the report (counts, per-second
// series, share of subscriber-seconds, per node) and fails the run past MaxStall; a healthy
// one is not.
func TestReportStalls(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(s float64) int64 { return start.UnixNano() + int64(s*float64(time.Second)) }
	end := start.Add(10 * time.Second)
	r := &run{o: Options{URLs: []string{"ws://a/ws", "ws://b/ws"}, Publishers: 1, Subscribers: 2, Rooms: 1,
		Video: true, MaxStall: 2 * time.Second}, start: start, pubs: 1}
	newSub := func(name, url string, from, to float64, resume float64) *subscriber {
		s := &subscriber{name: name, url: url, run: r, start: start, joinedAt: start, tracks: map[string]*trackStats{}}
		s.joined.Store(true)
		s.firstAt.Store(at(from))
		ts := &trackStats{}
		feed(&ts.gaps, at(from), at(to), sec/30)
		if resume > 0 {
			feed(&ts.gaps, at(resume), end.UnixNano(), sec/30)
		}
		s.tracks["video"] = ts
		return s
	}
	healthy := newSub("sub-0", "ws://a/ws", 1, 10, 0)
	// Receives from 1 s to 4 s, nothing until 7.5 s: a 3.5 s stall, recovered.
	cut := newSub("sub-1", "ws://b/ws", 1, 4, 7.5)
	r.subs = []*subscriber{healthy, cut}
	rep := r.report(end)

	if rep.Stalls != 1 || rep.StalledSubscribers != 1 {
		t.Fatalf("stalls %d in %d subscribers, want 1 in 1", rep.Stalls, rep.StalledSubscribers)
	}
	if rep.LongestStallMs < 3400 || rep.LongestStallMs > 3600 {
		t.Errorf("longest stall %.0f ms, want ~3500", rep.LongestStallMs)
	}
	// 3.5 s of 18 subscriber-seconds (9 s each).
	if rep.StalledPct < 19 || rep.StalledPct > 20 {
		t.Errorf("stalled %.2f %%, want ~19.4", rep.StalledPct)
	}
	if rep.OK() || len(rep.OverMaxStall) != 1 || !strings.Contains(rep.OverMaxStall[0], "sub-1 on ws://b/ws") ||
		!strings.Contains(rep.OverMaxStall[0], "from t=4.0 s (recovered)") {
		t.Fatalf("over max stall %q, ok %v", rep.OverMaxStall, rep.OK())
	}
	b := rep.Bots[1]
	if len(b.Stalls) != 1 || !b.Stalls[0].Recovered || b.LongestGapMs < 3400 || b.StalledMs < 3400 {
		t.Errorf("bot %+v", b)
	}
	if len(rep.Bots[0].Stalls) != 0 || rep.Bots[0].LongestGapMs > 100 {
		t.Errorf("healthy bot %+v", rep.Bots[0])
	}
	// Seconds 4..7 had the stalled subscriber; 0..3 and 8.. had none.
	for _, s := range rep.Timeline {
		want := 0
		if s.T >= 3 && s.T <= 7 {
			want = 1
		}
		if s.Stalled != want {
			t.Errorf("second %v: %d stalled, want %d", s.T, s.Stalled, want)
		}
	}
	if len(rep.Nodes) != 2 || rep.Nodes[0].Stalls != 0 || rep.Nodes[1].Stalls != 1 || rep.Nodes[1].StalledPct < 38 {
		t.Errorf("nodes %+v", rep.Nodes)
	}
	if p := strings.Join(rep.Problems(), "\n"); !strings.Contains(p, "1 stalls longer than --max-stall 2s") {
		t.Errorf("problems %q", p)
	}

	// Not recovered: silent from 4 s to the end.
	r.subs = []*subscriber{healthy, newSub("sub-1", "ws://b/ws", 1, 4, 0)}
	rep = r.report(end)
	if len(rep.OverMaxStall) != 1 || !strings.Contains(rep.OverMaxStall[0], "not recovered") {
		t.Fatalf("over max stall %q", rep.OverMaxStall)
	}
	// Off: a stall that recovered is reported, but the run is fine; one that never did fails
	// it all the same (issue 13: a viewer that stops receiving is never a 0 % loss run).
	r.o.MaxStall = 0
	if rep = r.report(end); rep.OK() || rep.Stalls != 1 || len(rep.NotRecovered) != 1 ||
		!strings.Contains(rep.NotRecovered[0], "sub-1 on ws://b/ws") {
		t.Fatalf("with --max-stall 0, not recovered: ok %v, stalls %d, not recovered %q", rep.OK(), rep.Stalls, rep.NotRecovered)
	}
	if p := strings.Join(rep.Problems(), "\n"); !strings.Contains(p, "1 subscribers never received media again") {
		t.Errorf("problems %q", p)
	}
	r.subs = []*subscriber{healthy, cut}
	if rep = r.report(end); !rep.OK() || rep.Stalls != 1 {
		t.Fatalf("with --max-stall 0, recovered: ok %v, stalls %d, problems %q", rep.OK(), rep.Stalls, rep.Problems())
	}
}

// TestVideoClipKeyframes: the clip has a keyframe every second (30 frames), and a keyframe
// request jumps to the next one, wrapping around the loop.
func TestVideoClipKeyframes(t *testing.T) {
	frames, err := videoClip()
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for i, f := range frames {
		if f.key {
			if last >= 0 && i-last > videoFPS {
				t.Errorf("keyframes at %d and %d: more than a second apart", last, i)
			}
			last = i
		}
	}
	if gap := len(frames) - last; gap > videoFPS {
		t.Errorf("last keyframe at %d of %d: the loop goes over a second without one", last, len(frames))
	}
	for _, c := range []struct{ from, want int }{{0, 0}, {1, 30}, {29, 30}, {30, 30}, {len(frames) - 1, 0}} {
		if got := nextKeyframe(frames, c.from); got != c.want {
			t.Errorf("next keyframe from %d: %d, want %d", c.from, got, c.want)
		}
	}
}
