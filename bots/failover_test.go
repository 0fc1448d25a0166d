package bots_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// Failover: sessions that move when their node goes (issue 13). Three node processes in the
// lab (each on its own host, one NATS cluster through their embedded servers), `cascade bots`
// on a fourth host: one publisher on n0, the subscribers half on n1 and half on n2
// (--no-redirect, so that who sits where is known); under steady load, a fault; the bots'
// JSON report then says, per subscriber, when its media stopped and came back.

var (
	failoverSubs = flag.Int("failover.subs", 0, "BenchmarkFailover: subscribers (0: skip the benchmark)")
	failoverHold = flag.Duration("failover.hold", 25*time.Second, "BenchmarkFailover: how long the bots hold the load once all joined (the fault comes 3 s in)")
)

// failoverCase is one fault of the bench.
type failoverCase struct {
	name string
	// fault happens under steady load; affected tells whether a subscriber's media is cut by
	// it (by the node it was sent to).
	fault    func(t testing.TB, c *faultCluster)
	affected func(c *faultCluster, b bots.BotResult) bool
	// drain: measured by the longest media gap of each moved subscriber instead of the time
	// to its first packet after the fault.
	drain  bool
	target time.Duration // p99 target
}

func onEdge(i int) func(c *faultCluster, b bots.BotResult) bool {
	return func(c *faultCluster, b bots.BotResult) bool { return strings.HasPrefix(b.AskedURL, c.url(i)) }
}

var failoverCases = []failoverCase{
	{name: "edge SIGKILL", fault: func(_ testing.TB, c *faultCluster) { c.nodes[2].Kill() }, affected: onEdge(2), target: 3 * time.Second},
	{name: "publisher's node SIGKILL", fault: func(_ testing.TB, c *faultCluster) { c.nodes[0].Kill() },
		affected: func(*faultCluster, bots.BotResult) bool { return true }, target: 3 * time.Second},
	{name: "edge blackholed (nftables)", fault: func(_ testing.TB, c *faultCluster) { c.hosts[2].Cut() }, affected: onEdge(2), target: 5 * time.Second},
	{name: "edge drained", fault: func(t testing.TB, c *faultCluster) { c.drain(t, 2) }, affected: onEdge(2), drain: true, target: 300 * time.Millisecond},
}

// failoverResult is what one case measured.
type failoverResult struct {
	name      string
	drain     bool
	target    time.Duration
	affected  int
	recovered int
	moved     int       // subscribers whose session moved (resumed or migrated)
	fresh     int       // resumes refused, joined afresh (a new participant)
	migrated  int       // subscribers told to migrate that did (drain)
	ms        []float64 // fault to first packet (drain: longest media gap), per recovered subscriber
	ok        bool      // the bots' report: every subscriber got media again, every bot joined
	problems  []string
	errors    []string // the report's errors (a publisher that joined afresh is one)
}

// drain asks node i to drain (POST /admin/drain with an admin token), from the bots' host.
func (c *faultCluster) drain(t testing.TB, i int) {
	t.Helper()
	tok, err := keys.Mint(auth.Grant{Admin: true}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = c.bots.Do(func() error { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		}}}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/admin/drain", net.JoinHostPort(c.hosts[i].Addr().String(), fmt.Sprint(faultPort))), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("drain n%d: %v", i, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain n%d: %s", i, resp.Status)
	}
}

