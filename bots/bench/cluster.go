package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sfu/cascade/bots"
)

// hopResult is one node of the relay chain.
type hopResult struct {
	Node        string           `json:"node"`
	Hop         int              `json:"hop"`
	Subscribers int              `json:"subscribers"`
	Cores       float64          `json:"node_cores"`
	PPS         float64          `json:"forwarded_pps"`
	USPerPacket float64          `json:"cpu_us_per_packet"`
	Latency     bots.Percentiles `json:"latency_ms"`
	LossPct     float64          `json:"loss_pct"`
}

type clusterNode struct {
	id, base string
	cmd      *exec.Cmd
}

// measureCluster runs three nodes whose relay fan-out is 1, so the relay tree is a chain
// origin -> hop 1 -> hop 2; the publisher joins the origin and n subscribers spread over the
// three nodes. Per node: CPU per forwarded packet (relay sinks included) and the subscribers'
// latency; the hop differences are the latency a relay hop adds, under the same load.
func measureCluster(bin string, n, workers int, rate float64, warmup, window time.Duration) ([]hopResult, error) {
	var nodes []*clusterNode
	defer func() {
		for _, cn := range nodes {
			_ = cn.cmd.Process.Signal(syscall.SIGTERM)
			_ = cn.cmd.Wait()
		}
	}()
	ports := make([][5]int, 3) // http, relay, nats, nats-cluster, (unused)
	for i := range ports {
		for j := 0; j < 4; j++ {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i][j] = p
		}
	}
	for i := 0; i < 3; i++ {
		var routes []string
		for j := 0; j < 3; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[j][3]))
			}
		}
		id := fmt.Sprintf("n%d", i)
		args := []string{"node", "--loopback-only", "--node-id", id, "--http", fmt.Sprintf("127.0.0.1:%d", ports[i][0]),
			"--udp-port", "0", "--relay", fmt.Sprintf("127.0.0.1:%d", ports[i][1]), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[i][2]),
			"--nats-cluster", fmt.Sprintf("127.0.0.1:%d", ports[i][3]), "--nats-routes", strings.Join(routes, ","),
			"--relay-fanout", "1", "--workers", strconv.Itoa(workers), "--log-level", "warn",
			"--api-key", keys.Key, "--api-secret", keys.Secret,
			"--cluster-secret", "bench-cluster-secret-0123456789abcdef"}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		cn := &clusterNode{id: id, base: fmt.Sprintf("http://127.0.0.1:%d", ports[i][0]), cmd: cmd}
		nodes = append(nodes, cn)
	}
	for _, cn := range nodes {
		if err := bots.WaitOK(cn.base+"/readyz", 15*time.Second); err != nil {
			return nil, err
		}
	}
	// Wait until every node sees the other two.
	deadline := time.Now().Add(15 * time.Second)
	for !allSeen(nodes) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the nodes did not find each other")
		}
		time.Sleep(200 * time.Millisecond)
	}
	urls := []string{nodes[0].base, nodes[1].base, nodes[2].base}
	start := time.Now()
	done := make(chan *bots.Report, 1)
	runErr := make(chan error, 1)
	go func() {
		rep, err := bots.Run(context.Background(), bots.Options{URLs: urls, PublishURL: urls[0], Room: "bench", Publishers: 1,
			Subscribers: n, Duration: warmup + window + 3*time.Second, Rate: rate, Video: true, Keys: keys, LoopbackOnly: true,
			JoinTimeout: 30 * time.Second, MaxStall: 2 * time.Second, NoRedirect: true}) // the hops are the nodes asked for
		if err != nil {
			runErr <- err
			return
		}
		done <- rep
	}()
	deadline = time.Now().Add(time.Duration(float64(n)/rate*float64(time.Second)) + 30*time.Second)
	for {
		total := 0
		for _, cn := range nodes {
			total += consumers(cn.base)
		}
		if total >= n+2 { // the subscribers and the two relay sinks
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d consumers", total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(warmup)
	cpu0 := make([]int64, 3)
	fwd0 := make([]uint64, 3)
	for i, cn := range nodes {
		cpu0[i], _ = cpuTicks(cn.cmd.Process.Pid)
		fwd0[i] = forwarded(cn.base)
	}
	t0 := time.Now()
	time.Sleep(window)
	elapsed := time.Since(t0).Seconds()
	res := make([]hopResult, 3)
	for i, cn := range nodes {
		cpu1, _ := cpuTicks(cn.cmd.Process.Pid)
		fwd := float64(forwarded(cn.base) - fwd0[i])
		cpu := float64(cpu1-cpu0[i]) / clockTicks
		res[i] = hopResult{Node: cn.id, Cores: cpu / elapsed, PPS: fwd / elapsed}
		if fwd > 0 {
			res[i].USPerPacket = cpu * 1e6 / fwd
		}
	}
	hops, err := chain(nodes[0].base)
	if err != nil {
		return nil, err
	}
	var rep *bots.Report
	select {
	case rep = <-done:
	case err := <-runErr:
		return nil, err
	}
	_ = start
	for i := range res {
		res[i].Hop = hops[res[i].Node]
		for _, nr := range rep.Nodes {
			if strings.Contains(nr.URL, strings.TrimPrefix(nodes[i].base, "http://")) {
				res[i].Subscribers, res[i].Latency, res[i].LossPct = nr.Subscribers, nr.LatencyMs, nr.LossPct
			}
		}
	}
	if !rep.OK() {
		return res, fmt.Errorf("bots: %s; errors: %v", strings.Join(rep.Problems(), "; "), rep.Errors)
	}
	return res, nil
}

func allSeen(nodes []*clusterNode) bool {
	for _, cn := range nodes {
		v, err := clusterView(cn.base)
		if err != nil || len(v.Nodes) != len(nodes) {
			return false
		}
	}
	return true
}

type view struct {
	Nodes []struct {
		ID string `json:"id"`
	} `json:"nodes"`
	Rooms []struct {
		Producers []struct {
			Tree []struct {
				Node   string `json:"node"`
				Parent string `json:"parent"`
			} `json:"tree"`
		} `json:"producers"`
	} `json:"rooms"`
}

func clusterView(base string) (view, error) {
	var v view
	resp, err := adminGet(base + "/cluster?format=json")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return v, json.Unmarshal(b, &v)
}

// chain reads the relay tree at the origin: hops from the origin per node.
func chain(origin string) (map[string]int, error) {
	v, err := clusterView(origin)
	if err != nil {
		return nil, err
	}
	if len(v.Rooms) == 0 || len(v.Rooms[0].Producers) == 0 {
		return nil, fmt.Errorf("no producer at the origin")
	}
	parent := map[string]string{}
	for _, e := range v.Rooms[0].Producers[0].Tree {
		parent[e.Node] = e.Parent
	}
	hops := map[string]int{"n0": 0}
	for id := range parent {
		h, x := 0, id
		for x != "n0" && h < 5 {
			x = parent[x]
			h++
		}
		hops[id] = h
	}
	return hops, nil
}

// forwarded sums the node's forwarded packets (to subscribers and relay sinks).
func forwarded(base string) uint64 {
	resp, err := adminGet(base + "/stats")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var s struct {
		Workers []struct {
			Packets uint64 `json:"forwarded_packets"`
		} `json:"workers"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&s)
	var n uint64
	for _, w := range s.Workers {
		n += w.Packets
	}
	return n
}

func printHops(w io.Writer, hs []hopResult) {
	fmt.Fprintln(w, "| node | relay hops from the publisher | subscribers | node CPU (cores) | forwarded pkt/s | CPU µs / forwarded pkt | latency p50 / p99 (ms) | loss |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	byHop := map[int]hopResult{}
	for _, h := range hs {
		byHop[h.Hop] = h
	}
	for hop := 0; hop < 3; hop++ {
		h := byHop[hop]
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %.0f | %.2f | %.2f / %.2f | %.3f%% |\n", h.Node, hop, h.Subscribers, h.Cores, h.PPS, h.USPerPacket, h.Latency.P50, h.Latency.P99, h.LossPct)
	}
	fmt.Fprintln(w)
	if l, r1, r2 := byHop[0], byHop[1], byHop[2]; l.USPerPacket > 0 {
		fmt.Fprintf(w, "- added one-way latency, first hop: p50 %+.2f ms, p99 %+.2f ms; second hop: p50 %+.2f ms, p99 %+.2f ms\n",
			r1.Latency.P50-l.Latency.P50, r1.Latency.P99-l.Latency.P99, r2.Latency.P50-r1.Latency.P50, r2.Latency.P99-r1.Latency.P99)
		fmt.Fprintf(w, "- CPU per forwarded packet, relayed (hop 2, the chain's end) vs local (origin): **%.2fx**\n", r2.USPerPacket/l.USPerPacket)
	}
}
