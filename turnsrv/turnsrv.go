// Package turnsrv is a node's embedded TURN server (pion/turn): UDP, TCP and TLS listeners,
// short-lived TURN REST credentials from a shared secret, and a relay that reaches nothing but
// the node's own media sockets. It is there for viewers whose networks block UDP (TURN over TCP
// or TLS) or every direct path: it is never an open relay into the network the node runs in.
//
// The rules:
//   - A CreatePermission, ChannelBind or Connect for a peer IP that is not one of the node's
//     media addresses is refused (403), and counted.
//   - TURN permissions are per IP: the relay sockets also drop, and count, every datagram to or
//     from a port of a permitted IP that is not a media socket's (the node's relay port, its
//     DNS resolver, anything else on the host).
//   - TCP relaying (RFC 6062) is not offered: allocations are UDP.
//   - A user (the part of the TURN username after the expiry) holds at most MaxAllocations
//     allocations at a time; more are refused with 486 (Allocation Quota Reached).
package turnsrv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Realm is the TURN realm of every node.
const Realm = "cascade"

// Defaults.
const (
	DefaultMaxAllocations = 16
	DefaultTTL            = 12 * time.Hour
	// MinSecretLen is the shortest shared secret accepted.
	MinSecretLen = 16
)

var (
	// ErrBadOptions wraps every validation error of Options.
	ErrBadOptions = errors.New("bad turn options")
	// ErrTCPRelay refuses TCP allocations (RFC 6062): the node's media is UDP.
	ErrTCPRelay = errors.New("turn: TCP relaying is not offered")
	// ErrNoRelayIP refuses an allocation of an address family the node has no relay address in.
	ErrNoRelayIP = errors.New("turn: no relay address in the requested address family")
)

// Media is one of the node's media sockets as a relay reaches it. Addr is an address clients
// know it by (the address and port of one of the node's ICE candidates). Local, when valid, is
// where this host delivers datagrams for Addr instead: for a public address the host does not
// hold (1:1 NAT in a cloud), where a datagram sent to it from inside may never come back.
type Media struct {
	Addr  netip.AddrPort
	Local netip.AddrPort
}

// Options configure a Server.
type Options struct {
	// Secret is the TURN REST shared secret (at least MinSecretLen bytes).
	Secret string
	// UDP, TCP and TLS are the listen addresses (host:port) of the three listeners; empty
	// turns a listener off. At least one is needed.
	UDP, TCP, TLS string
	// TLSConfig serves the TLS listener (its certificate); required with TLS.
	TLSConfig *tls.Config
	// Host is the host (an IP address or a name) put in the turn: URLs handed to clients.
	Host string
	// TLSHost is the host[:port] put in the turns: URL (the certificate's name; a port when a
	// TCP load balancer in front listens on another port); empty means Host and the TLS port.
	TLSHost string
	// RelayIPs are the addresses put in XOR-RELAYED-ADDRESS, at most one per address family:
	// the node's public (or advertised) addresses.
	RelayIPs []net.IP
	// RelayBind is the address relay sockets bind to; empty means every address.
	RelayBind string
	// Media are the only peers a relay reaches.
	Media []Media
	// MaxAllocations caps the allocations of one user; 0 means DefaultMaxAllocations.
	MaxAllocations int
	// Logger receives the server's logs; nil means a null logger.
	Logger hclog.Logger
	// Registerer receives the cascade_turn_* metrics; nil means a private registry.
	Registerer prometheus.Registerer
}

// Validate reports the first problem of o, wrapped in ErrBadOptions.
func (o Options) Validate() error {
	switch {
	case len(o.Secret) < MinSecretLen:
		return fmt.Errorf("%w: secret of %d bytes, want at least %d", ErrBadOptions, len(o.Secret), MinSecretLen)
	case o.UDP == "" && o.TCP == "" && o.TLS == "":
		return fmt.Errorf("%w: no listener", ErrBadOptions)
	case o.TLS != "" && o.TLSConfig == nil:
		return fmt.Errorf("%w: a TLS listener needs a certificate", ErrBadOptions)
	case o.Host == "":
		return fmt.Errorf("%w: no host for the TURN URLs", ErrBadOptions)
	case len(o.RelayIPs) == 0:
		return fmt.Errorf("%w: no relay address", ErrBadOptions)
	case len(o.Media) == 0:
		return fmt.Errorf("%w: no media address to relay to", ErrBadOptions)
	case o.MaxAllocations < 0:
		return fmt.Errorf("%w: max allocations %d", ErrBadOptions, o.MaxAllocations)
	}
	if o.RelayBind != "" && net.ParseIP(o.RelayBind) == nil {
		return fmt.Errorf("%w: relay bind %q is not an IP address", ErrBadOptions, o.RelayBind)
	}
	return nil
}

// ICEServer is what a client needs to use the server: the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Server is a running TURN server.
type Server struct {
	o   Options
	log hclog.Logger
	m   *metrics
	srv *turn.Server

	ips   map[netip.Addr]struct{}           // peer IPs a permission may name
	peers map[netip.AddrPort]netip.AddrPort // media address -> where to send it
	back  map[netip.AddrPort]netip.AddrPort // local delivery address -> the media address it stands for

	udpAddr, tcpAddr, tlsAddr net.Addr

	mu     sync.Mutex
	allocs map[string]int // live allocations per user
}

