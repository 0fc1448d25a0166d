// Command bench measures a node under 1 -> N load from the bots, against Cascade's forwarding
// and against the naive baseline (the textbook pion broadcast), in one run, and prints a
// Markdown table for BENCHMARKS.md. Usage (Taskfile: task bench):
//
//	go build -o bin/cascade ./cmd/cascade && go run ./bots/bench -cascade bin/cascade -n 50,100,200
//
// Node CPU is utime+stime of the node process from /proc over a steady window after every bot
// joined; forwarded packets are what the subscribers received in that window.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/pion/webrtc/v4"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux).
const clockTicks = 100

var keys = auth.Keys{Key: "bench", Secret: "bench-secret-0123456789abcdef"}

type result struct {
	Mode  string  `json:"mode"`
	N     int     `json:"subscribers"`
	Cores float64 `json:"node_cores"`
	PPS   float64 `json:"forwarded_pps"`
	// Kbps is what the subscribers received in the window, in all (RTP bytes): with simulcast
	// the layers differ in packet size, so CPU per forwarded packet alone misleads.
	Kbps        float64          `json:"forwarded_kbps"`
	USPerPacket float64          `json:"cpu_us_per_packet"`
	RSSPerSub   float64          `json:"rss_mib_per_subscriber"`
	BotsCores   float64          `json:"bots_cores"`
	Join        bots.Percentiles `json:"join_ms"`
	Latency     bots.Percentiles `json:"latency_ms"`
	LossPct     float64          `json:"loss_pct"`
	Joined      int              `json:"joined"`
	// TURNPPS is what the node's TURN server relayed to the subscribers per second in the
	// window (cascade-turn modes).
	TURNPPS float64 `json:"turn_relayed_pps,omitempty"`
	// Media is the node's simulcast and estimation metrics at the end of the window (simulcast
	// modes).
	Media *bots.MediaMetrics `json:"media,omitempty"`
}

