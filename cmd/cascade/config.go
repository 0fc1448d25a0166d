package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/hashicorp/go-hclog"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/turnsrv"
)

// Config is the configuration of `cascade node`. Each field is settable, in increasing order of
// precedence, by its default, the YAML file named by --config (key = flag name), the environment
// variable CASCADE_<FLAG> (upper case, dashes as underscores) and the flag itself.
type Config struct {
	HTTP              string        `yaml:"http"`
	UDPPort           int           `yaml:"udp-port"`
	TCPPort           int           `yaml:"tcp-port"`
	PublicIP          string        `yaml:"public-ip"`
	PublicURL         string        `yaml:"public-url"`
	NATS              string        `yaml:"nats"`
	NATSListen        string        `yaml:"nats-listen"`
	NodeID            string        `yaml:"node-id"`
	Region            string        `yaml:"region"`
	Workers           int           `yaml:"workers"`
	APIKey            string        `yaml:"api-key"`
	APISecret         string        `yaml:"api-secret"`
	LogLevel          string        `yaml:"log-level"`
	LogJSON           bool          `yaml:"log-json"`
	LoopbackOnly      bool          `yaml:"loopback-only"`
	KeyframeInterval  time.Duration `yaml:"keyframe-interval"`
	WorkerConsumers   int           `yaml:"worker-consumers"`
	RTXBudget         int           `yaml:"rtx-budget"`
	BWE               bool          `yaml:"bwe"`
	Relay             string        `yaml:"relay"`
	RelayFanout       int           `yaml:"relay-fanout"`
	RelayKeyRotation  time.Duration `yaml:"relay-key-rotation"`
	NATSCluster       string        `yaml:"nats-cluster"`
	NATSRoutes        string        `yaml:"nats-routes"`
	DrainTimeout      time.Duration `yaml:"drain-timeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeat-interval"`
	HeartbeatTimeout  time.Duration `yaml:"heartbeat-timeout"`
	ResumeGrace       time.Duration `yaml:"resume-grace"`
	NATSClusterName   string        `yaml:"nats-cluster-name"`
	NATSGateway       string        `yaml:"nats-gateway"`
	NATSGateways      string        `yaml:"nats-gateways"`
	NATSCreds         string        `yaml:"nats-creds"`
	NATSTLSCert       string        `yaml:"nats-tls-cert"`
	NATSTLSKey        string        `yaml:"nats-tls-key"`
	NATSTLSCA         string        `yaml:"nats-tls-ca"`
	NATSRouteTLS      bool          `yaml:"nats-route-tls"`
	NATSGWInsecure    bool          `yaml:"nats-gateway-insecure"`
	NaiveBaseline     bool          `yaml:"naive-baseline"`
	Pprof             bool          `yaml:"pprof"`
	Dev               bool          `yaml:"dev"`
	ClusterSecret     string        `yaml:"cluster-secret"`
	ClusterSecretPrev string        `yaml:"cluster-secret-previous"`
	MetricsListen     string        `yaml:"metrics-listen"`
	JoinDeadline      time.Duration `yaml:"join-deadline"`
	EmptyRoomTimeout  time.Duration `yaml:"empty-room-timeout"`

	WebhookURLs        urlList       `yaml:"webhook-url"`
	WebhookKey         string        `yaml:"webhook-key"`
	WebhookRetryWindow time.Duration `yaml:"webhook-retry-window"`

	TURNUDPPort        int           `yaml:"turn-udp-port"`
	TURNTCPPort        int           `yaml:"turn-tcp-port"`
	TURNTLSPort        int           `yaml:"turn-tls-port"`
	TURNCert           string        `yaml:"turn-cert"`
	TURNKey            string        `yaml:"turn-key"`
	TURNHost           string        `yaml:"turn-host"`
	TURNSecret         string        `yaml:"turn-secret"`
	TURNTTL            time.Duration `yaml:"turn-ttl"`
	TURNMaxAllocations int           `yaml:"turn-max-allocations"`

	// Limits (PROTOCOL.md, "Limits"); 0 turns a cap off. See limits.go.
	JoinRate            float64 `yaml:"join-rate"`
	JoinBurst           int     `yaml:"join-burst"`
	TrustedProxies      string  `yaml:"trusted-proxies"`
	MaxRooms            int     `yaml:"max-rooms"`
	MaxRoomParticipants int     `yaml:"max-room-participants"`
	MaxTracks           int     `yaml:"max-tracks"`
	ChatRate            float64 `yaml:"chat-rate"`
	ChatBurst           int     `yaml:"chat-burst"`
	ChatBytes           int     `yaml:"chat-bytes"`
	DataRate            float64 `yaml:"data-rate"`
	DataBurst           int     `yaml:"data-burst"`
	DataBytes           int     `yaml:"data-bytes"`
	NackMaxSeqs         int     `yaml:"nack-max-seqs"`
}