// New starts a server with the listeners of o.
func New(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MaxAllocations == 0 {
		o.MaxAllocations = DefaultMaxAllocations
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	s := &Server{o: o, log: o.Logger.Named("turn"), ips: map[netip.Addr]struct{}{},
		peers: map[netip.AddrPort]netip.AddrPort{}, back: map[netip.AddrPort]netip.AddrPort{}, allocs: map[string]int{}}
	for _, md := range o.Media {
		a := unmap(md.Addr)
		s.ips[a.Addr()] = struct{}{}
		if l := unmap(md.Local); md.Local.IsValid() && l != a {
			s.peers[a] = l
			s.back[l] = a
		} else {
			s.peers[a] = a
		}
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m

	gen := &relayGen{s: s}
	var pcs []turn.PacketConnConfig
	var lns []turn.ListenerConfig
	closeAll := func() {
		for _, p := range pcs {
			_ = p.PacketConn.Close()
		}
		for _, l := range lns {
			_ = l.Listener.Close()
		}
	}
	if o.UDP != "" {
		pc, err := net.ListenPacket("udp", o.UDP)
		if err != nil {
			return nil, fmt.Errorf("turn udp listen %s: %w", o.UDP, err)
		}
		s.udpAddr = pc.LocalAddr()
		pcs = append(pcs, turn.PacketConnConfig{PacketConn: pc, RelayAddressGenerator: gen, PermissionHandler: s.permit})
	}
	for _, l := range []struct {
		addr string
		tls  bool
		to   *net.Addr
	}{{o.TCP, false, &s.tcpAddr}, {o.TLS, true, &s.tlsAddr}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("turn tcp listen %s: %w", l.addr, err)
		}
		*l.to = ln.Addr()
		if l.tls {
			ln = tls.NewListener(ln, o.TLSConfig)
		}
		lns = append(lns, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: gen, PermissionHandler: s.permit})
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	lf.Writer = s.log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:             Realm,
		AuthHandler:       turn.LongTermTURNRESTAuthHandler(o.Secret, lf.NewLogger("turn")),
		QuotaHandler:      s.quota,
		EventHandler:      s.events(),
		PacketConnConfigs: pcs,
		ListenerConfigs:   lns,
		LoggerFactory:     lf,
	})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("turn server: %w", err)
	}
	s.srv = srv
	s.log.Info("TURN server listening", "udp", s.udpAddr, "tcp", s.tcpAddr, "tls", s.tlsAddr, "media", len(s.peers))
	return s, nil
}

// Close stops the listeners and ends every allocation.
func (s *Server) Close() error { return s.srv.Close() }

// UDPAddr, TCPAddr and TLSAddr are the listeners' addresses (nil when off).
func (s *Server) UDPAddr() net.Addr { return s.udpAddr }
func (s *Server) TCPAddr() net.Addr { return s.tcpAddr }
func (s *Server) TLSAddr() net.Addr { return s.tlsAddr }

// ICEServer mints credentials for user, valid for ttl (0: DefaultTTL), with the URLs of every
// listener: turn: over UDP and TCP, turns: over TLS. user must not contain ':'.
func (s *Server) ICEServer(user string, ttl time.Duration) (ICEServer, error) {
	if strings.Contains(user, ":") {
		return ICEServer{}, fmt.Errorf("turn: user %q contains ':'", user)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	name, pass, err := turn.GenerateLongTermTURNRESTCredentials(s.o.Secret, user, ttl)
	if err != nil {
		return ICEServer{}, err
	}
	return ICEServer{URLs: s.URLs(), Username: name, Credential: pass}, nil
}

// URLs are the TURN URLs of the server's listeners.
func (s *Server) URLs() []string {
	var urls []string
	if s.udpAddr != nil {
		urls = append(urls, "turn:"+net.JoinHostPort(s.o.Host, port(s.udpAddr))+"?transport=udp")
	}
	if s.tcpAddr != nil {
		urls = append(urls, "turn:"+net.JoinHostPort(s.o.Host, port(s.tcpAddr))+"?transport=tcp")
	}
	if s.tlsAddr != nil {
		host := s.o.TLSHost
		if host == "" {
			host = net.JoinHostPort(s.o.Host, port(s.tlsAddr))
		} else if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, port(s.tlsAddr))
		}
		urls = append(urls, "turns:"+host+"?transport=tcp")
	}
	return urls
}

func port(a net.Addr) string {
	switch a := a.(type) {
	case *net.UDPAddr:
		return strconv.Itoa(a.Port)
	case *net.TCPAddr:
		return strconv.Itoa(a.Port)
	}
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// permit is the PermissionHandler of every listener: CreatePermission, ChannelBind and Connect
// only for the node's media addresses.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok {
		_, ok = s.ips[ip.Unmap()]
	}
	if !ok {
		s.m.refused.Inc()
		s.log.Debug("refused a permission to a peer that is not this node's media", "client", client, "peer", peer)
	}
	return ok
}

// quota is the QuotaHandler: at most MaxAllocations live allocations per user.
func (s *Server) quota(user, _ string, src net.Addr) bool {
	s.mu.Lock()
	n := s.allocs[user]
	s.mu.Unlock()
	if n >= s.o.MaxAllocations {
		s.m.quota.Inc()
		s.log.Debug("allocation quota reached", "user", user, "client", src, "allocations", n)
		return false
	}
	return true
}

func (s *Server) events() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, user, _, method string, ok bool) {
			if !ok {
				s.m.authFailed.Inc()
				s.log.Debug("TURN authentication failed", "client", src, "username", user, "method", method)
			}
		},
		OnAllocationCreated: func(_, _ net.Addr, _, user, _ string, _ net.Addr, _ int) {
			s.mu.Lock()
			s.allocs[user]++
			s.mu.Unlock()
			s.m.allocations.Inc()
		},
		OnAllocationDeleted: func(_, _ net.Addr, _, user, _ string) {
			s.mu.Lock()
			if s.allocs[user]--; s.allocs[user] <= 0 {
				delete(s.allocs, user)
			}
			s.mu.Unlock()
			s.m.allocations.Dec()
		},
	}
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
