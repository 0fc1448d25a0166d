package cluster

import (
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultNATSListen is the embedded server's default client address.
const DefaultNATSListen = "127.0.0.1:4222"

// ErrBadNATSOptions wraps every validation error of NATSOptions.
var ErrBadNATSOptions = errors.New("bad nats options")

// NATSOptions configure the node's NATS: an external server, or an embedded one.
type NATSOptions struct {
	// Name names the connection and the embedded server (the node id).
	Name string
	// URL is an external NATS server; empty starts an embedded one on Listen.
	URL string
	// Listen is the client address of the embedded server ("127.0.0.1:4222"; port -1 or 0
	// picks a free port).
	Listen string
	// Cluster is the route listen address of the embedded server (host:port; empty: no NATS
	// cluster). With Routes, the embedded servers of several nodes form one NATS cluster.
	Cluster string
	// Routes are the other embedded servers' route URLs (nats-route://host:port).
	Routes []string
	// ClusterName names the embedded NATS cluster ("cascade"); with gateways it is also this
	// region's gateway name.
	ClusterName string
	// Gateway is the gateway listen address of the embedded server (host:port; empty: none).
	Gateway string
	// Gateways are the other regions' gateways: name -> URLs (nats://host:port).
	Gateways map[string][]string
	// Creds is a credentials file for an external NATS.
	Creds string
	// Secrets are the cluster secrets. The embedded server's client, route and gateway ports
	// accept only credentials derived from them (empty: a random secret, for a node alone);
	// with URL and no Creds the node presents its derived client credential (nothing when
	// empty, for an external NATS without authentication).
	Secrets Secrets
	// TLSCert, TLSKey and TLSCA are PEM files: the certificate and key the embedded server
	// presents on its gateways (and routes, with RouteTLS), and the CA its peers' certificates
	// are verified with (empty: the system's roots).
	TLSCert, TLSKey, TLSCA string
	// RouteTLS turns TLS on for the routes too.
	RouteTLS bool
	// InsecureGW lets gateways run without TLS (tests and labs); otherwise a gateway
	// without a certificate is refused.
	InsecureGW bool
	// StoreDir is the JetStream directory of the embedded server; empty means a temp dir.
	StoreDir string
	// Logger receives connection events.
	Logger hclog.Logger
}

// NATS is the node's NATS: the connection, and the embedded server when there is one.
type NATS struct {
	o        NATSOptions
	nc       *nats.Conn
	closed   chan struct{} // closed by the connection's last callback
	embedded *server.Server
	tempDir  string // JetStream store created here, removed on Close
	log      hclog.Logger
	trouble  atomic.Pointer[func(reason string)]
	once     atomic.Bool // the connection was up at least once
}

// NATS client timing. A NATS server that hangs (a stopped process, a network path that drops
// without a reset) is noticed after about PingInterval x (MaxPingsOut+1); a write to it
// blocks a publisher for FlusherTimeout at most. The embedded server pings its clients and
// routes at the same interval, so a route whose peer vanished breaks in seconds, not minutes.
const (
	natsPingInterval = 2 * time.Second
	natsMaxPingsOut  = 2
	natsWriteTimeout = 2 * time.Second
)

// OnTrouble sets f to be called when messages may have been lost: the connection came back
// after an outage, or a subscription fell behind (a slow consumer). The cluster re-syncs then.
func (n *NATS) OnTrouble(f func(reason string)) { n.trouble.Store(&f) }

func (n *NATS) troubled(reason string) {
	if f := n.trouble.Load(); f != nil {
		(*f)(reason)
	}
}

// StartNATS starts the embedded server (without o.URL) and connects.
func StartNATS(o NATSOptions) (*NATS, error) {
	if o.Listen == "" {
		o.Listen = DefaultNATSListen
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	n := &NATS{o: o, log: o.Logger.Named("nats")}
	url := o.URL
	var connOpts []nats.Option
	if url == "" {
		if len(o.Secrets) == 0 {
			n.o.Secrets = Secrets{RandomSecret()} // alone: nobody else needs it
		}
		if err := n.startServer(); err != nil {
			return nil, err
		}
		url = n.embedded.ClientURL()
		// The node talks to its own server in-process: no socket, and the client port
		// serves only other nodes (with the cluster's credentials).
		connOpts = append(connOpts, nats.InProcessServer(n.embedded), nats.UserInfo(NATSClientCredentials(n.o.Secrets)))
	} else if o.Creds != "" {
		connOpts = append(connOpts, nats.UserCredentials(o.Creds))
	} else if len(o.Secrets) > 0 {
		connOpts = append(connOpts, nats.UserInfo(NATSClientCredentials(o.Secrets)))
	}
	closed := make(chan struct{})
	log := n.log
	nc, err := nats.Connect(url, append(connOpts, nats.Name("cascade "+o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.PingInterval(natsPingInterval), nats.MaxPingsOutstanding(natsMaxPingsOut), nats.FlusherTimeout(natsWriteTimeout),
		nats.Timeout(natsWriteTimeout),
		// While reconnecting, publishing fails at once instead of queueing: the cluster re-syncs
		// after an outage, and stale heartbeats and events replayed late would only mislead.
		nats.ReconnectBufSize(-1),
		// nats.go runs its callbacks in order on a goroutine of its own: Close waits for this
		// last one, so no callback (a log line) runs after Close returned.
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.RetryOnFailedConnect(o.URL != ""),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ConnectHandler(func(*nats.Conn) { n.once.Store(true) }), // a connect retried in the background
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.once.Store(true)
			log.Info("nats reconnected", "url", c.ConnectedUrl())
			n.troubled("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				subject := ""
				if sub != nil {
					subject = sub.Subject
				}
				log.Warn("nats subscription fell behind: messages dropped", "subject", subject)
				n.troubled("slow consumer")
				return
			}
			log.Warn("nats error", "error", err)
		}))...)
	if err != nil {
		n.stopServer()
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	n.nc, n.closed = nc, closed
	if nc.IsConnected() {
		n.once.Store(true)
	}
	return n, nil
}

func (n *NATS) startServer() error {
	if err := n.o.Secrets.Validate(); err != nil {
		return fmt.Errorf("%w: embedded nats: %v", ErrBadNATSOptions, err)
	}
	o := n.o
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("%w: nats listen address %q: %v", ErrBadNATSOptions, o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("%w: nats listen port %q", ErrBadNATSOptions, portStr)
	}
	if port == 0 {
		port = -1
	}
	dir := o.StoreDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cascade-nats-"); err != nil {
			return fmt.Errorf("nats store dir: %w", err)
		}
		n.tempDir = dir
	}
	so := &server.Options{ServerName: o.Name, Host: host, Port: port, NoSigs: true, JetStream: true, StoreDir: dir, MaxPayload: 1 << 20,
		PingInterval: natsPingInterval, MaxPingsOut: natsMaxPingsOut}
	if o.Cluster != "" {
		ch, cp, err := net.SplitHostPort(o.Cluster)
		p, perr := strconv.Atoi(cp)
		if err != nil || perr != nil {
			n.stopServer()
			return fmt.Errorf("%w: nats cluster address %q", ErrBadNATSOptions, o.Cluster)
		}
		if p == 0 {
			p = -1
		}
		so.Cluster = server.ClusterOpts{Name: n.clusterName(), Host: ch, Port: p}
		// Clustered JetStream needs every server's routes up front (the seed has none);
		// Cascade does not use JetStream, so embedded clusters run without it.
		so.JetStream = false
		for _, r := range o.Routes {
			u, err := neturl.Parse(r)
			if err != nil || u.Host == "" {
				n.stopServer()
				return fmt.Errorf("%w: nats route %q (want nats-route://host:port)", ErrBadNATSOptions, r)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	gw, err := GatewayOptions(n.clusterName(), o.Gateway, o.Gateways)
	if err != nil {
		n.stopServer()
		return err
	}
	if gw != nil {
		so.Cluster.Name = n.clusterName() // the gateway's name is its cluster's
		so.JetStream = false
		so.Gateway = *gw
	}
	if err := configureAuth(so, o); err != nil {
		n.stopServer()
		return err
	}
	s, err := server.NewServer(so)
	if err != nil {
		n.stopServer()
		return fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start() // the server owns its goroutines; Shutdown and WaitForShutdown end them
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		n.stopServer()
		return fmt.Errorf("embedded nats did not start on %s", o.Listen)
	}
	n.embedded = s
	return nil
}

func (n *NATS) stopServer() {
	if n.embedded != nil {
		n.embedded.Shutdown()
		n.embedded.WaitForShutdown()
		n.embedded = nil
	}
	if n.tempDir != "" {
		_ = os.RemoveAll(n.tempDir)
		n.tempDir = ""
	}
}

func (n *NATS) clusterName() string {
	if n.o.ClusterName != "" {
		return n.o.ClusterName
	}
	return "cascade"
}

// Bus is the connection as a Bus.
func (n *NATS) Bus() NATSBus { return NewNATSBus(n.nc) }

// Conn is the NATS connection.
func (n *NATS) Conn() *nats.Conn { return n.nc }

// Ready tells whether the node joined the cluster: the connection was up at least once and is
// not closed (the node's /readyz). An outage later does not make the node unready: it still
// serves the rooms open on it, and answers cluster_unavailable for the others.
func (n *NATS) Ready() bool { return n.once.Load() && !n.nc.IsClosed() }

// Connected tells whether the connection is up now.
func (n *NATS) Connected() bool { return n.nc.IsConnected() }

// ClientURL is the client URL of the embedded server, or "" with an external one.
func (n *NATS) ClientURL() string {
	if n.embedded == nil {
		return ""
	}
	return n.embedded.ClientURL()
}

// RouteURL is the route URL of the embedded server's cluster listener ("" without one), for
// other nodes' Routes.
func (n *NATS) RouteURL() string {
	if n.embedded == nil || n.o.Cluster == "" {
		return ""
	}
	if a := n.embedded.ClusterAddr(); a != nil {
		return "nats-route://" + a.String()
	}
	return ""
}

// GatewayURL is the gateway URL of the embedded server ("" without a gateway).
func (n *NATS) GatewayURL() string {
	if n.embedded == nil || n.o.Gateway == "" {
		return ""
	}
	if a := n.embedded.GatewayAddr(); a != nil {
		return "nats://" + a.String()
	}
	return ""
}

// Close closes the connection (waiting for its last callback) and stops the embedded server.
func (n *NATS) Close() {
	n.nc.Close()
	select {
	case <-n.closed:
	case <-time.After(5 * time.Second):
		n.log.Warn("nats connection: no closed callback within 5 s")
	}
	n.stopServer()
}

// GatewayOptions builds the NATS gateway options of an embedded server named name, listening on
// listen (host:port), with the other regions' gateways; nil without a listen address.
func GatewayOptions(name, listen string, remotes map[string][]string) (*server.GatewayOpts, error) {
	if listen == "" {
		if len(remotes) > 0 {
			return nil, fmt.Errorf("%w: nats gateways need a gateway listen address", ErrBadNATSOptions)
		}
		return nil, nil
	}
	gh, gp, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(gp)
	if err != nil || perr != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: nats gateway address %q", ErrBadNATSOptions, listen)
	}
	if port == 0 {
		port = -1
	}
	o := &server.GatewayOpts{Name: name, Host: gh, Port: port}
	names := make([]string, 0, len(remotes))
	for g := range remotes {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		rg := &server.RemoteGatewayOpts{Name: g}
		for _, raw := range remotes[g] {
			u, err := neturl.Parse(raw)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("%w: nats gateway %s URL %q (want nats://host:port)", ErrBadNATSOptions, g, raw)
			}
			rg.URLs = append(rg.URLs, u)
		}
		o.Gateways = append(o.Gateways, rg)
	}
	return o, nil
}