// runFailover runs one case: a cluster, the bots, the fault 3 s into the steady load.
func runFailover(t testing.TB, subs int, hold time.Duration, fc failoverCase) failoverResult {
	c := startFaultClusterWith(t, clusterOptions{embedded: true, args: []string{"--resume-grace", "10s"}})
	p, out := c.runBots(t, subs, hold, "--no-redirect", "--max-stall", "0")
	time.Sleep(3 * time.Second)
	at := time.Now()
	fc.fault(t, c)
	if _, err := p.Wait(hold + 90*time.Second); err != nil {
		t.Fatalf("bots: %v\n%s", err, p.Output())
	}
	rep := readReport(t, out)
	res := failoverResult{name: fc.name, drain: fc.drain, target: fc.target, ok: rep.OK(), problems: rep.Problems(), errors: rep.Errors}
	for _, b := range rep.Bots {
		if !b.Joined || !fc.affected(c, b) {
			continue
		}
		res.affected++
		if len(b.Resumes) > 0 {
			res.moved++
		}
		migrated := false
		for _, r := range b.Resumes {
			if r.Fresh {
				res.fresh++
			}
			migrated = migrated || r.Migrated
		}
		if migrated {
			res.migrated++
		}
		for _, r := range b.Resumes {
			if subs > 10 { // the bench: the table says it
				break
			}
			t.Logf("%s: lost %+d ms, resumed %+d ms, first packet %+d ms, %d attempts, migrated %v", b.Name,
				r.LostAtMs-at.UnixMilli(), r.ResumedAtMs-at.UnixMilli(), r.FirstPacketAtMs-at.UnixMilli(), r.Attempts, r.Migrated)
		}
		for _, g := range b.TrackGaps {
			if g.ToMs > at.UnixMilli() && subs <= 10 {
				t.Logf("%s: a track silent %+d..%+d ms", b.Name, g.FromMs-at.UnixMilli(), g.ToMs-at.UnixMilli())
			}
		}
		if fc.drain {
			if b.SessionLost == "" && !silentAtEnd(b) {
				res.recovered++
				res.ms = append(res.ms, gapAfter(b, at))
			}
			continue
		}
		if d, ok := backAfter(b, at); ok {
			res.recovered++
			res.ms = append(res.ms, float64(d)/1e6)
		}
	}
	return res
}

// backAfter is how long after at subscriber b received media again: the end of its silence
// that began around at (its last packet came at most a second after the fault), 0 if its media
// never stopped for longer than bots.SilenceMin; false if it never came back.
func backAfter(b bots.BotResult, at time.Time) (time.Duration, bool) {
	if b.SessionLost != "" {
		return 0, false
	}
	ms := at.UnixMilli()
	for _, s := range b.Silences {
		if s.ToMs > ms && s.FromMs <= ms+1000 {
			if !s.Recovered {
				return 0, false
			}
			return time.Duration(s.ToMs-ms) * time.Millisecond, true
		}
	}
	return 0, true
}

// gapAfter is the longest time one of b's tracks went without a packet, of the silences that
// ended after at (ms); bots.SilenceMin, an upper bound, when none was longer.
func gapAfter(b bots.BotResult, at time.Time) float64 {
	longest := float64(bots.SilenceMin / time.Millisecond)
	for _, g := range b.TrackGaps {
		if g.ToMs > at.UnixMilli() {
			longest = max(longest, float64(g.ToMs-g.FromMs))
		}
	}
	return longest
}

func silentAtEnd(b bots.BotResult) bool {
	n := len(b.Silences)
	return n > 0 && !b.Silences[n-1].Recovered
}

// pcts are the p50, p99 and max of ms.
func pcts(ms []float64) (p50, p99, mx float64) {
	if len(ms) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, max(0, int(q*float64(len(s))+0.5)-1))] }
	return at(0.5), at(0.99), s[len(s)-1]
}

func (r failoverResult) row() string {
	p50, p99, mx := pcts(r.ms)
	share := 0.0
	if r.affected > 0 {
		share = 100 * float64(r.recovered) / float64(r.affected)
	}
	what := "fault → first packet"
	if r.drain {
		what = "longest media gap"
	}
	met := "met"
	if share < 100 || p99 > float64(r.target/time.Millisecond) {
		met = "**missed**"
	}
	return fmt.Sprintf("| %s | %d | %d (%.0f %%) | %d (%d afresh) | %s: %.0f / %.0f / %.0f ms | p99 < %s, 100 %%: %s |",
		r.name, r.affected, r.recovered, share, r.moved, r.fresh, what, p50, p99, mx, r.target, met)
}

