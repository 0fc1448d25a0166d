package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
)

var (
	labN       = flag.Int("lab.n", 0, "BenchmarkLabFamilies: subscribers per run (0: skip the benchmark)")
	labWindow  = flag.Duration("lab.window", 15*time.Second, "BenchmarkLabFamilies: steady measurement window per run")
	labWarmup  = flag.Duration("lab.warmup", 3*time.Second, "BenchmarkLabFamilies: wait after every subscriber joined before measuring")
	labRounds  = flag.Int("lab.rounds", 4, "BenchmarkLabFamilies: rounds, each one IPv4 run and one IPv6 run (the order alternates)")
	labRate    = flag.Float64("lab.rate", 25, "BenchmarkLabFamilies: bot joins per second")
	labWorkers = flag.Int("lab.workers", runtime.NumCPU(), "BenchmarkLabFamilies: node workers")
)

// labFamily is one address family a run of BenchmarkLabFamilies uses end to end: the bots'
// signaling URL and their only candidate network.
type labFamily struct {
	name    string
	network string // the bots' --networks
	addr    func(*harness.Host) string
}

// labResult is one run of BenchmarkLabFamilies.
type labResult struct {
	family      string
	round       int
	cores       float64 // node CPU
	pps         float64 // forwarded by the node
	usPerPacket float64
	botsCores   float64
	rep         bots.Report
}

// BenchmarkLabFamilies is the 1 -> N bench over IPv4 and over IPv6, in one run: in the bad-day
// lab, a `cascade node` process on one host (advertising both of its addresses), `cascade bots`
// (one VP8 publisher, N subscribers) on another, every bot on UDP of one family only (--networks
// udp4, or udp6 with the node's IPv6 URL). For each run: node CPU (utime+stime of its process,
// /proc) over a steady window, divided by the packets the node forwarded in that window (its
// forwarded-packets counter, read at both ends of the window). Rounds run IPv4 and IPv6 on the
// same node, in the order IPv4, IPv6, then IPv6, IPv4, and so on, so that a drift in the
// machine's load favours neither.
//
// It runs only when asked (-lab.n, as root: it needs the lab), and prints a Markdown table:
//
//	go test -run '^$' -bench LabFamilies -benchtime 1x -timeout 30m ./bots/bench -args -lab.n 100
//
// It asserts nothing about speed: a run fails only when the bots or the node fail, or a
// transport takes another path than the family measured.
func BenchmarkLabFamilies(b *testing.B) {
	if *labN <= 0 {
		b.Skip("SKIPPED: the IPv4 vs IPv6 lab benchmark runs only with -args -lab.n N (task bench:ipv6)")
	}
	lab := harness.New(b)
	nodeHost, viewer := lab.Host("node"), lab.Host("viewer")
	bin := harness.Cascade(b)
	node := nodeHost.Start(b, "node", bin, "node", "--http", ":7880", "--udp-port", "7882", "--tcp-port", "7882",
		"--public-ip", nodeHost.Addr().String()+","+nodeHost.Addr6().String(), "--workers", strconv.Itoa(*labWorkers),
		"--api-key", keys.Key, "--api-secret", keys.Secret, "--log-level", "warn")
	stats := func() (labStats, error) { return getLabStats(viewer, nodeHost) }
	harness.Eventually(b, 20*time.Second, func() error {
		if code, err := node.Wait(0); err == nil {
			b.Fatalf("node exited %d:\n%s", code, node.Output())
		}
		_, err := stats()
		return err
	})

	families := []labFamily{
		{"IPv4", "udp4", func(h *harness.Host) string { return h.Addr().String() }},
		{"IPv6", "udp6", func(h *harness.Host) string { return h.Addr6().String() }},
	}
	var rs []labResult
	for round := 1; round <= *labRounds; round++ {
		order := families
		if round%2 == 0 { // IPv4, IPv6, IPv6, IPv4, ...: a drift in the machine's load favours neither
			order = []labFamily{families[1], families[0]}
		}
		for _, f := range order {
			fmt.Fprintf(os.Stderr, "bench: lab, %s, round %d, N=%d ...\n", f.name, round, *labN)
			r := measureLab(b, bin, node.Pid(), nodeHost, viewer, f, round, stats)
			fmt.Fprintf(os.Stderr, "bench: lab, %s, round %d: %.2f us/packet, %.0f packets/s, %.2f cores\n", f.name, round, r.usPerPacket, r.pps, r.cores)
			rs = append(rs, r)
		}
	}
	v4, v6 := printLabTable(rs)
	b.ReportMetric(v4, "µs/pkt-ipv4")
	b.ReportMetric(v6, "µs/pkt-ipv6")
	b.ReportMetric(v6/v4, "ipv6/ipv4")
}

