package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Node. The zero value of every field has a usable default (see withDefaults).
type Options struct {
	// ID names the node in the cluster; empty means a random id.
	ID string
	// Region is the node's region label (free text, for placement).
	Region string
	// HTTPURL is the URL clients reach this node at, announced in the heartbeat.
	HTTPURL string
	// PublicIP is the address put into the host candidates of ICE, UDP and TCP (NAT 1:1), in place
	// of the host's own addresses: one IPv4 address, one IPv6 address, or both, comma-separated
	// ("203.0.113.7,2001:db8::7"). A family without a public IP keeps its host addresses. Empty
	// means the host addresses.
	PublicIP string
	// UDPPort is the first media UDP port: worker i listens on UDPPort+i. 0 picks free ports.
	UDPPort int
	// TCPPort is the node's one ICE-TCP port (passive TCP candidates), shared by every worker:
	// clients whose UDP is blocked reach the node over TCP. 0 picks a free port; TCPDisabled
	// (any negative value) turns ICE-TCP off.
	TCPPort int
	// UDPHost is the address the media sockets (the workers' UDP sockets and the ICE-TCP
	// listener) bind to; empty means all addresses of both families, IPv4 and IPv6, on one
	// dual-stack socket each (127.0.0.1 when LoopbackOnly). An IPv6 address ("::1") makes the
	// node IPv6 only.
	UDPHost string
	// ListenUDP makes a worker's media socket; nil means net.ListenUDP. Tests use it to open the
	// sockets in another network namespace.
	ListenUDP func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)
	// ListenTCP makes the ICE-TCP listener; nil means net.ListenTCP (as ListenUDP, for tests).
	ListenTCP func(network string, laddr *net.TCPAddr) (*net.TCPListener, error)
	// Workers is the number of media workers; 0 means runtime.NumCPU().
	Workers int
	// LoopbackOnly keeps all media on 127.0.0.1: only loopback candidates are gathered and
	// packets from other sources are dropped. For tests and single-machine demos.
	LoopbackOnly bool
	// KeyframeInterval is the shortest time between two keyframe requests sent to one producer.
	KeyframeInterval time.Duration
	// RTXBudget caps the retransmissions to one subscriber (or relay child), in percent of the
	// media bytes forwarded to it (0 means DefaultRTXBudget; negative: no retransmissions, NACKs
	// turn into keyframe requests). See package rtxbudget for the rest of the policy.
	RTXBudget int
	// WorkerConsumers is how many consumers one room may have on one worker before further
	// subscribers of that room go to a router on another worker.
	WorkerConsumers int
	// Limits cap rooms, participants, tracks, chat and data rates and NACK ranges (zero fields:
	// the defaults).
	Limits Limits
	// EmptyRoomTimeout is how long a room stays open here after its last participant here left,
	// for rooms without an empty timeout of their own (RoomSettings.EmptyTimeout); a join
	// meanwhile keeps it. 0: the room closes with its last participant.
	EmptyRoomTimeout time.Duration
	// Naive replaces Cascade's forwarding with the textbook pion broadcast: one
	// TrackLocalStaticRTP per producer written to every subscriber's PeerConnection, with pion's
	// default interceptors. Only the benchmark uses it, as the baseline.
	Naive bool
	// NoBWE turns bandwidth estimation off: subscribers' packets are not stamped with
	// transport-wide sequence numbers, no estimator or layer allocator runs, and consumers
	// forward the layer their preference allows (the CLI's --bwe=false, the bench's baseline).
	NoBWE bool
	// Logger receives the node's logs; nil means a null logger.
	Logger hclog.Logger
	// Registerer receives the node's Prometheus metrics; nil means a private registry.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	DefaultKeyframeInterval = 500 * time.Millisecond
	DefaultWorkerConsumers  = 100
	DefaultRTXBudget        = 25 // percent

	// HostAcceptanceWait is how long ICE waits, with ICE-TCP on, before it nominates a host
	// pair, so that a UDP pair that passes its check a little later still beats a TCP one (ICE
	// prefers UDP when both have passed). It delays the start of media by as much at most.
	HostAcceptanceWait = 100 * time.Millisecond

	// TCPDisabled as Options.TCPPort turns ICE-TCP off.
	TCPDisabled = -1
)

// ErrBadOptions wraps every validation error of Options.
var ErrBadOptions = errors.New("bad node options")

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.KeyframeInterval <= 0 {
		o.KeyframeInterval = DefaultKeyframeInterval
	}
	if o.RTXBudget == 0 {
		o.RTXBudget = DefaultRTXBudget
	}
	if o.WorkerConsumers <= 0 {
		o.WorkerConsumers = DefaultWorkerConsumers
	}
	if o.UDPHost == "" && o.LoopbackOnly {
		o.UDPHost = "127.0.0.1"
	}
	o.Limits = o.Limits.withDefaults()
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.ListenUDP == nil {
		o.ListenUDP = net.ListenUDP
	}
	if o.ListenTCP == nil {
		o.ListenTCP = net.ListenTCP
	}
	return o
}

// Validate reports the first problem with the options, wrapped in ErrBadOptions.
func (o Options) Validate() error {
	if o.UDPPort < 0 || o.UDPPort+o.Workers > 65536 {
		return fmt.Errorf("%w: udp port %d (+%d workers) out of range", ErrBadOptions, o.UDPPort, o.Workers)
	}
	if o.TCPPort > 65535 {
		return fmt.Errorf("%w: tcp port %d out of range", ErrBadOptions, o.TCPPort)
	}
	if _, err := ParsePublicIPs(o.PublicIP); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if o.UDPHost != "" && net.ParseIP(o.UDPHost) == nil {
		return fmt.Errorf("%w: udp host %q is not an IP address", ErrBadOptions, o.UDPHost)
	}
	return nil
}

// ParsePublicIPs parses a public IP setting (Options.PublicIP): empty, or one IPv4 address, one
// IPv6 address, or one of each, comma-separated. An IPv4-mapped IPv6 address counts as IPv4.
func ParsePublicIPs(s string) ([]netip.Addr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ips []netip.Addr
	var v4, v6 bool
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		ip, err := netip.ParseAddr(f)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("public ip %q is not an IP address", f)
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() || ip.IsMulticast() {
			return nil, fmt.Errorf("public ip %q cannot be reached", f)
		}
		if ip.Is4() && v4 || ip.Is6() && v6 {
			return nil, fmt.Errorf("public ip %q: at most one IPv4 and one IPv6 address", s)
		}
		v4, v6 = v4 || ip.Is4(), v6 || ip.Is6()
		ips = append(ips, ip)
	}
	return ips, nil
}