// minSecretLen is the shortest API secret accepted.
const minSecretLen = 16

// envPrefix prefixes the environment variable of every flag.
const envPrefix = "CASCADE_"

func defaultConfig() Config {
	return Config{
		HTTP:              ":7880",
		UDPPort:           7882,
		TCPPort:           7879,
		NATSListen:        "127.0.0.1:4222",
		LogLevel:          "info",
		KeyframeInterval:  500 * time.Millisecond,
		WorkerConsumers:   node.DefaultWorkerConsumers,
		RTXBudget:         node.DefaultRTXBudget,
		BWE:               true,
		Relay:             ":7881",
		RelayFanout:       relay.DefaultFanout,
		DrainTimeout:      30 * time.Second,
		NATSClusterName:   "cascade",
		HeartbeatInterval: cluster.DefaultHeartbeat,
		HeartbeatTimeout:  cluster.DefaultTimeout,
		ResumeGrace:       cluster.DefaultResumeGrace,
		JoinDeadline:      signal.DefaultJoinDeadline,

		TURNTTL:            turnsrv.DefaultTTL,
		TURNMaxAllocations: turnsrv.DefaultMaxAllocations,

		JoinRate:            signal.DefaultJoinRate,
		JoinBurst:           signal.DefaultJoinBurst,
		MaxRooms:            node.DefaultMaxRooms,
		MaxRoomParticipants: node.DefaultMaxRoomParticipants,
		MaxTracks:           node.DefaultMaxTracks,
		ChatRate:            node.DefaultChatRate,
		ChatBurst:           node.DefaultChatBurst,
		ChatBytes:           node.DefaultChatBytes,
		DataRate:            node.DefaultDataRate,
		DataBurst:           node.DefaultDataBurst,
		DataBytes:           node.DefaultDataBytes,
		NackMaxSeqs:         node.DefaultNackSeqs,
	}
}

