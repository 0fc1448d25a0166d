package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/bots"
)

// result is the soak's outcome, printed and written as JSON.
type result struct {
	Started     time.Time     `json:"started"`
	ChurnS      float64       `json:"churn_s"`
	Rooms       int           `json:"rooms"`
	Subscribers int           `json:"subscribers_per_session"`
	HoldS       float64       `json:"hold_s"`
	MaxSlope    float64       `json:"max_slope_mib_per_h"`
	Slack       int           `json:"goroutine_slack"`
	WindowS     float64       `json:"slope_window_s"`
	Sessions    int           `json:"sessions"`
	SessionsOK  int           `json:"sessions_ok"`
	Joins       int           `json:"bot_joins"`
	Stalls      int           `json:"stalls"`
	Problems    []string      `json:"problems"`
	Nodes       []nodeVerdict `json:"nodes"`
	Samples     []Sample      `json:"samples"`
	Pass        bool          `json:"pass"`
	Why         []string      `json:"why,omitempty"`
}

// nodeVerdict is one node's figures against the pass criteria.
type nodeVerdict struct {
	Node               string  `json:"node"`
	BaselineGoroutines int     `json:"baseline_goroutines"`
	PeakGoroutines     int     `json:"peak_goroutines"`
	EndGoroutines      int     `json:"end_goroutines"`
	SettledAfterS      float64 `json:"settled_after_s"`
	HeapSlope          float64 `json:"heap_slope_mib_per_h"`
	RSSSlope           float64 `json:"rss_slope_mib_per_h"`
	HeapMiB            float64 `json:"heap_end_mib"`
	// HeapMetric names what the heap slope is of: heap_live (after a forced collection, with
	// --pprof) or heap_inuse_min.
	HeapMetric string `json:"heap_metric"`
	// LiveBaseMiB and LiveAfterMiB are the live heap before the churn and once it is over.
	LiveBaseMiB   float64  `json:"heap_live_baseline_mib,omitempty"`
	LiveAfterMiB  float64  `json:"heap_live_after_mib,omitempty"`
	RSSMiB        float64  `json:"rss_end_mib"`
	SlopePoints   int      `json:"slope_points"`
	Pass          bool     `json:"pass"`
	Why           []string `json:"why,omitempty"`
	GoroutineDump string   `json:"goroutine_dump,omitempty"`
}