// measureLab runs the bots of one family against the node and measures the node over the window.
func measureLab(b *testing.B, bin string, nodePid int, nodeHost, viewer *harness.Host, f labFamily, round int,
	stats func() (labStats, error)) labResult {
	n := *labN
	// The previous run's bots are gone from the node.
	harness.Eventually(b, 20*time.Second, func() error {
		s, err := stats()
		if err == nil && (s.Consumers != 0 || s.transports() != 0) {
			err = fmt.Errorf("node still has %d consumers, %d transports of the previous run", s.Consumers, s.transports())
		}
		return err
	})
	out := filepath.Join(b.TempDir(), "report.json")
	room := fmt.Sprintf("bench-%s-%d", f.network, round)
	hold := *labWarmup + *labWindow + 5*time.Second
	botsProc := viewer.Start(b, room, bin, "bots", "--url", "ws://"+net.JoinHostPort(f.addr(nodeHost), "7880"),
		"--networks", f.network, "--room", room, "--publishers", "1", "--subscribers", strconv.Itoa(n), "--audio=false",
		"--duration", hold.String(), "--rate", fmt.Sprint(*labRate), "--join-timeout", "30s", "--max-stall", "0",
		"--no-redirect", "--api-key", keys.Key, "--api-secret", keys.Secret, "--quiet", "--json", out)
	joinBy := time.Duration(float64(n) / *labRate * float64(time.Second))
	harness.Eventually(b, joinBy+40*time.Second, func() error {
		if code, err := botsProc.Wait(0); err == nil {
			b.Fatalf("cascade bots exited %d before every subscriber joined:\n%s", code, botsProc.Output())
		}
		s, err := stats()
		if err == nil && s.Consumers < int64(n) {
			err = fmt.Errorf("%d of %d subscribers joined", s.Consumers, n)
		}
		return err
	})
	time.Sleep(*labWarmup)

	s0, err := stats()
	if err != nil {
		b.Fatal(err)
	}
	cpu0, bots0, t0 := ticks(b, nodePid), ticks(b, botsProc.Pid()), time.Now()
	time.Sleep(*labWindow)
	cpu1, bots1, t1 := ticks(b, nodePid), ticks(b, botsProc.Pid()), time.Now()
	s1, err := stats()
	if err != nil {
		b.Fatal(err)
	}
	// Every transport (the publisher's and each subscriber's) on UDP of the family measured.
	onPath := s1.UDP4
	if f.network == "udp6" {
		onPath = s1.UDP6
	}
	if onPath < int64(n)+1 || s1.transports() != onPath {
		b.Fatalf("%s run: transports udp4 %d udp6 %d tcp4 %d tcp6 %d; want all, at least %d, on %s", f.name, s1.UDP4, s1.UDP6, s1.TCP4, s1.TCP6, n+1, f.network)
	}

	code, err := botsProc.Wait(hold + time.Minute)
	if err != nil || code != 0 {
		b.Fatalf("cascade bots (%s): exit %d (%v):\n%s", f.name, code, err, botsProc.Output())
	}
	r := labResult{family: f.name, round: round}
	raw, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r.rep); err != nil {
		b.Fatal(err)
	}
	secs := t1.Sub(t0).Seconds()
	packets := s1.packets() - s0.packets()
	if packets == 0 {
		b.Fatalf("%s run: no packets forwarded in the window", f.name)
	}
	cpu := float64(cpu1-cpu0) / clockTicks
	r.cores = cpu / secs
	r.pps = float64(packets) / secs
	r.usPerPacket = cpu * 1e6 / float64(packets)
	r.botsCores = float64(bots1-bots0) / clockTicks / secs
	return r
}