// nodeFlags returns the flag set of `cascade node`, bound to c and, for --config, to configPath.
// Defaults shown in the usage are c's current values.
func nodeFlags(c *Config, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet("cascade node", flag.ContinueOnError)
	fs.StringVar(configPath, "config", "", "YAML configuration file (keys are the flag names)")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "HTTP listen address (signaling, WHIP/WHEP, demo page, metrics)")
	fs.IntVar(&c.UDPPort, "udp-port", c.UDPPort, "first media UDP port: worker i listens on udp-port+i (0 picks free ports)")
	fs.IntVar(&c.TCPPort, "tcp-port", c.TCPPort, "ICE-TCP port: one TCP listener for every worker, for clients whose UDP is blocked (0 picks a free port, -1 turns ICE-TCP off)")
	fs.StringVar(&c.PublicIP, "public-ip", c.PublicIP, "IP address put in ICE host candidates, UDP and TCP: one IPv4, one IPv6, or both comma-separated (empty: the host's addresses)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "URL clients reach this node at, announced for placement redirects (e.g. https://node1.example.com behind a TLS proxy; empty: http://<address>:<port>)")
	fs.StringVar(&c.NATS, "nats", c.NATS, "URL of an external NATS server (empty: start an embedded one)")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "client address of the embedded NATS server")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "node id in the cluster (empty: random)")
	fs.StringVar(&c.Region, "region", c.Region, "region label, used for placement")
	fs.IntVar(&c.Workers, "workers", c.Workers, "media workers (0: one per CPU core)")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "API key: the issuer of access tokens (empty: development key pair)")
	fs.StringVar(&c.APISecret, "api-secret", c.APISecret, fmt.Sprintf("API secret signing access tokens (at least %d bytes)", minSecretLen))
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: trace, debug, info, warn, error or off")
	fs.BoolVar(&c.LogJSON, "log-json", c.LogJSON, "log in JSON")
	fs.BoolVar(&c.LoopbackOnly, "loopback-only", c.LoopbackOnly, "keep all media on 127.0.0.1 (tests, single-machine demos)")
	fs.DurationVar(&c.KeyframeInterval, "keyframe-interval", c.KeyframeInterval, "shortest time between two keyframe requests to one producer")
	fs.IntVar(&c.WorkerConsumers, "worker-consumers", c.WorkerConsumers, "consumers of one room on one worker before the room spreads to another worker")
	fs.IntVar(&c.RTXBudget, "rtx-budget", c.RTXBudget, "retransmissions to one subscriber or relay child on NACK, in percent of the media bytes sent to it (0: none, keyframe requests instead)")
	fs.StringVar(&c.Relay, "relay", c.Relay, "UDP listen address of the relay links to other nodes")
	fs.IntVar(&c.RelayFanout, "relay-fanout", c.RelayFanout, "K: a node relays one producer to at most K other nodes; further nodes attach to nodes that carry it")
	fs.DurationVar(&c.RelayKeyRotation, "relay-key-rotation", c.RelayKeyRotation, "how long a relay link sends under one key before it moves to the next, derived one (0: 1h; at least 1m)")
	fs.StringVar(&c.NATSCluster, "nats-cluster", c.NATSCluster, "route listen address of the embedded NATS server (host:port); with --nats-routes the nodes' servers form one NATS cluster")
	fs.StringVar(&c.NATSRoutes, "nats-routes", c.NATSRoutes, "comma-separated routes to other nodes' embedded NATS servers (nats-route://host:port)")
	fs.StringVar(&c.NATSClusterName, "nats-cluster-name", c.NATSClusterName, "name of the embedded NATS cluster; with gateways, this region's gateway name")
	fs.StringVar(&c.NATSGateway, "nats-gateway", c.NATSGateway, "gateway listen address of the embedded NATS server (host:port): joins regions into a supercluster")
	fs.StringVar(&c.NATSGateways, "nats-gateways", c.NATSGateways, "other regions' gateways: comma-separated NAME=nats://host:port (a name may repeat)")
	fs.StringVar(&c.NATSCreds, "nats-creds", c.NATSCreds, "NATS credentials file for an external NATS (--nats)")
	fs.StringVar(&c.NATSTLSCert, "nats-tls-cert", c.NATSTLSCert, "TLS certificate (PEM file) the embedded NATS server presents on its gateways, and routes with --nats-route-tls")
	fs.StringVar(&c.NATSTLSKey, "nats-tls-key", c.NATSTLSKey, "private key (PEM file) of --nats-tls-cert")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", c.NATSTLSCA, "CA (PEM file) the other nodes' gateway and route certificates are verified with (empty: the system's roots)")
	fs.BoolVar(&c.NATSRouteTLS, "nats-route-tls", c.NATSRouteTLS, "TLS on the embedded NATS server's routes too (needs --nats-tls-cert and --nats-tls-key)")
	fs.BoolVar(&c.NATSGWInsecure, "nats-gateway-insecure", c.NATSGWInsecure, "let NATS gateways run without TLS (tests and labs only: gateways cross regions)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "interval of this node's heartbeats on NATS and keepalives on its relay links")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "a peer silent this long on NATS and on its relay link has left: its relay subtrees re-attach elsewhere (at least twice the interval; shorter detects dead nodes sooner, with more false alarms on loaded nodes)")
	fs.DurationVar(&c.ResumeGrace, "resume-grace", c.ResumeGrace, "how long a dead or restarted node's participants and producers stay in their rooms so that their sessions resume on another node first (0: they leave at once)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long sessions may continue once the node drains (SIGTERM or POST /admin/drain): the deadline its clients are told to migrate by")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go's profiler at /debug/pprof/ (admin token required)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "separate listen address (host:port) for /metrics and pprof, which then leave --http (empty: served on --http)")
	fs.DurationVar(&c.JoinDeadline, "join-deadline", c.JoinDeadline, "a signaling WebSocket that has not joined this long after opening is closed with code 4008 (0: no deadline)")
	fs.DurationVar(&c.EmptyRoomTimeout, "empty-room-timeout", c.EmptyRoomTimeout, "how long a room stays open on this node after its last participant here left, unless the room API gave it its own timeout (0: it closes with its last participant)")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "development mode: the development key pair and cluster secret when none is set, and /token mints tokens for the demo page (never in production)")
	fs.StringVar(&c.ClusterSecret, "cluster-secret", c.ClusterSecret, fmt.Sprintf("secret shared by every node of the cluster: NATS credentials and node keys derive from it (at least %d bytes; empty: random for a node alone, required to join others unless --dev)", cluster.MinSecretLen))
	fs.StringVar(&c.ClusterSecretPrev, "cluster-secret-previous", c.ClusterSecretPrev, "a second cluster secret still accepted, while the secret rotates")
	fs.BoolVar(&c.BWE, "bwe", c.BWE, "per-subscriber bandwidth estimation (transport-cc) and layer allocation; false: no stamping, no estimator, each consumer on the layer its preference allows (the bench's baseline)")
	fs.BoolVar(&c.NaiveBaseline, "naive-baseline", c.NaiveBaseline, "benchmarks only: forward with the textbook pion broadcast instead of Cascade's path")
	fs.IntVar(&c.TURNUDPPort, "turn-udp-port", c.TURNUDPPort, "embedded TURN server: UDP port (0: off)")
	fs.IntVar(&c.TURNTCPPort, "turn-tcp-port", c.TURNTCPPort, "embedded TURN server: TCP port, for clients whose network blocks UDP (0: off)")
	fs.IntVar(&c.TURNTLSPort, "turn-tls-port", c.TURNTLSPort, "embedded TURN server: TLS port, e.g. 443 (0: off; needs --turn-cert and --turn-key)")
	fs.StringVar(&c.TURNCert, "turn-cert", c.TURNCert, "TURN/TLS certificate chain (PEM file; reloaded when it changes)")
	fs.StringVar(&c.TURNKey, "turn-key", c.TURNKey, "TURN/TLS private key (PEM file)")
	fs.StringVar(&c.TURNHost, "turn-host", c.TURNHost, "host[:port] in the turns: URL handed to clients: the certificate's name, and the port of a TCP load balancer in front (empty: the public IP and --turn-tls-port)")
	fs.StringVar(&c.TURNSecret, "turn-secret", c.TURNSecret, fmt.Sprintf("TURN REST credentials secret (at least %d bytes; empty: random per process, as credentials are only good on the node that minted them)", turnsrv.MinSecretLen))
	fs.DurationVar(&c.TURNTTL, "turn-ttl", c.TURNTTL, "validity of the TURN credentials handed to a client at join (a session relayed through TURN longer than this loses its relay at the next refresh)")
	fs.IntVar(&c.TURNMaxAllocations, "turn-max-allocations", c.TURNMaxAllocations, "TURN allocations one participant may hold at a time")
	limitFlags(fs, c)
	webhookFlags(fs, c)
	fs.SetOutput(io.Discard)
	return fs
}