func soak(ctx context.Context, o options) (*result, error) {
	res := &result{Started: time.Now().UTC(), Rooms: o.rooms, Subscribers: o.subs, HoldS: o.hold.Seconds(),
		MaxSlope: o.maxSlope, Slack: o.slack, WindowS: o.window.Seconds()}
	fmt.Fprintf(os.Stderr, "soak: starting %d nodes (logs in %s)\n", o.nodes, o.logDir)
	nodes, err := startCluster(clusterConfig{bin: o.bin, secret: o.secret, logDir: o.logDir, apiKey: o.keys.Key,
		apiSecret: o.keys.Secret, workers: o.workers, pprof: o.pprof}, o.nodes)
	if err != nil {
		return nil, err
	}
	defer stopCluster(nodes)
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.base
	}
	s := &sessions{o: o, urls: urls}

	// Warm-up: one session per room, so that what a node starts once (relay links, the
	// first room's pools) is in the baseline, then the baseline itself.
	fmt.Fprintln(os.Stderr, "soak: warm-up round")
	var wg sync.WaitGroup
	for r := 0; r < o.rooms; r++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx, fmt.Sprintf("warmup-%d", r), urls[r%len(urls)], o.warmupHold) }()
	}
	wg.Wait()
	start := time.Now()
	printHeader(os.Stdout)
	base := sampleFor(ctx, nodes, "baseline", start, o.baselineWindow, o.read, time.Now().Add(o.baselineWindow), o.pprof, nil, 0)
	res.Samples = append(res.Samples, base...)

	// Churn: each room runs session after session until the duration is over.
	fmt.Fprintf(os.Stderr, "soak: churn for %s: %d rooms, sessions of 1 publisher + %d subscribers held %s\n", o.duration, o.rooms, o.subs, o.hold)
	churnStart := time.Now()
	churnCtx, stopChurn := context.WithTimeout(ctx, o.duration)
	defer stopChurn()
	g := newGate()
	for r := 0; r < o.rooms; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; churnCtx.Err() == nil; i++ {
				g.enter()
				if churnCtx.Err() == nil {
					s.run(ctx, fmt.Sprintf("soak-%d-%d", r, i), urls[(r+i)%len(urls)], o.hold)
				}
				g.leave()
			}
		}()
	}
	churn := sampleFor(churnCtx, nodes, "churn", churnStart, o.period, o.read, churnStart.Add(o.duration), o.pprof, g, o.hold+time.Minute)
	res.Samples = append(res.Samples, churn...)
	wg.Wait() // the sessions under way finish
	churnEnd := time.Now()
	res.ChurnS = churnEnd.Sub(churnStart).Seconds()
	s.fill(res)

	// Settle: the goroutines must come back to the baseline.
	verdicts := make([]nodeVerdict, len(nodes))
	for i, nd := range nodes {
		verdicts[i] = nodeVerdict{Node: nd.id, BaselineGoroutines: last(base, nd.id).Goroutines, LiveBaseMiB: last(base, nd.id).LiveMiB}
		for _, sm := range churn {
			if sm.Node == nd.id && sm.Goroutines > verdicts[i].PeakGoroutines {
				verdicts[i].PeakGoroutines = sm.Goroutines
			}
		}
	}
	settled := settle(ctx, nodes, verdicts, o.slack, o.settle, o.read, churnEnd, o.pprof)
	res.Samples = append(res.Samples, settled...)

	// Slopes over the last window of the churn.
	from := churnEnd.Sub(churnStart).Minutes() - o.window.Minutes()
	for i := range verdicts {
		v := &verdicts[i]
		var x, heap, rss []float64
		for _, sm := range churn {
			if sm.Node == v.Node && sm.Minute >= from && sm.Reads > 0 {
				h, r := sm.HeapMiB, sm.RSSMiB
				if o.pprof {
					h, r = sm.LiveMiB, sm.QuietRSSMiB
				}
				if h == 0 || r == 0 { // no quiet reading this minute
					continue
				}
				x, heap, rss = append(x, sm.Minute/60), append(heap, h), append(rss, r)
			}
		}
		v.SlopePoints = len(x)
		v.HeapMetric = "heap_inuse_min"
		if o.pprof {
			v.HeapMetric = "heap_live"
		}
		var okH, okR bool
		v.HeapSlope, okH = slope(x, heap)
		v.RSSSlope, okR = slope(x, rss)
		if len(x) > 0 {
			v.HeapMiB, v.RSSMiB = heap[len(heap)-1], rss[len(rss)-1]
		}
		v.judge(o, okH && okR, !nodes[i].alive())
		if !v.Pass && o.pprof && nodes[i].alive() {
			if p, err := nodes[i].dumpGoroutines(o.logDir, "end"); err == nil {
				v.GoroutineDump = p
			} else {
				v.Why = append(v.Why, err.Error())
			}
		}
	}
	res.Nodes = verdicts
	res.Pass = true
	for _, v := range verdicts {
		if !v.Pass {
			res.Pass = false
			res.Why = append(res.Why, v.Node+": "+strings.Join(v.Why, "; "))
		}
	}
	if res.Sessions == 0 || float64(res.SessionsOK) < o.minOK*float64(res.Sessions) {
		res.Pass = false
		res.Why = append(res.Why, fmt.Sprintf("only %d of %d sessions fully joined and received every track (want %.0f%%)",
			res.SessionsOK, res.Sessions, 100*o.minOK))
	}
	if ctx.Err() != nil {
		res.Pass = false
		res.Why = append(res.Why, "interrupted")
	}
	return res, nil
}

// judge applies the pass criteria to one node.
func (v *nodeVerdict) judge(o options, slopesOK, dead bool) {
	v.Pass = true
	fail := func(f string, a ...any) { v.Pass = false; v.Why = append(v.Why, fmt.Sprintf(f, a...)) }
	if dead {
		fail("the node process died")
	}
	if v.EndGoroutines > v.BaselineGoroutines+o.slack {
		fail("goroutines %d after the churn, baseline %d (+%d allowed)", v.EndGoroutines, v.BaselineGoroutines, o.slack)
	}
	if !slopesOK {
		fail("only %d samples in the last %s of the churn: too few for a slope", v.SlopePoints, o.window)
		return
	}
	if v.HeapSlope > o.maxSlope {
		fail("heap grows %.1f MiB/h over the last %s (limit %.1f)", v.HeapSlope, o.window, o.maxSlope)
	}
	if v.RSSSlope > o.maxSlope {
		fail("RSS grows %.1f MiB/h over the last %s (limit %.1f)", v.RSSSlope, o.window, o.maxSlope)
	}
}