// ticks is the CPU time of process pid, in clock ticks.
func ticks(b *testing.B, pid int) int64 {
	t, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// printLabTable prints the runs and the IPv6 / IPv4 ratio of CPU per forwarded packet, and
// returns the mean CPU per forwarded packet of each family (over its runs' packets).
func printLabTable(rs []labResult) (v4, v6 float64) {
	fmt.Printf("\n| round | family | node CPU (cores) | forwarded pkt/s | CPU µs / forwarded pkt | join p50 / p99 (ms) | latency p50 / p99 (ms) | loss | bots CPU (cores) |\n")
	fmt.Printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	cpu := map[string]float64{}
	pkts := map[string]float64{}
	for _, r := range rs {
		fmt.Printf("| %d | %s | %.2f | %.0f | %.2f | %.0f / %.0f | %.2f / %.2f | %.3f%% | %.2f |\n", r.round, r.family, r.cores, r.pps,
			r.usPerPacket, r.rep.JoinMs.P50, r.rep.JoinMs.P99, r.rep.LatencyMs.P50, r.rep.LatencyMs.P99, r.rep.LossPct, r.botsCores)
		cpu[r.family] += r.usPerPacket * r.pps
		pkts[r.family] += r.pps
	}
	v4, v6 = cpu["IPv4"]/pkts["IPv4"], cpu["IPv6"]/pkts["IPv6"]
	fmt.Printf("\nCPU per forwarded packet, all rounds: IPv4 %.2f µs, IPv6 %.2f µs: IPv6 / IPv4 = **%.3f**\n", v4, v6, v6/v4)
	for i := 0; i+1 < len(rs); i += 2 {
		a, b := rs[i], rs[i+1]
		if a.family == "IPv6" {
			a, b = b, a
		}
		fmt.Printf("- round %d (%s first): IPv6 / IPv4 = %.3f\n", a.round, rs[i].family, b.usPerPacket/a.usPerPacket)
	}
	return v4, v6
}

// labStats is what the benchmark reads of the node's /stats.
type labStats struct {
	Consumers int64 `json:"consumers"`
	Workers   []struct {
		Packets uint64 `json:"forwarded_packets"`
		UDP4    int64  `json:"transports_udp4"`
		UDP6    int64  `json:"transports_udp6"`
		TCP4    int64  `json:"transports_tcp4"`
		TCP6    int64  `json:"transports_tcp6"`
	} `json:"workers"`
	UDP4, UDP6, TCP4, TCP6 int64 `json:"-"` // over the workers
}

func (s labStats) transports() int64 { return s.UDP4 + s.UDP6 + s.TCP4 + s.TCP6 }

func (s labStats) packets() uint64 {
	var p uint64
	for _, w := range s.Workers {
		p += w.Packets
	}
	return p
}

// getLabStats reads the /stats of the node on host n (HTTP port 7880, its IPv4 address) over a
// connection made on from.
func getLabStats(from, n *harness.Host) (labStats, error) {
	var s labStats
	if err := from.GetJSONAuth("http://"+net.JoinHostPort(n.Addr().String(), "7880")+"/stats", adminToken(), &s); err != nil {
		return s, err
	}
	for _, w := range s.Workers {
		s.UDP4, s.UDP6, s.TCP4, s.TCP6 = s.UDP4+w.UDP4, s.UDP6+w.UDP6, s.TCP4+w.TCP4, s.TCP6+w.TCP6
	}
	return s, nil
}
