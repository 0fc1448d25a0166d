package main

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// env returns a getenv over a fixed map.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cascade.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	got, err := loadConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		HTTP: ":7880", UDPPort: 7882, TCPPort: 7879, NATSListen: "127.0.0.1:4222", LogLevel: "info",
		KeyframeInterval: 500 * time.Millisecond, WorkerConsumers: node.DefaultWorkerConsumers, RTXBudget: 25, BWE: true,
		Relay: ":7881", RelayFanout: 3, DrainTimeout: 30 * time.Second, NATSClusterName: "cascade",
		HeartbeatInterval: time.Second, HeartbeatTimeout: 3 * time.Second, ResumeGrace: 10 * time.Second,
		TURNTTL: 12 * time.Hour, TURNMaxAllocations: 16,
		JoinRate: 50, JoinBurst: 300, MaxRooms: 5000, MaxRoomParticipants: 10000, MaxTracks: 16,
		ChatRate: 10, ChatBurst: 30, ChatBytes: 64 << 10, DataRate: 100, DataBurst: 200, DataBytes: 256 << 10, NackMaxSeqs: 64,
		JoinDeadline: 10 * time.Second,
	}
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	path := writeFile(t, `
http: "127.0.0.1:9000"
udp-port: 10000
region: from-yaml
node-id: yaml-node
log-level: debug
log-json: true
keyframe-interval: 250ms
worker-consumers: 7
workers: 3
rtx-budget: 10
`)
	getenv := env(map[string]string{
		"CASCADE_UDP_PORT":    "20000",
		"CASCADE_REGION":      "from-env",
		"CASCADE_WORKERS":     "5",
		"CASCADE_LOG_JSON":    "false",
		"CASCADE_API_KEY":     "envkey",
		"CASCADE_API_SECRET":  "env-secret-16-bytes",
		"CASCADE_PUBLIC_IP":   "",   // empty counts as unset
		"CASCADE_NODE_ID":     "",   // so the YAML value stays
		"CASCADE_UNKNOWN_VAR": "42", // not a flag: ignored
		"CASCADE_RTX_BUDGET":  "40",
	})
	got, err := loadConfig([]string{"--config", path, "--region", "from-flag", "--workers=0", "--public-ip", "192.0.2.1"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		HTTP:              "127.0.0.1:9000", // YAML over default
		UDPPort:           20000,            // env over YAML
		TCPPort:           7879,             // default
		PublicIP:          "192.0.2.1",      // flag over default
		NATSListen:        "127.0.0.1:4222", // default
		NodeID:            "yaml-node",      // YAML, empty env ignored
		Region:            "from-flag",      // flag over env over YAML
		Workers:           0,                // flag set to the zero value still wins
		APIKey:            "envkey",
		APISecret:         "env-secret-16-bytes",
		LogLevel:          "debug",
		LogJSON:           false, // env false over YAML true
		KeyframeInterval:  250 * time.Millisecond,
		WorkerConsumers:   7,
		RTXBudget:         40, // env over YAML
		BWE:               true,
		Relay:             ":7881",
		RelayFanout:       3,
		DrainTimeout:      30 * time.Second,
		HeartbeatInterval: time.Second, HeartbeatTimeout: 3 * time.Second, ResumeGrace: 10 * time.Second,
		TURNTTL: 12 * time.Hour, TURNMaxAllocations: 16,
		NATSClusterName: "cascade",
		JoinDeadline:    10 * time.Second,
	}
	want = withDefaultLimits(want)
	if got != want {
		t.Errorf("config:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadConfigFilePath(t *testing.T) {
	fromEnv := writeFile(t, "region: env-file\n")
	fromFlag := writeFile(t, "region: flag-file\n")
	getenv := env(map[string]string{"CASCADE_CONFIG": fromEnv})

	got, err := loadConfig(nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if got.Region != "env-file" {
		t.Errorf("CASCADE_CONFIG: region %q, want env-file", got.Region)
	}
	got, err = loadConfig([]string{"-config=" + fromFlag}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if got.Region != "flag-file" {
		t.Errorf("--config over CASCADE_CONFIG: region %q, want flag-file", got.Region)
	}
	for _, empty := range []string{"", "# only a comment\n", "---\n", "region:\n"} {
		if got, err := loadConfig([]string{"--config", writeFile(t, empty)}, env(nil)); err != nil || got != defaultConfig() {
			t.Errorf("file %q: %+v, %v; want the defaults", empty, got, err)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		yaml string // written to a file passed with --config when set
		want string // substring of the error
	}{
		{name: "yaml unknown key", yaml: "http: \":1\"\nudp_port: 5\n", want: "udp_port"},
		{name: "yaml unknown nested key", yaml: "bogus-key:\n  a: 1\n", want: "bogus-key"},
		{name: "yaml wrong type", yaml: "udp-port: many\n", want: "udp-port"},
		{name: "yaml bad duration", yaml: "keyframe-interval: soon\n", want: "soon"},
		{name: "yaml syntax", yaml: "http: [\n", want: "config file"},
		{name: "yaml two documents", yaml: "region: a\n---\nregion: b\n", want: "single YAML document"},
		{name: "yaml not a mapping", yaml: "- a\n", want: "config file"},
		{name: "missing file", args: []string{"--config", "/nonexistent/cascade.yaml"}, want: "/nonexistent/cascade.yaml"},
		{name: "env int", env: map[string]string{"CASCADE_UDP_PORT": "abc"}, want: "CASCADE_UDP_PORT"},
		{name: "env bool", env: map[string]string{"CASCADE_LOG_JSON": "maybe"}, want: "CASCADE_LOG_JSON"},
		{name: "env duration", env: map[string]string{"CASCADE_KEYFRAME_INTERVAL": "5"}, want: "CASCADE_KEYFRAME_INTERVAL"},
		{name: "env validated", env: map[string]string{"CASCADE_LOG_LEVEL": "loud"}, want: "log-level"},
		{name: "unknown flag", args: []string{"--nope"}, want: "nope"},
		{name: "metrics-listen", args: []string{"--metrics-listen", "9090"}, want: "metrics-listen"},
		{name: "join-deadline negative", args: []string{"--join-deadline", "-1s"}, want: "join-deadline"},
		{name: "bad flag value", args: []string{"--workers", "x"}, want: "workers"},
		{name: "positional argument", args: []string{"extra"}, want: `unexpected argument "extra"`},

		{name: "udp port high", args: []string{"--udp-port", "65536"}, want: "udp-port 65536"},
		{name: "udp port negative", args: []string{"--udp-port=-1"}, want: "udp-port -1"},
		{name: "http no port", args: []string{"--http", "localhost"}, want: "http \"localhost\""},
		{name: "http bad port", args: []string{"--http", ":99999"}, want: "port \"99999\""},
		{name: "http named port", args: []string{"--http", ":http"}, want: "port \"http\""},
		{name: "nats-listen bad", args: []string{"--nats-listen", "4222"}, want: "nats-listen"},
		{name: "public ip", args: []string{"--public-ip", "example.com"}, want: "public-ip \"example.com\""},
		{name: "two public ipv4", args: []string{"--public-ip", "192.0.2.1,192.0.2.2"}, want: "public-ip \"192.0.2.1,192.0.2.2\""},
		{name: "tcp port", args: []string{"--tcp-port", "65536"}, want: "tcp-port 65536"},
		{name: "tcp port negative", args: []string{"--tcp-port=-2"}, want: "tcp-port -2"},
		{name: "public url", args: []string{"--public-url", "node1.example.com"}, want: "public-url"},
		{name: "relay bad", args: []string{"--relay", "7881"}, want: "relay"},
		{name: "heartbeat timeout too short", args: []string{"--heartbeat-interval", "2s", "--heartbeat-timeout", "3s"}, want: "heartbeat-timeout"},
		{name: "heartbeat interval too short", args: []string{"--heartbeat-interval", "10ms"}, want: "heartbeat-interval"},
		{name: "relay fanout", args: []string{"--relay-fanout", "0"}, want: "relay-fanout 0"},
		{name: "routes without cluster", args: []string{"--nats-routes", "nats-route://127.0.0.1:6222"}, want: "needs --nats-cluster"},
		{name: "route not a URL", args: []string{"--nats-cluster", ":6222", "--nats-routes", "127.0.0.1:6222"}, want: "nats-route://"},
		{name: "gateway entry", args: []string{"--nats-gateway", ":7222", "--nats-gateways", "us"}, want: "NAME=nats://"},
		{name: "gateway url", args: []string{"--nats-gateway", ":7222", "--nats-gateways", "us=:::"}, want: "gateway"},
		{name: "gateways without listen", args: []string{"--nats-gateways", "us=nats://h:7222"}, want: "gateway listen"},
		{name: "gateway without tls", args: []string{"--dev", "--nats-gateway", ":7222"}, want: "--nats-gateway-insecure"},
		{name: "nats tls cert without key", args: []string{"--nats-tls-cert", "c.pem"}, want: "nats-tls-key"},
		{name: "nats route tls without cert", args: []string{"--nats-cluster", ":6222", "--nats-route-tls"}, want: "nats-route-tls needs --nats-tls-cert"},
		{name: "nats route tls without cluster", args: []string{"--nats-tls-cert", "c", "--nats-tls-key", "k", "--nats-route-tls"}, want: "nats-route-tls needs --nats-cluster"},
		{name: "nats tls with external nats", args: []string{"--dev", "--nats", "nats://x:4222", "--nats-tls-cert", "c", "--nats-tls-key", "k"}, want: "embedded"},
		{name: "creds without external nats", args: []string{"--nats-creds", "/x.creds"}, want: "nats-creds"},
		{name: "cluster with external nats", args: []string{"--nats", "nats://x:4222", "--nats-cluster", ":6222"}, want: "embedded"},
		{name: "log level", args: []string{"--log-level", "verbose"}, want: "log-level \"verbose\""},
		{name: "negative workers", args: []string{"--workers=-2"}, want: "workers -2"},
		{name: "negative keyframe interval", args: []string{"--keyframe-interval=-1s"}, want: "keyframe-interval"},
		{name: "negative worker consumers", args: []string{"--worker-consumers=-1"}, want: "worker-consumers"},
		{name: "rtx budget negative", args: []string{"--rtx-budget=-1"}, want: "rtx-budget -1"},
		{name: "rtx budget over 100", env: map[string]string{"CASCADE_RTX_BUDGET": "150"}, want: "rtx-budget 150"},
		{name: "key without secret", args: []string{"--api-key", "k"}, want: "api-secret is not"},
		{name: "secret without key", args: []string{"--api-secret", "0123456789abcdef"}, want: "api-key is not"},
		{name: "short secret", args: []string{"--api-key", "k", "--api-secret", "short"}, want: "api-secret is 5 bytes"},
		{name: "turn port high", args: []string{"--turn-udp-port", "70000"}, want: "turn-udp-port 70000"},
		{name: "turn tls without cert", args: []string{"--turn-tls-port", "443"}, want: "turn-cert"},
		{name: "turn cert without tls port", args: []string{"--turn-cert", "c.pem", "--turn-key", "k.pem"}, want: "turn-tls-port"},
		{name: "turn tcp and tls one port", args: []string{"--turn-tcp-port", "443", "--turn-tls-port", "443", "--turn-cert", "c", "--turn-key", "k"}, want: "both 443"},
		{name: "turn short secret", args: []string{"--turn-secret", "short"}, want: "turn-secret is 5 bytes"},
		{name: "turn ttl", env: map[string]string{"CASCADE_TURN_TTL": "10s"}, want: "turn-ttl"},
		{name: "turn max allocations", args: []string{"--turn-max-allocations", "0"}, want: "turn-max-allocations 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeFile(t, tt.yaml)}, args...)
			}
			cfg, err := loadConfig(args, env(tt.env))
			if err == nil {
				t.Fatalf("loadConfig = %+v, want an error containing %q", cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	if _, err := loadConfig([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestRTXBudgetOption: --rtx-budget 0 means no retransmissions, a negative node option (the
// node's zero value is its default).
func TestRTXBudgetOption(t *testing.T) {
	for flagValue, want := range map[string]int{"0": -1, "1": 1, "25": 25, "100": 100} {
		cfg, err := loadConfig([]string{"--rtx-budget", flagValue}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.rtxBudget(); got != want {
			t.Errorf("--rtx-budget %s: node option %d, want %d", flagValue, got, want)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.HTTP = "[::1]:0" },
		func(c *Config) { c.HTTP = "example.com:80" },
		func(c *Config) { c.PublicIP = "2001:db8::1" },
		func(c *Config) { c.PublicIP = "192.0.2.1,2001:db8::1" },
		func(c *Config) { c.TCPPort = -1 },
		func(c *Config) { c.TCPPort = 0 },
		func(c *Config) { c.UDPPort = 0 },
		func(c *Config) { c.UDPPort = 65535 },
		func(c *Config) { c.LogLevel = "WARN" },
		func(c *Config) {
			c.NATS, c.NATSListen, c.ClusterSecret = "nats://10.0.0.1:4222", "", "0123456789abcdef0123456789abcdef"
		},
		func(c *Config) { c.NATS, c.NATSListen, c.Dev = "nats://10.0.0.1:4222", "", true },
		func(c *Config) { c.Dev, c.NATSGateway, c.NATSGWInsecure = true, ":7222", true },
		func(c *Config) {
			c.Dev, c.NATSGateway, c.NATSTLSCert, c.NATSTLSKey, c.NATSTLSCA = true, ":7222", "c.pem", "k.pem", "ca.pem"
		},
		func(c *Config) {
			c.Dev, c.NATSCluster, c.NATSRouteTLS, c.NATSTLSCert, c.NATSTLSKey = true, ":6222", true, "c.pem", "k.pem"
		},
		func(c *Config) { c.APIKey, c.APISecret = "k", "0123456789abcdef" },
	} {
		c := defaultConfig()
		mod(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", c, err)
		}
	}
}

// TestEveryFlagHasEnvAndYAML checks that each flag of `cascade node` maps to a YAML key of the
// same name, so that the three ways to set a field stay in step.
func TestEveryFlagHasEnvAndYAML(t *testing.T) {
	var cfg Config
	fs := nodeFlags(&cfg, new(string))
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		path := writeFile(t, f.Name+": \n")
		if _, err := loadConfig([]string{"--config", path}, env(nil)); err != nil && strings.Contains(err.Error(), "unknown") {
			t.Errorf("flag --%s has no YAML key: %v", f.Name, err)
		}
	})
	if got := envName("keyframe-interval"); got != "CASCADE_KEYFRAME_INTERVAL" {
		t.Errorf("envName = %q", got)
	}
}

func TestLoadTokenConfig(t *testing.T) {
	keys := map[string]string{"CASCADE_API_KEY": "envkey", "CASCADE_API_SECRET": "env-secret-16-bytes"}
	got, err := loadTokenConfig([]string{"--room", "r", "--identity", "i", "--publish"}, env(keys))
	if err != nil {
		t.Fatal(err)
	}
	want := tokenConfig{Room: "r", Identity: "i", Publish: true, TTL: 24 * time.Hour, APIKey: "envkey", APISecret: "env-secret-16-bytes"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got, err = loadTokenConfig([]string{"--room=r", "--identity=i", "--subscribe", "--ttl=1h", "--api-key=fk", "--api-secret=flag-secret-16-bytes"}, env(keys))
	if err != nil {
		t.Fatal(err)
	}
	want = tokenConfig{Room: "r", Identity: "i", Subscribe: true, TTL: time.Hour, APIKey: "fk", APISecret: "flag-secret-16-bytes"}
	if got != want {
		t.Errorf("flags over env: got %+v, want %+v", got, want)
	}

	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--identity", "i"}, want: "--room"},
		{args: []string{"--room", "r"}, want: "--identity"},
		{args: []string{"--room", "r", "--identity", "i", "--ttl", "0s"}, want: "ttl"},
		{args: []string{"--room", "r", "--identity", "i", "--ttl", "-1h"}, want: "ttl"},
		{args: []string{"--room", "r", "--identity", "i", "--api-key", "k"}, want: "api-secret"},
		{args: []string{"--room", "r", "--identity", "i"}, env: map[string]string{"CASCADE_API_SECRET": "x"}, want: "api-key"},
		{args: []string{"--room", "r", "--identity", "i", "--api-key", "k", "--api-secret", "short"}, want: "bytes"},
		{args: []string{"--room", "r", "--identity", "i", "stray"}, want: "stray"},
		{args: []string{"--admin", "--room", "r"}, want: "go together"},
	} {
		if _, err := loadTokenConfig(tt.args, env(tt.env)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("loadTokenConfig(%q) error %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}

func TestJoinDeadlineOption(t *testing.T) {
	c := defaultConfig()
	if c.JoinDeadline != 10*time.Second || c.joinDeadline() != 10*time.Second {
		t.Errorf("default join deadline %v (option %v), want 10s", c.JoinDeadline, c.joinDeadline())
	}
	c.JoinDeadline = 0
	if c.joinDeadline() >= 0 {
		t.Errorf("--join-deadline 0 gives option %v, want negative (none)", c.joinDeadline())
	}
}

func TestAdvertisedHost(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(8, 32)},
	}
	for _, tt := range []struct {
		host, publicIP string
		loopback       bool
		addrs          []net.Addr
		want           string
	}{
		{host: "node1.example.com", publicIP: "192.0.2.1", want: "node1.example.com"},
		{host: "10.9.9.9", want: "10.9.9.9"},
		{host: "", publicIP: "192.0.2.1", addrs: addrs, want: "192.0.2.1"},
		{host: "0.0.0.0", publicIP: "192.0.2.1", want: "192.0.2.1"},
		{host: "", publicIP: "2001:db8::1,192.0.2.1", addrs: addrs, want: "192.0.2.1"},
		{host: "", publicIP: "2001:db8::1", addrs: addrs, want: "2001:db8::1"},
		{host: "::", addrs: addrs, want: "10.1.2.3"},
		{host: "", addrs: addrs, loopback: true, want: "127.0.0.1"},
		{host: "", addrs: addrs[:2], want: "127.0.0.1"},
	} {
		if got := advertisedHost(tt.host, tt.publicIP, tt.loopback, tt.addrs); got != tt.want {
			t.Errorf("advertisedHost(%q, %q, %v) = %q, want %q", tt.host, tt.publicIP, tt.loopback, got, tt.want)
		}
	}
}

func TestClusterSecrets(t *testing.T) {
	long := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want int    // secrets resolved
		err  string // else this error
	}{
		{name: "alone: random", mod: func(*Config) {}, want: 1},
		{name: "set", mod: func(c *Config) { c.ClusterSecret = long }, want: 1},
		{name: "rotating", mod: func(c *Config) { c.ClusterSecret, c.ClusterSecretPrev = long, long+"x" }, want: 2},
		{name: "dev", mod: func(c *Config) { c.Dev, c.NATSRoutes = true, "nats-route://127.0.0.1:6222" }, want: 1},
		{name: "short", mod: func(c *Config) { c.ClusterSecret = "short" }, err: "at least 32"},
		{name: "previous alone", mod: func(c *Config) { c.ClusterSecretPrev = long }, err: "cluster-secret is not"},
		{name: "joining without", mod: func(c *Config) { c.NATS = "nats://10.0.0.1:4222" }, err: "cluster-secret is required"},
		{name: "routes without", mod: func(c *Config) { c.NATSRoutes = "nats-route://127.0.0.1:6222" }, err: "cluster-secret is required"},
	} {
		c := defaultConfig()
		tc.mod(&c)
		s, err := c.clusterSecrets()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		case tc.err == "" && (err != nil || len(s) != tc.want):
			t.Errorf("%s: %d secrets, error %v; want %d", tc.name, len(s), err, tc.want)
		}
	}
	if a, _ := defaultConfig().clusterSecrets(); len(a) == 1 {
		if b, _ := defaultConfig().clusterSecrets(); a[0] == b[0] {
			t.Error("a node alone drew the same random secret twice")
		}
	}
}