// sampleFor reads every node each read interval until end (or ctx ends) and returns one
// Sample per node per period, printing each row as it is made.
//
// With live, each period ends with the quiet reading: g (when not nil) is closed and the
// sessions under way end (up to quietWait), then each node's live heap (after a forced
// collection) and resident set are read, and the gate opens again.
func sampleFor(ctx context.Context, nodes []*node, phase string, t0 time.Time, period, read time.Duration, end time.Time, live bool,
	g *gate, quietWait time.Duration) []Sample {
	var out []Sample
	for periodStart := time.Now(); periodStart.Before(end) && ctx.Err() == nil; periodStart = time.Now() {
		periodEnd := periodStart.Add(period)
		if periodEnd.After(end) {
			periodEnd = end
		}
		accs := make([]accumulator, len(nodes))
		for {
			for i, nd := range nodes {
				if m, err := bots.ScrapeMetrics(nd.base); err == nil {
					accs[i].add(m)
				} else {
					fmt.Fprintf(os.Stderr, "soak: %s: %v\n", nd.id, err)
				}
			}
			wait := read
			if rest := time.Until(periodEnd); rest < wait {
				wait = rest
			}
			if wait <= 0 {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
				continue
			}
			break
		}
		quiet := g == nil || !live || g.quiesce(quietWait)
		if live && quiet {
			waitIdle(nodes, 15*time.Second) // the nodes close what the bots left
		}
		for i, nd := range nodes {
			sm := accs[i].sample(nd.id, phase, time.Since(t0).Minutes())
			if phase == "baseline" {
				sm.Minute = 0
			}
			if live && quiet {
				sm.LiveMiB, sm.QuietRSSMiB, sm.QuietGoroutines = readQuiet(nd)
			}
			out = append(out, sm)
			printRow(os.Stdout, sm)
		}
		if g != nil {
			g.open()
		}
	}
	return out
}

// settle reads the nodes until each has its goroutines within slack of its baseline on two
// reads in a row, or the timeout passes; it records the end counts in verdicts.
func settle(ctx context.Context, nodes []*node, verdicts []nodeVerdict, slack int, timeout, read time.Duration, churnEnd time.Time, live bool) []Sample {
	deadline := time.Now().Add(timeout)
	streak := make([]int, len(nodes))
	accs := make([]accumulator, len(nodes))
	for {
		done := true
		for i, nd := range nodes {
			m, err := bots.ScrapeMetrics(nd.base)
			if err != nil {
				done = false
				continue
			}
			accs[i].add(m)
			verdicts[i].EndGoroutines = int(m[mGoroutines])
			if verdicts[i].EndGoroutines <= verdicts[i].BaselineGoroutines+slack {
				if streak[i]++; streak[i] == 2 {
					verdicts[i].SettledAfterS = time.Since(churnEnd).Seconds()
				}
			} else {
				streak[i], verdicts[i].SettledAfterS = 0, 0
			}
			if streak[i] < 2 {
				done = false
			}
		}
		if done || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(read)
	}
	var out []Sample
	for i, nd := range nodes {
		sm := accs[i].sample(nd.id, "settle", 0)
		sm.Minute = time.Since(churnEnd).Minutes()
		if live {
			sm.LiveMiB, sm.QuietRSSMiB, sm.QuietGoroutines = readQuiet(nd)
			verdicts[i].LiveAfterMiB = sm.LiveMiB
		}
		out = append(out, sm)
		printRow(os.Stdout, sm)
	}
	return out
}

// waitIdle waits until no node holds a participant or a relay pipe, or timeout.
func waitIdle(nodes []*node, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		idle := true
		for _, nd := range nodes {
			m, err := bots.ScrapeMetrics(nd.base)
			if err != nil || m["cascade_participants"] > 0 || m["cascade_relay_pipes"] > 0 || m["cascade_rooms"] > 0 {
				idle = false
			}
		}
		if idle {
			return
		}
	}
}

