package bots_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// The shaping test of issue 15 ("Done means", first item): a real bandwidth cap on a real
// path. One node on its own host; on host "pub" a `cascade bots --simulcast` process with the
// publisher (three layers: 160x90 ~110, 320x180 ~290, 640x360 ~1420 kbit/s, audio ~80 kbit/s)
// and an uncapped subscriber; on host "capped" a second process with one subscriber only. The
// capped host's path is limited with tbf on the node-side veth of its namespace (the switch
// port: what the node sends it queues there, 50 ms at most, then drops, as a router would), at
// 600 kbit/s: below the top layer, above the middle one with audio. Everything is judged from
// what the subscribers received (their reports: bytes, loss from sequence gaps, the gaps
// between packets, the size of the keyframes), not from the node's counters.

const (
	shapeCap    = 600_000 // bit/s
	shapeWarmup = 16 * time.Second
	shapeHold   = 20 * time.Second // capped
	shapeAfter  = 14 * time.Second // after the cap is lifted
	shapePort   = 7880
)

// TestShapingCapSubscriberPath: the capped subscriber has no stall over 1 s when the cap
// starts, is on a layer below the top within 3 s, uses at least half of the cap (the middle
// layer, not the lowest) with under 2 % loss from then until the cap is lifted, and is back on
// the top layer within 10 s of the lift; the uncapped subscriber of the same producer stays on
// the top layer throughout.
//
// A run that misses is made again only when the machine starved the lab while each missed
// criterion was judged (in the seconds that decided it, one of the lab's processes waited
// starvedMs or more for a CPU within one second: shaping_cpu_test.go): a receiver that does
// not get the CPU reads its socket late, a queue the node's estimator sees as the path's (on
// a loaded 2-core machine, now and then a subscriber left the top layer on an uncapped path
// that way). A miss on a machine that gave the lab its CPU then fails at once; so does a
// second miss.
func TestShapingCapSubscriberPath(t *testing.T) {
	var missed []string
	for attempt := 1; attempt <= 2; attempt++ {
		v := &verdict{}
		t.Run(fmt.Sprintf("run%d", attempt), func(t *testing.T) { shapingRun(t, v) })
		if t.Failed() {
			return // the lab or the bots failed, not the criteria
		}
		if !v.failed() {
			if attempt > 1 {
				t.Logf("run 1 missed: %s", missed[0])
			}
			return
		}
		missed = append(missed, v.String())
		t.Logf("run %d missed: %s (%s)", attempt, missed[len(missed)-1], v.starvedWhy())
		if v.starved < starvedMs {
			t.Errorf("run %d missed, and no process of the lab waited %d ms for a CPU in a second (%s): %s",
				attempt, starvedMs, v.starvedWhy(), missed[len(missed)-1])
			return
		}
	}
	t.Errorf("both runs missed the criteria:\n1: %s\n2: %s", missed[0], missed[1])
}

// starvedMs is the run-queue wait of one lab process within one second (ms, all its threads)
// that makes a missed run count as the machine's.
const starvedMs = 300

// verdict collects one shaping run's missed criteria, each with the time that decided it, and
// how starved the lab was then.
type verdict struct {
	misses   []miss
	from, to int64 // unix ms: the window of the criteria judged now (see judging)

	starved float64 // the least, over the misses, of the most ms a lab process waited for a CPU in one second of the miss's window
	who     string  // which miss, process, and second
}

type miss struct {
	msg      string
	from, to int64
}

// judging sets the window (unix ms) that decides the criteria checked next.
func (v *verdict) judging(from, to int64) { v.from, v.to = from, to }

func (v *verdict) String() string {
	msgs := make([]string, len(v.misses))
	for i, m := range v.misses {
		msgs[i] = m.msg
	}
	return strings.Join(msgs, "; ")
}

// starve measures, for each miss, the most a lab process waited for a CPU in one second of its
// window, and keeps the least of these: the run counts as starved only if every miss was.
func (v *verdict) starve(cpu *cpuWatch, capMs int64) {
	for i, m := range v.misses {
		ms, who, at := cpu.worst(m.from/1000, m.to/1000)
		if i == 0 || ms < v.starved {
			v.starved, v.who = ms, fmt.Sprintf("%q: %s, in second %+d of the cap", m.msg, who, at-capMs/1000)
		}
	}
}