// envName is the environment variable of a flag: "udp-port" -> "CASCADE_UDP_PORT".
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig builds the node's Config from defaults, the YAML file, the environment (read
// through getenv; an empty value counts as unset) and args, then validates it. It returns
// flag.ErrHelp for -h.
func loadConfig(args []string, getenv func(string) string) (Config, error) {
	// First pass: which flags were given, and the config file.
	scratch := defaultConfig()
	var path string
	fs := nodeFlags(&scratch, &path)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]string{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = f.Value.String() })
	if _, ok := explicit["config"]; !ok {
		path = getenv(envName("config"))
	}

	cfg := defaultConfig()
	if path != "" {
		if err := readConfigFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	var ignored string
	final := nodeFlags(&cfg, &ignored)
	var envErr error
	final.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || envErr != nil {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("environment %s=%q: %w", name, v, unwrapFlagErr(err))
			}
		}
	})
	if envErr != nil {
		return Config{}, envErr
	}
	for name, v := range explicit {
		if l, ok := final.Lookup(name).Value.(*listFlag); ok {
			l.reset() // the flags' list replaces the environment's
		}
		if err := final.Set(name, v); err != nil {
			return Config{}, fmt.Errorf("flag -%s: %w", name, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// unwrapFlagErr turns the flag package's *strconv.NumError into a shorter message.
func unwrapFlagErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

// readConfigFile decodes the YAML file at path over cfg; an unknown key is an error.
func readConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.Strict())
	// Decode into a copy: an empty document would zero the defaults.
	decoded := *cfg
	switch err := dec.Decode(&decoded); {
	case errors.Is(err, io.EOF):
		return nil // empty file
	case err != nil:
		return fmt.Errorf("config file %s: %s", path, yaml.FormatError(err, false, true))
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: want a single YAML document", path)
	}
	*cfg = decoded
	return nil
}

// Validate reports the first problem of c.
func (c Config) Validate() error {
	if err := validateListen("http", c.HTTP); err != nil {
		return err
	}
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		return fmt.Errorf("udp-port %d: not a port (0..65535)", c.UDPPort)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("public-url %q: want http(s)://host[:port]", c.PublicURL)
		}
	}
	if c.TCPPort < -1 || c.TCPPort > 65535 {
		return fmt.Errorf("tcp-port %d: not a port (0..65535, or -1 for no ICE-TCP)", c.TCPPort)
	}
	if _, err := node.ParsePublicIPs(c.PublicIP); err != nil {
		return fmt.Errorf("public-ip %q: want one IPv4 address, one IPv6 address, or both comma-separated: %w", c.PublicIP, err)
	}
	if c.NATS == "" {
		if err := validateListen("nats-listen", c.NATSListen); err != nil {
			return err
		}
	}
	if c.Workers < 0 {
		return fmt.Errorf("workers %d: must be 0 (one per core) or more", c.Workers)
	}
	if hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		return fmt.Errorf("log-level %q: want trace, debug, info, warn, error or off", c.LogLevel)
	}
	if c.KeyframeInterval < 0 {
		return fmt.Errorf("keyframe-interval %v: must not be negative", c.KeyframeInterval)
	}
	if c.WorkerConsumers < 0 {
		return fmt.Errorf("worker-consumers %d: must not be negative", c.WorkerConsumers)
	}
	if c.RTXBudget < 0 || c.RTXBudget > 100 {
		return fmt.Errorf("rtx-budget %d: want a percentage, 0..100", c.RTXBudget)
	}
	if err := validateListen("relay", c.Relay); err != nil {
		return err
	}
	if c.RelayFanout < 1 {
		return fmt.Errorf("relay-fanout %d: must be at least 1", c.RelayFanout)
	}
	if c.RelayKeyRotation != 0 && c.RelayKeyRotation < time.Minute {
		return fmt.Errorf("relay-key-rotation %s: must be 0 (1h) or at least 1m", c.RelayKeyRotation)
	}
	if c.NATSCluster != "" {
		if c.NATS != "" {
			return errors.New("nats-cluster: only for the embedded NATS server (--nats is set)")
		}
		if err := validateListen("nats-cluster", c.NATSCluster); err != nil {
			return err
		}
	}
	for _, r := range c.routes() {
		if !strings.HasPrefix(r, "nats-route://") && !strings.HasPrefix(r, "nats://") {
			return fmt.Errorf("nats-routes: %q is not a nats-route://host:port URL", r)
		}
	}
	if c.NATSRoutes != "" && c.NATSCluster == "" {
		return errors.New("nats-routes needs --nats-cluster (the embedded server's route listener)")
	}
	gws, err := c.gateways()
	if err != nil {
		return err
	}
	if c.NATS == "" {
		if _, err := cluster.GatewayOptions(c.NATSClusterName, c.NATSGateway, gws); err != nil {
			return fmt.Errorf("nats-gateway: %w", err)
		}
	} else if c.NATSGateway != "" || len(gws) > 0 {
		return errors.New("nats-gateway: only for the embedded NATS server (--nats is set)")
	}
	if c.NATSCreds != "" && c.NATS == "" {
		return errors.New("nats-creds: only for an external NATS (--nats)")
	}
	if err := c.validateNATSTLS(); err != nil {
		return err
	}
	if c.HeartbeatInterval < 100*time.Millisecond {
		return fmt.Errorf("heartbeat-interval %v: at least 100ms", c.HeartbeatInterval)
	}
	if c.HeartbeatTimeout < 2*c.HeartbeatInterval {
		return fmt.Errorf("heartbeat-timeout %v: at least twice heartbeat-interval (%v)", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	if c.ResumeGrace < 0 {
		return fmt.Errorf("resume-grace %v: must not be negative", c.ResumeGrace)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("drain-timeout %v: must not be negative", c.DrainTimeout)
	}
	if c.MetricsListen != "" {
		if err := validateListen("metrics-listen", c.MetricsListen); err != nil {
			return err
		}
	}
	if c.JoinDeadline < 0 {
		return fmt.Errorf("join-deadline %v: must not be negative (0: no deadline)", c.JoinDeadline)
	}
	if c.EmptyRoomTimeout < 0 {
		return fmt.Errorf("empty-room-timeout %v: must not be negative (0: a room closes with its last participant)", c.EmptyRoomTimeout)
	}
	if err := c.validateTURN(); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.validateWebhook(); err != nil {
		return err
	}
	if _, err := c.clusterSecrets(); err != nil {
		return err
	}
	return validateKeys(c.APIKey, c.APISecret)
}

// gateways parses --nats-gateways: NAME=URL entries.
func (c Config) gateways() (map[string][]string, error) {
	out := map[string][]string{}
	for _, e := range strings.Split(c.NATSGateways, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		name, u, ok := strings.Cut(e, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("nats-gateways: %q is not NAME=nats://host:port", e)
		}
		out[name] = append(out[name], u)
	}
	return out, nil
}

// validateNATSTLS checks the TLS flags of the embedded NATS server: a certificate and its key
// together, route TLS only with routes and a certificate, a gateway only with TLS unless
// --nats-gateway-insecure.
func (c Config) validateNATSTLS() error {
	tls := c.NATSTLSCert != "" || c.NATSTLSKey != "" || c.NATSTLSCA != ""
	switch {
	case c.NATS != "" && (tls || c.NATSRouteTLS || c.NATSGWInsecure):
		return errors.New("nats-tls-*, nats-route-tls, nats-gateway-insecure: only for the embedded NATS server (--nats is set)")
	case tls && (c.NATSTLSCert == "" || c.NATSTLSKey == ""):
		return errors.New("nats-tls-cert and nats-tls-key: set both (and nats-tls-ca to verify the other nodes)")
	case c.NATSRouteTLS && c.NATSTLSCert == "":
		return errors.New("nats-route-tls needs --nats-tls-cert and --nats-tls-key")
	case c.NATSRouteTLS && c.NATSCluster == "":
		return errors.New("nats-route-tls needs --nats-cluster (the embedded server's route listener)")
	case c.NATSGateway != "" && c.NATSTLSCert == "" && !c.NATSGWInsecure:
		return errors.New("nats-gateway: gateways cross regions and need TLS: set --nats-tls-cert, --nats-tls-key and --nats-tls-ca, or --nats-gateway-insecure for tests and labs")
	}
	return nil
}

// routes splits --nats-routes.
func (c Config) routes() []string {
	var out []string
	for _, r := range strings.Split(c.NATSRoutes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// validateListen checks a host:port listen address with a numeric port.
func validateListen(name, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: not a listen address (host:port): %w", name, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s %q: port %q is not a number in 0..65535", name, addr, port)
	}
	return nil
}

// validateKeys checks an API key pair: both empty (development keys) or both set.
func validateKeys(key, secret string) error {
	switch {
	case key == "" && secret == "":
		return nil
	case key == "":
		return errors.New("api-secret is set but api-key is not: set both or neither")
	case secret == "":
		return errors.New("api-key is set but api-secret is not: set both or neither")
	case len(secret) < minSecretLen:
		return fmt.Errorf("api-secret is %d bytes: want at least %d", len(secret), minSecretLen)
	}
	return nil
}

// clusterSecrets resolves the cluster secrets: the configured ones; else, in development mode,
// the development secret; else, for a node alone (embedded NATS, no routes, no gateways), a
// random one. A node that joins others (--nats, routes, gateways) needs the cluster's secret.
func (c Config) clusterSecrets() (cluster.Secrets, error) {
	var s cluster.Secrets
	switch {
	case c.ClusterSecret != "":
		s = cluster.Secrets{c.ClusterSecret}
		if c.ClusterSecretPrev != "" {
			s = append(s, c.ClusterSecretPrev)
		}
		return s, s.Validate()
	case c.ClusterSecretPrev != "":
		return nil, errors.New("cluster-secret-previous is set but cluster-secret is not")
	case c.Dev:
		return cluster.Secrets{cluster.DevClusterSecret}, nil
	case c.NATS == "" && c.NATSRoutes == "" && c.NATSGateway == "" && c.NATSGateways == "":
		return cluster.Secrets{cluster.RandomSecret()}, nil
	}
	return nil, errors.New("cluster-secret is required to join other nodes (--nats, --nats-routes, --nats-gateway): set the same secret on every node, or --dev for a development cluster")
}

// rtxBudget is the node option for --rtx-budget: 0 (no retransmissions) is negative there.
func (c Config) rtxBudget() int {
	if c.RTXBudget == 0 {
		return -1
	}
	return c.RTXBudget
}

// printUsage writes fs's usage to w.
func printUsage(w io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintf(w, "Usage: %s\n\nFlags:\n", synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// advertisedHost is the host put in the node's announced HTTP URL and relay address: the host
// of the listen address if it names one, else the public IP (the IPv4 one of two: the relay
// links between nodes are IPv4), else 127.0.0.1 for a loopback-only node, else the first global
// unicast IPv4 address among addrs, else 127.0.0.1.
func advertisedHost(listenHost, publicIP string, loopbackOnly bool, addrs []net.Addr) string {
	if ip := net.ParseIP(listenHost); listenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		return listenHost
	}
	public, _ := node.ParsePublicIPs(publicIP) // validated
	for _, ip := range public {
		if ip.Is4() || len(public) == 1 {
			return ip.String()
		}
	}
	if !loopbackOnly {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// joinDeadline is the signal option for --join-deadline: 0 (no deadline) is negative there.
func (c Config) joinDeadline() time.Duration {
	if c.JoinDeadline == 0 {
		return -1
	}
	return c.JoinDeadline
}

// resumeGrace is the cluster option for --resume-grace: the flag's 0 (no grace) is the option's
// negative (the option's 0 is its default).
func resumeGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
