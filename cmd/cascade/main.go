// Command cascade runs a Cascade media node (`cascade node`), mints access tokens
// (`cascade token`) and runs load-test bots (`cascade bots`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	ossignal "os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/web"
	"github.com/cascade-sfu/cascade/webhook"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad arguments or configuration
)

// shutdownTimeout bounds the graceful HTTP shutdown.
const shutdownTimeout = 10 * time.Second

const usage = `Usage: cascade <command> [flags]

Commands:
  node          run a media node
  token         print an access token
  bots          run load-test bots against nodes
  rooms         list, describe or delete the cluster's rooms (room API)
  participants  list, remove or mute a room's participants (room API)
  sim           simulate a cluster at scale (scenario YAML): placement, relay trees, control traffic

Run "cascade <command> -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "node":
		return runNode(rest, getenv, stdout, stderr)
	case "token":
		return runToken(rest, getenv, stdout, stderr)
	case "bots":
		return runBots(rest, getenv, stdout, stderr)
	case "rooms":
		return runRooms(rest, getenv, stdout, stderr)
	case "participants":
		return runParticipants(rest, getenv, stdout, stderr)
	case "sim":
		return runSim(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "cascade: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// usageError reports a flag or configuration error (or prints the usage for -h) and returns
// the exit code.
func usageError(err error, stderr io.Writer, fs *flag.FlagSet, synopsis string) int {
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stderr, fs, synopsis)
		return exitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
	fmt.Fprintf(stderr, "Run \"%s -h\" for usage.\n", fs.Name())
	return exitUsage
}

func runNode(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// --check validates the configuration (flags, file, environment) and exits.
	check := false
	rest := args[:0:0]
	for _, a := range args {
		if a == "--check" || a == "-check" {
			check = true
			continue
		}
		rest = append(rest, a)
	}
	cfg, err := loadConfig(rest, getenv)
	if err != nil {
		d := defaultConfig()
		return usageError(err, stderr, nodeFlags(&d, new(string)),
			"cascade node [--check] [flags]\n\nEvery flag can also be set in the --config YAML file (key: the flag name)\n"+
				"or in the environment as CASCADE_<FLAG> (upper case, dashes as underscores).\n"+
				"Precedence: defaults < YAML file < environment < flags. --check only validates the configuration.")
	}
	if check {
		fmt.Fprintln(stdout, "config ok")
		return exitOK
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "cascade",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogJSON,
		Output:     stderr,
	})
	if err := serveNode(cfg, logger); err != nil {
		logger.Error("node failed", "error", err)
		return exitError
	}
	return exitOK
}

// waitDrained lets the node's sessions finish or migrate, up to the drain deadline (the one
// the migrate notifications named: from the first drain, a POST /admin/drain of a preStop hook
// or this SIGTERM), then tells how many moved and how many are cut.
func waitDrained(srv *signal.Server, n *node.Node, logger hclog.Logger) {
	end := srv.DrainDeadline()
	for n.Stats().Participants > 0 && time.Now().Before(end) {
		time.Sleep(250 * time.Millisecond)
	}
	m, left := srv.Migrations(), n.Stats().Participants
	if left > 0 {
		logger.Warn("drain deadline passed: closing the remaining sessions", "participants", left,
			"told_to_migrate", m.Told, "migrated", m.Moved)
		return
	}
	logger.Info("drained", "told_to_migrate", m.Told, "migrated", m.Moved)
}

// serveNode runs the node until SIGINT or SIGTERM, then drains and stops it.
func serveNode(cfg Config, logger hclog.Logger) error {
	keys, dev := keysOrDev(cfg.APIKey, cfg.APISecret)
	if dev {
		logger.Warn("no API key configured: using the development key pair, anyone can mint tokens",
			"api_key", keys.Key)
	}
	secrets, err := cfg.clusterSecrets() // once: a node alone draws its random secret here
	if err != nil {
		return err
	}
	if cfg.Dev {
		logger.Warn("development mode (--dev): GET /token mints a token for anyone who asks; never in production")
	}

	// Bind first, so that the announced URL carries the real port (--http :0 works).
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		defer metricsLn.Close()
	}
	listenHost, _, _ := net.SplitHostPort(cfg.HTTP)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ifaceAddrs, _ := net.InterfaceAddrs()
	httpURL := "http://" + net.JoinHostPort(advertisedHost(listenHost, cfg.PublicIP, cfg.LoopbackOnly, ifaceAddrs), port)
	if cfg.PublicURL != "" {
		httpURL = strings.TrimSuffix(cfg.PublicURL, "/")
	}
	demoURL := httpURL + "/"
	if ip := net.ParseIP(listenHost); listenHost == "" || (ip != nil && ip.IsUnspecified()) {
		demoURL = "http://" + net.JoinHostPort("127.0.0.1", port) + "/"
	}

	gateways, _ := cfg.gateways() // validated by loadConfig
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	n, err := node.New(node.Options{
		ID:               cfg.NodeID,
		Region:           cfg.Region,
		HTTPURL:          httpURL,
		PublicIP:         cfg.PublicIP,
		UDPPort:          cfg.UDPPort,
		TCPPort:          cfg.TCPPort,
		Workers:          cfg.Workers,
		LoopbackOnly:     cfg.LoopbackOnly,
		KeyframeInterval: cfg.KeyframeInterval,
		WorkerConsumers:  cfg.WorkerConsumers,
		RTXBudget:        cfg.rtxBudget(),
		Limits:           cfg.nodeLimits(),
		EmptyRoomTimeout: cfg.EmptyRoomTimeout,
		Naive:            cfg.NaiveBaseline,
		Logger:           logger,
		Registerer:       reg,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("start node: %w", err)
	}
	turnSrv, err := startTURN(cfg, n, ifaceAddrs, reg, logger)
	if err != nil {
		n.Close()
		ln.Close()
		return fmt.Errorf("start turn: %w", err)
	}
	if turnSrv != nil {
		defer turnSrv.Close()
	}
	nc, err := cluster.StartNATS(cluster.NATSOptions{
		Name:        n.ID(),
		URL:         cfg.NATS,
		Listen:      cfg.NATSListen,
		Cluster:     cfg.NATSCluster,
		Routes:      cfg.routes(),
		ClusterName: cfg.NATSClusterName,
		Gateway:     cfg.NATSGateway,
		Gateways:    gateways,
		Creds:       cfg.NATSCreds,
		Secrets:     secrets,
		TLSCert:     cfg.NATSTLSCert,
		TLSKey:      cfg.NATSTLSKey,
		TLSCA:       cfg.NATSTLSCA,
		RouteTLS:    cfg.NATSRouteTLS,
		InsecureGW:  cfg.NATSGWInsecure,
		Logger:      logger,
	})
	if err != nil {
		n.Close()
		ln.Close()
		return fmt.Errorf("start nats: %w", err)
	}
	relayHost, _, _ := net.SplitHostPort(cfg.Relay)
	pipes, err := relay.Open(relay.Options{Self: n.ID(), Region: cfg.Region, Listen: cfg.Relay, Fanout: cfg.RelayFanout, Producers: n,
		Host: advertisedHost(relayHost, cfg.PublicIP, cfg.LoopbackOnly, ifaceAddrs), Logger: logger, KeyRotation: cfg.RelayKeyRotation})
	if err != nil {
		nc.Close()
		n.Close()
		ln.Close()
		return fmt.Errorf("open the relay: %w", err)
	}
	hooks, err := startWebhooks(cfg, reg, logger)
	if err != nil {
		pipes.Close()
		nc.Close()
		n.Close()
		ln.Close()
		return fmt.Errorf("start webhooks: %w", err)
	}
	co := cluster.Options{Heartbeat: cfg.HeartbeatInterval, Timeout: cfg.HeartbeatTimeout, ResumeGrace: resumeGrace(cfg.ResumeGrace), Logger: logger, Secrets: secrets}
	if hooks != nil {
		co.Observer = webhook.NewSource(n.ID(), hooks)
	}
	cl, err := cluster.New(n, pipes, nc.Bus(), co)
	if err != nil {
		if hooks != nil {
			hooks.Close()
		}
		pipes.Close()
		nc.Close()
		n.Close()
		ln.Close()
		return fmt.Errorf("join the cluster: %w", err)
	}
	nc.OnTrouble(cl.Resync)
	placer := cluster.NewPlacer(cl)
	reg.MustRegister(cluster.NewCollector(cl, placer))
	rooms := cluster.NewAPI(cl) // the room API, and the cluster view's listing

	so := signal.Options{
		Keys:      keys,
		DevTokens: cfg.Dev, // the demo page mints its own tokens, only in development mode
		Web:       web.Handler(),
		Logger:    logger,
		Gatherer:  reg,
		Pprof:     cfg.Pprof,
		Cluster:   cluster.NewViewer(rooms),
		Rooms:     rooms,
		Placement: placer,
		Ready:     nc.Ready,
		Joins:     cfg.joinLimits(),

		JoinDeadline:    cfg.joinDeadline(),
		SeparateMetrics: cfg.MetricsListen != "",
		DrainTimeout:    cfg.DrainTimeout,
		Registerer:      reg,
	}
	if cfg.DrainTimeout == 0 { // no drain time: signal's zero means its default
		so.DrainTimeout = -1
	}
	// One grace for a dead node's sessions and for a vanished client's: a resume lands first.
	so.ResumeGrace = resumeGrace(cfg.ResumeGrace)
	if turnSrv != nil {
		so.ICEServers = turnICEServers(turnSrv, cfg.TURNTTL, logger)
	}
	srv := signal.NewServer(n, so)
	httpSrv := signal.DefaultHTTPTimeouts().Server(srv.Handler())
	serveErr := make(chan error, 2)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	logger.Info("listening", "http", ln.Addr().String(), "url", httpURL)
	if metricsLn != nil {
		metricsSrv := signal.DefaultHTTPTimeouts().Server(srv.MetricsHandler())
		go func() { serveErr <- metricsSrv.Serve(metricsLn) }()
		defer metricsSrv.Close()
		logger.Info("metrics listening", "addr", metricsLn.Addr().String())
	}
	logger.Info("demo page", "url", demoURL)

	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: draining")
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	stop() // a second signal now kills the process at once

	srv.Drain()
	waitDrained(srv, n, logger)
	srv.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown", "error", err)
	}
	cl.Close()
	pipes.Close()
	n.Close()
	if hooks != nil {
		hooks.Close() // delivers the last events (the sessions that just closed), briefly
	}
	nc.Close()
	logger.Info("stopped")
	return runErr
}