func (v *verdict) starvedWhy() string {
	return fmt.Sprintf("the least starved miss: a lab process waited at most %.0f ms for a CPU in one second of its window, %s", v.starved, v.who)
}

func (v *verdict) Errorf(format string, args ...any) {
	v.misses = append(v.misses, miss{fmt.Sprintf(format, args...), v.from, v.to})
}
func (v *verdict) failed() bool { return len(v.misses) > 0 }

// shapingRun is one run of TestShapingCapSubscriberPath, its missed criteria in v.
func shapingRun(t *testing.T, v *verdict) {
	lab := harness.New(t)
	bin := harness.Cascade(t)
	nh, pub, capped := lab.Host("node"), lab.Host("pub"), lab.Host("capped")
	base := fmt.Sprintf("http://%s", net.JoinHostPort(nh.Addr().String(), fmt.Sprint(shapePort)))
	url := "ws://" + net.JoinHostPort(nh.Addr().String(), fmt.Sprint(shapePort))
	np := nh.Start(t, "node", bin, "node", "--node-id", "n", "--http", fmt.Sprintf(":%d", shapePort), "--udp-port", "7882",
		"--relay", ":7881", "--public-ip", nh.Addr().String(), "--workers", "1", "--api-key", keys.Key,
		"--api-secret", keys.Secret, "--log-level", "warn")
	consumers := func(want int64) {
		t.Helper()
		harness.Eventually(t, 30*time.Second, func() error {
			tok, err := keys.Mint(auth.Grant{Admin: true}, time.Minute)
			if err != nil {
				return err
			}
			var s nodeStats
			if err := pub.GetJSONAuth(base+"/stats", tok, &s); err != nil {
				return err
			}
			if s.Consumers < want {
				return fmt.Errorf("%d consumers, want %d", s.Consumers, want)
			}
			return nil
		})
	}
	consumers(0) // the node is up

	dir := t.TempDir()
	botArgs := func(run string, publishers int, hold time.Duration, out string) []string {
		return []string{"bots", "--url", url, "--room", "shaping", "--simulcast", "--publishers", fmt.Sprint(publishers),
			"--subscribers", "1", "--duration", hold.String(), "--rate", "20", "--max-stall", "0", "--run-id", run,
			"--api-key", keys.Key, "--api-secret", keys.Secret, "--quiet", "--json", out}
	}
	total := shapeWarmup + shapeHold + shapeAfter
	pubOut, capOut := filepath.Join(dir, "pub.json"), filepath.Join(dir, "capped.json")
	p1 := pub.Start(t, "bots-pub", bin, botArgs("pub", 1, total+12*time.Second, pubOut)...)
	consumers(2) // the uncapped subscriber receives audio and video
	p2 := capped.Start(t, "bots-capped", bin, botArgs("capped", 0, total+4*time.Second, capOut)...)
	consumers(4)
	cpu := watchCPU([]string{"node", "pub", "capped"}, []int{np.Pid(), p1.Pid(), p2.Pid()})
	defer cpu.stop()

	time.Sleep(shapeWarmup) // the capped subscriber climbs to the top layer, as any viewer
	capAt := time.Now()
	capped.Cap(0, shapeCap)
	time.Sleep(shapeHold)
	liftAt := time.Now()
	capped.Uncap()
	for _, p := range []*harness.Process{p2, p1} {
		if _, err := p.Wait(total + time.Minute); err != nil {
			t.Fatalf("bots did not end: %v\n%s", err, p.Output())
		}
	}
	pr, cr := readReport(t, pubOut), readReport(t, capOut)
	if t.Failed() {
		return
	}
	logOutput := func() { t.Logf("capped bots:\n%s\npublisher bots:\n%s", p2.Output(), p1.Output()) }
	cv, cm := subscriberVideo(t, cr)
	uv, _ := subscriberVideo(t, pr)
	if t.Failed() {
		logOutput()
		return
	}
	capMs, liftMs := capAt.UnixMilli(), liftAt.UnixMilli()
	defer func() { v.starve(cpu, capMs) }()
	t.Logf("cap at %.1f s, lifted at %.1f s of the capped run; capped: %s; uncapped: %s",
		float64(capMs-cr.StartUnixMs)/1000, float64(liftMs-cr.StartUnixMs)/1000, stripOf(cv), stripOf(uv))

	waits := func(rep *bots.Report) func(int) string {
		return func(s int) string { return cpu.at((rep.StartUnixMs + int64(s)*1000) / 1000) }
	}
	t.Logf("capped subscriber, second by second from 2 s before the cap (and the ms each process waited for a CPU):\n%s",
		secondsTable(cv, cm, second(cr, capMs)-2, second(cr, liftMs)+12, second(cr, capMs), waits(cr)))
	t.Logf("uncapped subscriber, second by second from 2 s before the cap:\n%s",
		secondsTable(uv, nil, second(pr, capMs)-2, second(pr, liftMs)+12, second(pr, capMs), waits(pr)))

	// The uncapped subscriber: on the top layer before the cap, and never below it after.
	v.judging(capMs-shapeWarmup.Milliseconds(), capMs)
	if w := widthAt(uv, capMs); w != 640 {
		v.Errorf("uncapped subscriber: %d wide when the cap started, want 640", w)
	}
	for _, c := range uv.Changes {
		if c.Source == "media" && c.AtMs > capMs && c.Width != 640 {
			v.judging(c.AtMs-3000, c.AtMs)
			v.Errorf("uncapped subscriber: went to %dx%d at %+.1f s of the cap", c.Width, c.Height, float64(c.AtMs-capMs)/1000)
		}
	}

	// The capped subscriber, before the cap: on the top layer (else the rest proves nothing).
	v.judging(capMs-shapeWarmup.Milliseconds(), capMs)
	if w := widthAt(cv, capMs); w != 640 {
		logOutput()
		v.Errorf("capped subscriber: %d wide when the cap started, want 640 (it never reached the top layer in %v)", w, shapeWarmup)
		return
	}
	capS, liftS := second(cr, capMs), second(cr, liftMs)
	// No stall over 1 s when the cap starts (its first seconds).
	var maxGap float64
	for s := capS; s <= capS+5 && s < len(cv.Seconds); s++ {
		maxGap = max(maxGap, cv.Seconds[s].MaxGapMs)
	}
	v.judging(capMs, capMs+6000)
	if maxGap > 1000 {
		v.Errorf("capped subscriber: %.0f ms without video in the first 5 s of the cap, want at most 1000", maxGap)
	}
	// A layer that fits, within 3 s, and kept until the lift.
	down := int64(-1)
	for _, c := range cv.Changes {
		if c.Source == "media" && c.AtMs > capMs && c.Width < 640 {
			down = c.AtMs
			break
		}
	}
	v.judging(capMs, max(down, capMs+3000))
	switch {
	case down < 0:
		v.judging(capMs, liftMs)
		v.Errorf("capped subscriber: never left the top layer under the cap")
	case down-capMs > 3000:
		v.Errorf("capped subscriber: left the top layer %.1f s after the cap started, want within 3 s", float64(down-capMs)/1000)
	}
	for _, c := range cv.Changes {
		if c.Source == "media" && c.AtMs > capMs+3000 && c.AtMs < liftMs && c.Width >= 640 {
			v.judging(c.AtMs-3000, c.AtMs)
			v.Errorf("capped subscriber: back on the top layer at %+.1f s of the cap, under the cap", float64(c.AtMs-capMs)/1000)
		}
	}
	// From 3 s after the cap to the lift (whole seconds): at least half the cap used, under 2 %
	// lost, and the middle layer (the lowest would use about a third of the cap).
	var kbit, pad, pkts, lost float64
	from, to := capS+4, liftS // capAt+3 s falls in second capS+3; liftS holds the lift
	onMiddle := 0
	for s := from; s < to && s < len(cm); s++ {
		kbit += cm[s].Kbps // media only: the node's padding probes are not a layer
		pad += cm[s].PadKbps
		pkts += float64(cm[s].Packets)
		lost += float64(cm[s].Lost)
		if s < len(cv.Seconds) && cv.Seconds[s].Width == 320 {
			onMiddle++
		}
	}
	v.judging(capMs+3000, liftMs)
	if n := float64(to - from); n < 10 {
		t.Fatalf("only %v whole seconds between the cap's 3 s and its lift", n)
	} else {
		used := kbit / n
		lossPct := 100 * lost / max(1, pkts+lost)
		t.Logf("capped subscriber from 3 s after the cap to the lift: %.0f kbit/s of media received (%.0f%% of the cap) and %.0f of padding, %.2f%% lost, %d of %d s on the middle layer",
			used, 100*used*1000/shapeCap, pad/n, lossPct, onMiddle, to-from)
		if used*1000 < shapeCap/2 {
			v.Errorf("capped subscriber: received %.0f kbit/s of media under a %d kbit/s cap, want at least half", used, shapeCap/1000)
		}
		if lossPct >= 2 {
			v.Errorf("capped subscriber: %.2f%% of packets lost under the cap, want under 2%%", lossPct)
		}
	}
	// Back on the top layer within 10 s of the lift.
	up := int64(-1)
	for _, c := range cv.Changes {
		if c.Source == "media" && c.AtMs > liftMs && c.Width == 640 {
			up = c.AtMs
			break
		}
	}
	v.judging(liftMs, liftMs+10_000)
	switch {
	case widthAt(cv, liftMs) == 640:
		// Never left it: the checks above failed already.
	case up < 0:
		v.Errorf("capped subscriber: not back on the top layer by the end (%v after the lift)", shapeAfter)
	case up-liftMs > 10_000:
		v.Errorf("capped subscriber: back on the top layer %.1f s after the lift, want within 10 s", float64(up-liftMs)/1000)
	default:
		t.Logf("capped subscriber: below the top layer %.1f s after the cap started, back on it %.1f s after the lift",
			float64(down-capMs)/1000, float64(up-liftMs)/1000)
	}
	if v.failed() {
		logOutput()
	}
}