func main() {
	bin := flag.String("cascade", "bin/cascade", "the cascade binary to run as the node")
	ns := flag.String("n", "50,100,200", "subscriber counts")
	window := flag.Duration("window", 20*time.Second, "steady measurement window")
	warmup := flag.Duration("warmup", 3*time.Second, "wait after the last join before measuring")
	rate := flag.Float64("rate", 25, "bot joins per second")
	workers := flag.Int("workers", runtime.NumCPU(), "node workers")
	modes := flag.String("modes", "cascade,naive,sendto,sendmmsg", "what to measure: cascade, cascade-nobwe (--bwe=false), cascade-tcp (subscribers over ICE-TCP), cascade-turn and cascade-turn-tcp (subscribers relay-only through the node's TURN server over UDP, over TCP), simulcast (a three-layer simulcast publisher, estimation on) and simulcast-nobwe (the same with --bwe=false), naive, and the kernel floor (sendto, sendmmsg)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	clusterN := flag.Int("cluster", 0, "instead: three nodes in a relay chain (fan-out 1), this many subscribers spread over them")
	receivers := flag.Int("receivers", 0, "internal: run as the floor's receiver process with this many sockets")
	flag.Parse()
	if *receivers > 0 {
		receive(*receivers)
		return
	}

	if *clusterN > 0 {
		hs, err := measureCluster(*bin, *clusterN, *workers, *rate, *warmup, *window)
		if err != nil {
			fatal(err)
		}
		printHops(os.Stdout, hs)
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(hs, "", "  ")
			if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
				fatal(err)
			}
		}
		return
	}
	var results []result
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("bad -n %q", s))
		}
		for _, mode := range strings.Split(*modes, ",") {
			fmt.Fprintf(os.Stderr, "bench: %s, N=%d ...\n", mode, n)
			r, err := measure(*bin, mode, n, *workers, *rate, *warmup, *window)
			if err != nil {
				fatal(fmt.Errorf("%s N=%d: %w", mode, n, err))
			}
			fmt.Fprintf(os.Stderr, "bench: %s, N=%d: %.2f us/packet, %.0f packets/s, %.2f cores", mode, n, r.USPerPacket, r.PPS, r.Cores)
			if r.TURNPPS > 0 {
				fmt.Fprintf(os.Stderr, ", TURN relayed %.0f packets/s to the subscribers", r.TURNPPS)
			}
			fmt.Fprintln(os.Stderr)
			results = append(results, r)
		}
	}
	printTable(os.Stdout, results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func measure(bin, mode string, n, workers int, rate float64, warmup, window time.Duration) (result, error) {
	if mode == "sendto" || mode == "sendmmsg" {
		return floor(mode, n, window)
	}
	res := result{Mode: mode, N: n}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	relayPort, err := freeUDPPort() // not the default :7881: another node on the machine may hold it
	if err != nil {
		return res, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	args := []string{"node", "--loopback-only", "--http", "127.0.0.1:" + strconv.Itoa(port), "--udp-port", "0", "--tcp-port", "0",
		"--relay", "127.0.0.1:" + strconv.Itoa(relayPort),
		"--nats-listen", "127.0.0.1:0", "--workers", strconv.Itoa(workers), "--log-level", "warn",
		"--api-key", keys.Key, "--api-secret", keys.Secret}
	var subNetworks []webrtc.NetworkType
	subRelay, simulcast := false, false
	switch mode {
	case "cascade":
	case "cascade-nobwe": // Cascade's path without bandwidth estimation (the stamping's baseline)
		args = append(args, "--bwe=false")
	case "simulcast": // a simulcast publisher; estimation and allocation on (the default)
		simulcast = true
	case "simulcast-nobwe": // the same, each consumer on the top layer without estimating
		simulcast = true
		args = append(args, "--bwe=false")
	case "cascade-tcp": // Cascade's path, every subscriber over ICE-TCP
		subNetworks = client.TCPOnly
	case "cascade-turn", "cascade-turn-tcp": // every subscriber relayed by the node's TURN server
		turnFlag, free := "--turn-udp-port", freeUDPPort
		if mode == "cascade-turn-tcp" {
			turnFlag, free = "--turn-tcp-port", freePort
		}
		turnPort, err := free()
		if err != nil {
			return res, err
		}
		args = append(args, turnFlag, strconv.Itoa(turnPort))
		subRelay = true
	case "naive":
		args = append(args, "--naive-baseline")
	default:
		return res, fmt.Errorf("unknown mode %q", mode)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	if err := bots.WaitOK(base+"/readyz", 15*time.Second); err != nil {
		return res, err
	}
	time.Sleep(time.Second)
	idleRSS, err := rss(pid)
	if err != nil {
		return res, err
	}

	start := time.Now()
	hold := warmup + window + 3*time.Second
	done := make(chan *bots.Report, 1)
	runErr := make(chan error, 1)
	go func() {
		rep, err := bots.Run(context.Background(), bots.Options{URLs: []string{base}, Room: "bench", Publishers: 1,
			Subscribers: n, Duration: hold, Rate: rate, Video: true, Simulcast: simulcast, Keys: keys, LoopbackOnly: true, JoinTimeout: 30 * time.Second,
			SubscriberNetworks: subNetworks, SubscriberRelay: subRelay})
		if err != nil {
			runErr <- err
			return
		}
		done <- rep
	}()
	// Every subscriber consumes the one video producer.
	deadline := time.Now().Add(time.Duration(float64(n)/rate*float64(time.Second)) + 30*time.Second)
	for consumers(base) < n {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("only %d of %d subscribers joined", consumers(base), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(warmup)
	// Align the window to the bots' one-second timeline.
	a := int(time.Since(start)/time.Second) + 1
	time.Sleep(time.Until(start.Add(time.Duration(a) * time.Second)))
	cpu0, err := cpuTicks(pid)
	if err != nil {
		return res, err
	}
	self0, _ := cpuTicks(os.Getpid())
	turn0 := turnRelayed(base)
	secs := int(window / time.Second)
	time.Sleep(time.Until(start.Add(time.Duration(a+secs) * time.Second)))
	cpu1, err := cpuTicks(pid)
	if err != nil {
		return res, err
	}
	self1, _ := cpuTicks(os.Getpid())
	turn1 := turnRelayed(base)
	loadRSS, err := rss(pid)
	if err != nil {
		return res, err
	}
	if simulcast {
		if m, err := bots.ScrapeMediaMetrics(base); err == nil {
			res.Media = &m
		}
	}
	var rep *bots.Report
	select {
	case rep = <-done:
	case err := <-runErr:
		return res, err
	}
	var packets int64
	for _, s := range rep.Timeline {
		if int(s.T) >= a && int(s.T) < a+secs {
			packets += s.Packets
			res.Kbps += s.RecvKbps / float64(secs)
		}
	}
	if packets == 0 {
		return res, errors.New("no packets forwarded in the window")
	}
	cpu := float64(cpu1-cpu0) / clockTicks
	res.Cores = cpu / float64(secs)
	res.BotsCores = float64(self1-self0) / clockTicks / float64(secs)
	res.PPS = float64(packets) / float64(secs)
	res.TURNPPS = (turn1 - turn0) / float64(secs)
	if subRelay && res.TURNPPS < 0.9*res.PPS {
		// Relay-only subscribers receive nothing but what the TURN server relays.
		return res, fmt.Errorf("the TURN server relayed %.0f packets/s to the subscribers, who received %.0f: not all over TURN", res.TURNPPS, res.PPS)
	}
	res.USPerPacket = cpu * 1e6 / float64(packets)
	res.RSSPerSub = float64(loadRSS-idleRSS) / float64(n) / (1 << 20)
	res.Join, res.Latency, res.LossPct, res.Joined = rep.JoinMs, rep.LatencyMs, rep.LossPct, rep.Joined
	return res, nil
}

func consumers(base string) int {
	resp, err := adminGet(base + "/stats")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var s struct {
		Consumers int `json:"consumers"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s.Consumers
}

// adminToken mints a token with the admin grant of the bench's key pair (/stats, /cluster).
func adminToken() string {
	tok, err := keys.Mint(auth.Grant{Admin: true}, time.Hour)
	if err != nil {
		panic(err) // the key pair is a constant: Mint cannot fail
	}
	return tok
}

// adminGet GETs an admin endpoint of a node.
func adminGet(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken())
	return http.DefaultClient.Do(req)
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces) start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	return u + s, nil
}

// rss is the resident set size of a process, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// turnRelayed is the node's count of datagrams its TURN server relayed to clients (0 when it
// has no TURN server or cannot be scraped).
func turnRelayed(base string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	const series = `cascade_turn_relayed_packets_total{direction="to_client"} `
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// msPerMbit is the node's CPU per forwarded megabit, in milliseconds.
func msPerMbit(r result) float64 {
	if r.Kbps <= 0 {
		return 0
	}
	return r.Cores * 1000 / (r.Kbps / 1000)
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func printTable(w io.Writer, rs []result) {
	fmt.Fprintln(w, "| N | forwarding | node CPU (cores) | forwarded pkt/s | CPU µs / forwarded pkt | RSS / subscriber | join p50 / p99 (ms) | latency p50 / p99 (ms) | loss | bots CPU (cores) |")
	fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		if strings.HasPrefix(r.Mode, "floor") {
			fmt.Fprintf(w, "| %d | %s | %.2f | %.0f | %.2f | – | – | – | – | – |\n", r.N, r.Mode, r.Cores, r.PPS, r.USPerPacket)
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %.2f | %.0f | %.2f | %.2f MiB | %.0f / %.0f | %.2f / %.2f | %.3f%% | %.2f |\n",
			r.N, r.Mode, r.Cores, r.PPS, r.USPerPacket, r.RSSPerSub, r.Join.P50, r.Join.P99, r.Latency.P50, r.Latency.P99, r.LossPct, r.BotsCores)
	}
	// Ratios per N, when both modes ran.
	by := map[int]map[string]result{}
	for _, r := range rs {
		if by[r.N] == nil {
			by[r.N] = map[string]result{}
		}
		by[r.N][r.Mode] = r
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		m := by[r.N]
		c, okc := m["cascade"]
		nv, okn := m["naive"]
		if r.Mode != "cascade" || !okc || !okn || c.USPerPacket == 0 {
			continue
		}
		line := fmt.Sprintf("- N = %d: naive / cascade CPU per forwarded packet = **%.2fx**; RSS per subscriber %.2f (naive) vs %.2f MiB (cascade)",
			r.N, nv.USPerPacket/c.USPerPacket, nv.RSSPerSub, c.RSSPerSub)
		if f, ok := m["floor: sendto"]; ok && f.USPerPacket > 0 {
			line += fmt.Sprintf("; above the sendto floor: naive +%.2f µs, cascade %+.2f µs", nv.USPerPacket-f.USPerPacket, c.USPerPacket-f.USPerPacket)
		}
		fmt.Fprintln(w, line)
	}
	// Simulcast with estimation against simulcast without it (the budget: 1.3x), and
	// against today's single-stream path.
	for _, r := range rs {
		m := by[r.N]
		if r.Mode != "simulcast" || r.USPerPacket == 0 {
			continue
		}
		line := fmt.Sprintf("- N = %d: simulcast with estimation: %.2f µs per forwarded packet, %.1f ms per forwarded Mbit, %.2f MiB per subscriber",
			r.N, r.USPerPacket, msPerMbit(r), r.RSSPerSub)
		if off, ok := m["simulcast-nobwe"]; ok && off.USPerPacket > 0 {
			line += fmt.Sprintf("; / without (--bwe=false) = **%.2fx** CPU per forwarded packet (%.2f µs), %.2fx per forwarded Mbit, RSS %.2f vs %.2f MiB",
				r.USPerPacket/off.USPerPacket, off.USPerPacket, msPerMbit(r)/msPerMbit(off), r.RSSPerSub, off.RSSPerSub)
		}
		if c, ok := m["cascade-nobwe"]; ok && c.USPerPacket > 0 {
			line += fmt.Sprintf("; / one stream without estimation (cascade-nobwe) = %.2fx", r.USPerPacket/c.USPerPacket)
		}
		fmt.Fprintln(w, line)
	}
	for _, r := range rs {
		if off, ok := by[r.N]["cascade-nobwe"]; r.Mode == "cascade" && ok && off.USPerPacket > 0 {
			fmt.Fprintf(w, "- N = %d: one stream, estimation on / off (cascade / cascade-nobwe) = **%.2fx** CPU per forwarded packet; RSS per subscriber %.2f vs %.2f MiB\n",
				r.N, r.USPerPacket/off.USPerPacket, r.RSSPerSub, off.RSSPerSub)
		}
		if off, ok := by[r.N]["cascade-nobwe"]; r.Mode == "simulcast-nobwe" && ok && off.USPerPacket > 0 {
			fmt.Fprintf(w, "- N = %d: without estimation, simulcast / one stream (simulcast-nobwe / cascade-nobwe) = %.2fx CPU per forwarded packet\n",
				r.N, r.USPerPacket/off.USPerPacket)
		}
	}
	for _, r := range rs {
		if r.Media != nil {
			fmt.Fprintf(w, "- N = %d, %s: %s\n", r.N, r.Mode, r.Media)
		}
	}
	// Subscribers over other paths than UDP, against UDP.
	for _, r := range rs {
		c, ok := by[r.N]["cascade"]
		if !strings.HasPrefix(r.Mode, "cascade-") || r.Mode == "cascade-nobwe" || !ok || c.USPerPacket == 0 {
			continue
		}
		fmt.Fprintf(w, "- N = %d: %s / cascade CPU per forwarded packet = **%.2fx**; RSS per subscriber %.2f vs %.2f MiB\n",
			r.N, r.Mode, r.USPerPacket/c.USPerPacket, r.RSSPerSub, c.RSSPerSub)
	}
}
