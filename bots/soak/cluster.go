package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/signal/auth"
)

// node is one cascade node process of the soak cluster.
type node struct {
	id   string
	base string // http://127.0.0.1:port
	// admin is an admin token for the node's pprof endpoints.
	admin string
	cmd   *exec.Cmd
	log   *os.File
}

// clusterConfig is what the soak's nodes share.
type clusterConfig struct {
	bin, secret, logDir string
	apiKey, apiSecret   string
	workers             int
	pprof               bool
}

// startCluster starts three nodes on loopback whose embedded NATS servers form one cluster
// (routes to each other, one shared --cluster-secret), and waits until each sees the others.
func startCluster(c clusterConfig, n int) ([]*node, error) {
	admin, err := auth.Keys{Key: c.apiKey, Secret: c.apiSecret}.Mint(auth.Grant{Admin: true}, 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	type ports struct{ http, relay, nats, route int }
	ps := make([]ports, n)
	for i := range ps {
		var err error
		for _, p := range []*int{&ps[i].http, &ps[i].relay, &ps[i].nats, &ps[i].route} {
			if *p, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	var nodes []*node
	for i := 0; i < n; i++ {
		var routes []string
		for j := 0; j < n; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ps[j].route))
			}
		}
		id := fmt.Sprintf("soak%d", i)
		args := []string{"node", "--loopback-only", "--node-id", id,
			"--http", fmt.Sprintf("127.0.0.1:%d", ps[i].http), "--udp-port", "0", "--tcp-port", "0",
			"--relay", fmt.Sprintf("127.0.0.1:%d", ps[i].relay),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", ps[i].nats),
			"--nats-cluster", fmt.Sprintf("127.0.0.1:%d", ps[i].route), "--nats-routes", strings.Join(routes, ","),
			"--cluster-secret", c.secret, "--api-key", c.apiKey, "--api-secret", c.apiSecret,
			"--workers", fmt.Sprint(c.workers), "--log-level", "warn"}
		if c.pprof {
			args = append(args, "--pprof")
		}
		logf, err := os.Create(filepath.Join(c.logDir, id+".log"))
		if err != nil {
			stopCluster(nodes)
			return nil, err
		}
		cmd := exec.Command(c.bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			stopCluster(nodes)
			return nil, fmt.Errorf("start %s: %w", id, err)
		}
		nodes = append(nodes, &node{id: id, base: fmt.Sprintf("http://127.0.0.1:%d", ps[i].http), admin: admin, cmd: cmd, log: logf})
	}
	for _, nd := range nodes {
		if err := bots.WaitOK(nd.base+"/readyz", 30*time.Second); err != nil {
			stopCluster(nodes)
			return nil, fmt.Errorf("%s: %w (log: %s)", nd.id, err, nd.log.Name())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !allSeen(nodes) {
		if time.Now().After(deadline) {
			stopCluster(nodes)
			return nil, errors.New("the nodes did not find each other in 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nodes, nil
}

// stopCluster stops every node with SIGTERM (SIGKILL after 15 s) and closes the logs.
func stopCluster(nodes []*node) {
	for _, nd := range nodes {
		_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, nd := range nodes {
		done := make(chan struct{})
		go func() { _ = nd.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = nd.cmd.Process.Kill()
			<-done
		}
		nd.log.Close()
	}
}

// get fetches path from the node with its admin token.
func (nd *node) get(c http.Client, path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, nd.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+nd.admin)
	return c.Do(req)
}

// alive tells whether the node process still runs.
func (nd *node) alive() bool { return nd.cmd.Process.Signal(syscall.Signal(0)) == nil }

// dumpGoroutines saves the node's goroutine dump (needs --pprof) to dir and returns the path.
func (nd *node) dumpGoroutines(dir, suffix string) (string, error) {
	resp, err := nd.get(http.Client{Timeout: 30 * time.Second}, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: goroutine dump: HTTP %d (is --pprof on?)", nd.id, resp.StatusCode)
	}
	path := filepath.Join(dir, nd.id+"-goroutines-"+suffix+".txt")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return path, err
}

// allSeen tells whether every node counts all of them in its cluster (from /metrics, which
// needs no token).
func allSeen(nodes []*node) bool {
	for _, nd := range nodes {
		m, err := bots.ScrapeMetrics(nd.base)
		if err != nil || m["cascade_cluster_nodes"] < float64(len(nodes)) {
			return false
		}
	}
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