// subscriberVideo is the one subscriber's video record and media seconds in rep.
func subscriberVideo(t *testing.T, rep *bots.Report) (bots.VideoResult, []bots.MediaSecond) {
	t.Helper()
	for _, b := range rep.Bots {
		if len(b.Video) == 1 {
			return b.Video[0], b.Media
		}
	}
	t.Errorf("run %s: no subscriber with one video record (joined %d, errors %v)", rep.RunID, rep.Joined, rep.Errors)
	return bots.VideoResult{}, nil
}

// widthAt is the width of the last keyframe received before unix ms at (0: none).
func widthAt(v bots.VideoResult, at int64) int {
	w := 0
	for _, c := range v.Changes {
		if c.Source == "media" && c.AtMs <= at {
			w = c.Width
		}
	}
	return w
}

// second is the second of rep's run that unix ms at falls in.
func second(rep *bots.Report, at int64) int { return int((at - rep.StartUnixMs) / 1000) }

// stripOf is the widths of v, second by second, in runs.
func stripOf(v bots.VideoResult) string {
	out, last, n := "", -1, 0
	for _, s := range v.Seconds {
		if s.Width != last && n > 0 {
			out += fmt.Sprintf("%d×%d ", last, n)
			n = 0
		}
		last = s.Width
		n++
	}
	if n > 0 {
		out += fmt.Sprintf("%d×%d", last, n)
	}
	return out
}

// secondsTable is v's seconds [from, to) as lines (the second relative to zero): width, video
// kbit/s, padding, packets lost (of all tracks, from m when given, else of the video) and the
// longest gap between video packets, then extra's column.
func secondsTable(v bots.VideoResult, m []bots.MediaSecond, from, to, zero int, extra func(int) string) string {
	var b strings.Builder
	for s := max(0, from); s < to && s < len(v.Seconds); s++ {
		x := v.Seconds[s]
		lost, pkts := x.Lost, x.Packets
		if s < len(m) {
			lost, pkts = m[s].Lost, m[s].Packets
		}
		fmt.Fprintf(&b, "%+3d s: %3d wide, %4.0f kbit/s video, %4.0f padding, %3d of %4d lost, %4.0f ms gap; %s\n",
			s-zero, x.Width, x.Kbps, x.PadKbps, lost, pkts+lost, x.MaxGapMs, extra(s))
	}
	return b.String()
}