// readQuiet is the node's live heap and resident set in MiB (0 when they cannot be read).
func readQuiet(nd *node) (live, rss float64, goroutines int) {
	m, err := liveHeap(nd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %s: %v\n", nd.id, err)
		return 0, 0, 0
	}
	return m[mHeapAlloc] / (1 << 20), m[mRSS] / (1 << 20), int(m[mGoroutines])
}

func last(samples []Sample, node string) Sample {
	var s Sample
	for _, sm := range samples {
		if sm.Node == node {
			s = sm
		}
	}
	return s
}

// sessions runs the bots' sessions and counts their outcomes.
type sessions struct {
	o    options
	urls []string

	mu       sync.Mutex
	n, ok    int
	joins    int
	stalls   int
	problems []string
}

// run is one session: a publisher (video and audio) on pubURL and subscribers spread over
// every node, held for hold once all joined, then all leave.
func (s *sessions) run(ctx context.Context, room, pubURL string, hold time.Duration) {
	rep, err := bots.Run(ctx, bots.Options{URLs: s.urls, PublishURL: pubURL, Room: room, Publishers: 1,
		Subscribers: s.o.subs, Duration: hold, Rate: 10, Video: true, Audio: true, Keys: s.o.keys,
		LoopbackOnly: true, JoinTimeout: 20 * time.Second, NoRedirect: true})
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(room, "warmup") {
		return
	}
	s.n++
	switch {
	case err != nil:
		s.problem(room + ": " + err.Error())
	case !rep.OK():
		s.joins += rep.Joined
		s.stalls += rep.Stalls
		s.problem(room + ": " + strings.Join(rep.Problems(), "; ") + " " + strings.Join(rep.Errors, "; "))
	default:
		s.ok++
		s.joins += rep.Joined
		s.stalls += rep.Stalls
	}
}

func (s *sessions) problem(p string) {
	fmt.Fprintln(os.Stderr, "soak: session", p)
	if len(s.problems) < 20 {
		s.problems = append(s.problems, p)
	}
}

func (s *sessions) fill(res *result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Sessions, res.SessionsOK, res.Joins, res.Stalls, res.Problems = s.n, s.ok, s.joins, s.stalls, s.problems
}

func printHeader(w io.Writer) {
	fmt.Fprintf(w, "%-8s %8s %-8s %10s %10s %10s %8s %10s %10s %10s\n", "phase", "minute", "node", "goroutines", "heap MiB", "goal MiB", "RSS MiB",
		"quiet live", "quiet RSS", "quiet gor.")
}

func printRow(w io.Writer, s Sample) {
	fmt.Fprintf(w, "%-8s %8.1f %-8s %10d %10.1f %10.1f %8.1f %10.1f %10.1f %10d\n", s.Phase, s.Minute, s.Node, s.Goroutines, s.HeapMiB, s.HeapGoalMiB, s.RSSMiB,
		s.LiveMiB, s.QuietRSSMiB, s.QuietGoroutines)
}

// print writes the verdict as a Markdown table (for BENCHMARKS.md).
func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "\nchurn %s: %d sessions (%d fully OK), %d bot joins, %d stalls\n\n", time.Duration(r.ChurnS*float64(time.Second)).Round(time.Second),
		r.Sessions, r.SessionsOK, r.Joins, r.Stalls)
	fmt.Fprintf(w, "| node | goroutines baseline / peak / after | back after | live heap baseline / after (MiB) | heap (MiB, end) | heap slope (MiB/h) | RSS (MiB, end) | RSS slope (MiB/h) | verdict |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, v := range r.Nodes {
		verdict := "pass"
		if !v.Pass {
			verdict = "FAIL: " + strings.Join(v.Why, "; ")
		}
		back := fmt.Sprintf("%.0f s", v.SettledAfterS)
		if v.EndGoroutines > v.BaselineGoroutines+r.Slack {
			back = "no"
		}
		fmt.Fprintf(w, "| %s | %d / %d / %d | %s | %.1f / %.1f | %.1f | %+.2f | %.1f | %+.2f | %s |\n", v.Node, v.BaselineGoroutines, v.PeakGoroutines,
			v.EndGoroutines, back, v.LiveBaseMiB, v.LiveAfterMiB, v.HeapMiB, v.HeapSlope, v.RSSMiB, v.RSSSlope, verdict)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(w, "- session:", p)
	}
	for _, y := range r.Why {
		fmt.Fprintln(w, "- FAIL:", y)
	}
}
