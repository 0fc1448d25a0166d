package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTwoRegionNodes runs one real node per region with the config the two-region examples
// render (region, NATS cluster name, gateway names), only the addresses moved to loopback, and
// waits until each region's node sees the other's in its /cluster view: the gateways the chart
// renders (TLS, with the shared cluster secret's credentials) join the regions into one
// Cascade cluster.
func TestTwoRegionNodes(t *testing.T) {
	t.Parallel()
	bin := cascadeBinary(t)
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	type region struct {
		name, release, file string
		gateway, http       int
		pod                 string
		admin               string // an admin token for /cluster, from the release's API key pair
	}
	regions := []*region{
		{name: "eu", release: "cascade-eu", file: "examples/two-region-eu.yaml"},
		{name: "us", release: "cascade-us", file: "examples/two-region-us.yaml"},
	}
	for _, rg := range regions {
		rg.gateway, rg.http = free(), free()
	}
	// The gateways' TLS Secret (the examples' nats.tls.secretName): one CA, certificates for
	// loopback, where the test moves the gateways.
	gwTLS := loopbackTLS(t)
	for i, rg := range regions {
		other := regions[1-i]
		r := render(t, renderOpts{release: rg.release, namespace: "cascade", files: []string{rg.file}})
		r.secretFiles = map[string]map[string]string{str(r.value("nats.tls.secretName")): gwTLS}
		_, name, _ := r.workload(t)
		rg.pod = name + "-0"
		args, envs, _ := r.nodeCommand(t, rg.pod)
		cfg := r.nodeConfig(t, rg.pod)
		gws, err := parseGateways(str(cfg["nats-gateways"]))
		if err != nil {
			t.Fatal(err)
		}
		// The remotes keep the names the chart rendered; their URLs become the other node's listener.
		var remotes []string
		for _, g := range gws {
			remotes = append(remotes, fmt.Sprintf("%s=nats://127.0.0.1:%d", g.Name, other.gateway))
		}
		delete(envs, "CASCADE_PUBLIC_IP")
		args = append(args, "--http", fmt.Sprintf("127.0.0.1:%d", rg.http), "--udp-port", "0", "--tcp-port", "0", "--turn-udp-port", "0", "--turn-tcp-port", "0", "--relay", "127.0.0.1:0",
			"--nats-listen", "127.0.0.1:0", "--nats-cluster", "127.0.0.1:0", "--nats-routes", "",
			"--nats-gateway", fmt.Sprintf("127.0.0.1:%d", rg.gateway), "--nats-gateways", strings.Join(remotes, ","),
			"--loopback-only", "--workers", "1", "--log-json=false", "--log-level", "warn")
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
		for k, v := range envs {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		mintCmd := exec.Command(bin, "token", "--admin", "--ttl", "10m")
		mintCmd.Env = cmd.Env
		tok, err := mintCmd.Output()
		if err != nil {
			t.Fatalf("cascade token --admin: %v", err)
		}
		rg.admin = strings.TrimSpace(string(tok))
		var logs safeBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
			}
			if t.Failed() {
				t.Logf("%s node log:\n%s", rg.name, logs.String())
			}
		})
	}

	type view struct {
		Nodes []struct {
			ID     string `json:"id"`
			Region string `json:"region"`
		} `json:"nodes"`
	}
	sees := func(rg *region) map[string]string {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/cluster", rg.http), nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+rg.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var v view
		if json.NewDecoder(resp.Body).Decode(&v) != nil {
			return nil
		}
		out := map[string]string{}
		for _, n := range v.Nodes {
			out[n.ID] = n.Region
		}
		return out
	}
	want := map[string]string{regions[0].pod: "eu", regions[1].pod: "us"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, rg := range regions {
			got := sees(rg)
			for id, region := range want {
				ok = ok && got[id] == region
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, rg := range regions {
				t.Errorf("%s node sees %v, want %v", rg.name, sees(rg), want)
			}
			t.Fatal("the regions did not join")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
