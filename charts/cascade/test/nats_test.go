package test

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// parseGateways parses --nats-gateways: comma-separated NAME=URL, a repeated name adds a URL.
func parseGateways(s string) ([]*server.RemoteGatewayOpts, error) {
	var out []*server.RemoteGatewayOpts
	byName := map[string]*server.RemoteGatewayOpts{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		name, raw, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want NAME=URL", e)
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return nil, fmt.Errorf("%q: not a nats://host:port URL", raw)
		}
		g := byName[name]
		if g == nil {
			g = &server.RemoteGatewayOpts{Name: name}
			byName[name] = g
			out = append(out, g)
		}
		g.URLs = append(g.URLs, u)
	}
	return out, nil
}

// hostPort splits a listen address.
func hostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return h, n, err
}

// natsOptions builds the embedded NATS server's options from a rendered node config, the way
// the node does, and has the NATS server validate them (server.NewServer checks the cluster,
// routes and gateways without listening).
func natsOptions(cfg map[string]any, serverName string) (*server.Options, error) {
	o := &server.Options{ServerName: serverName, NoSigs: true, NoLog: true}
	var err error
	if o.Host, o.Port, err = hostPort(str(cfg["nats-listen"])); err != nil {
		return nil, fmt.Errorf("nats-listen: %w", err)
	}
	name := str(cfg["nats-cluster-name"])
	if c := str(cfg["nats-cluster"]); c != "" {
		o.Cluster.Name = name
		if o.Cluster.Host, o.Cluster.Port, err = hostPort(c); err != nil {
			return nil, fmt.Errorf("nats-cluster: %w", err)
		}
		for _, r := range strings.Split(str(cfg["nats-routes"]), ",") {
			u, err := url.Parse(r)
			if err != nil || u.Scheme != "nats-route" || u.Hostname() == "" || u.Port() == "" {
				return nil, fmt.Errorf("nats-routes: %q is not nats-route://host:port", r)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	if g := str(cfg["nats-gateway"]); g != "" {
		o.Gateway.Name = name
		if o.Gateway.Host, o.Gateway.Port, err = hostPort(g); err != nil {
			return nil, fmt.Errorf("nats-gateway: %w", err)
		}
		if o.Gateway.Gateways, err = parseGateways(str(cfg["nats-gateways"])); err != nil {
			return nil, fmt.Errorf("nats-gateways: %w", err)
		}
	}
	if _, err := server.NewServer(o); err != nil {
		return nil, err
	}
	return o, nil
}

// connectGateways runs the two regions' embedded servers in this process, on loopback, each
// remote gateway URL pointed at the other's listener, and waits for the gateways to connect:
// the names the chart renders match across regions.
func connectGateways(t *testing.T, a, b map[string]any) {
	t.Helper()
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	cfgs := []map[string]any{a, b}
	gwPorts := []int{free(), free()}
	var servers []*server.Server
	for i, cfg := range cfgs {
		o, err := natsOptions(cfg, fmt.Sprintf("%v-0", cfg["nats-cluster-name"]))
		if err != nil {
			t.Fatalf("region %v: %v", cfg["nats-cluster-name"], err)
		}
		o.Host, o.Port = "127.0.0.1", -1
		o.Cluster.Host, o.Cluster.Port, o.Routes = "127.0.0.1", -1, nil
		o.Gateway.Host, o.Gateway.Port = "127.0.0.1", gwPorts[i]
		for _, g := range o.Gateway.Gateways {
			for j, other := range cfgs {
				if j != i && other["nats-cluster-name"] == g.Name {
					g.URLs = []*url.URL{{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", gwPorts[j])}}
				}
			}
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(5 * time.Second) {
			t.Fatalf("NATS server %s did not start", o.ServerName)
		}
		servers = append(servers, s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, s := range servers {
			ok = ok && s.NumOutboundGateways() == 1
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, s := range servers {
				t.Errorf("server %s: %d outbound gateways", s.Name(), s.NumOutboundGateways())
			}
			t.Fatal("the regions' gateways did not connect")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