// BenchmarkFailover is `task bench:failover`: each case of failoverCases on a fresh cluster,
// then a Markdown table (BENCHMARKS.md, "Failover"). It runs only when asked (-failover.subs,
// as root: it needs the lab):
//
//	go test -run '^$' -bench Failover -benchtime 1x -timeout 30m ./bots -args -failover.subs 60
//
// It asserts no speed: a case fails only when its cluster or bots cannot run; what it measured,
// targets missed included, is in the table.
func BenchmarkFailover(b *testing.B) {
	if *failoverSubs <= 0 {
		b.Skip("SKIPPED: the failover benchmark runs only with -args -failover.subs N (task bench:failover)")
	}
	var rows []failoverResult
	for _, fc := range failoverCases {
		b.Run(strings.ReplaceAll(fc.name, " ", "_"), func(b *testing.B) {
			r := runFailover(b, *failoverSubs, *failoverHold, fc)
			rows = append(rows, r)
			b.Log(r.row())
			for _, p := range r.problems {
				b.Log("  ", p)
			}
		})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d subscribers (half on n1, half on n2), 1 publisher on n0, fault 3 s into the steady load\n\n", *failoverSubs)
	sb.WriteString("| fault | affected subscribers | media again | sessions moved | measured p50 / p99 / max | target |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		sb.WriteString(r.row() + "\n")
	}
	fmt.Print(sb.String())
}

// TestFailoverEdgeKilled: an edge node dies (SIGKILL) under load; each of its subscribers
// finds it gone and resumes on another node, and receives media again; the bots' report counts
// the resumes and passes.
func TestFailoverEdgeKilled(t *testing.T) {
	const subs = 6
	r := runFailover(t, subs, 14*time.Second, failoverCases[0])
	t.Log(r.row())
	if r.affected != subs/2 || r.recovered != r.affected || r.moved != r.affected || r.fresh != 0 {
		t.Fatalf("%d subscribers on the killed edge, %d got media again, %d resumed (%d afresh): want all %d, none afresh (%q)",
			r.affected, r.recovered, r.moved, r.fresh, subs/2, r.problems)
	}
	if !r.ok {
		t.Fatalf("the bots' report failed: %q", r.problems)
	}
}

// TestFailoverPublisherNodeKilled: the publisher's node dies (SIGKILL) under load; the
// publisher resumes on another node under its producer ids, and every subscriber, on both
// edges, receives its media again on the tracks it had (it never resumed itself).
func TestFailoverPublisherNodeKilled(t *testing.T) {
	const subs = 6
	r := runFailover(t, subs, 14*time.Second, failoverCases[1])
	t.Log(r.row())
	if r.affected != subs || r.recovered != r.affected || r.moved != 0 {
		t.Fatalf("%d subscribers, %d got media again, %d resumed: want all %d again, none resumed (%q)", r.affected, r.recovered, r.moved, subs, r.problems)
	}
	for _, e := range r.errors {
		if strings.Contains(e, "afresh") {
			t.Fatalf("the publisher lost its producers: %s", e)
		}
	}
	if !r.ok {
		t.Fatalf("the bots' report failed: %q", r.problems)
	}
}

// TestFailoverEdgeDrained: a drained edge tells its subscribers to migrate; each moves to
// another node make-before-break (a migrated resume) and its media goes on.
func TestFailoverEdgeDrained(t *testing.T) {
	const subs = 6
	r := runFailover(t, subs, 14*time.Second, failoverCases[3])
	t.Log(r.row())
	if r.affected != subs/2 || r.recovered != r.affected || r.migrated != r.affected || r.fresh != 0 {
		t.Fatalf("%d subscribers on the drained edge, %d with media to the end, %d migrated (%d afresh): want all %d, none afresh (%q)",
			r.affected, r.recovered, r.migrated, r.fresh, subs/2, r.problems)
	}
	if !r.ok {
		t.Fatalf("the bots' report failed: %q", r.problems)
	}
}
