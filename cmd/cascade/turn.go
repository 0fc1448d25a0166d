package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/cascade-sfu/cascade/turnsrv"
)

// turnEnabled tells whether any TURN listener is configured.
func (c Config) turnEnabled() bool {
	return c.TURNUDPPort > 0 || c.TURNTCPPort > 0 || c.TURNTLSPort > 0
}

// validateTURN checks the --turn-* flags.
func (c Config) validateTURN() error {
	for name, p := range map[string]int{"turn-udp-port": c.TURNUDPPort, "turn-tcp-port": c.TURNTCPPort, "turn-tls-port": c.TURNTLSPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("%s %d: not a port (0 turns it off)", name, p)
		}
	}
	if c.TURNTCPPort > 0 && c.TURNTCPPort == c.TURNTLSPort {
		return fmt.Errorf("turn-tcp-port and turn-tls-port are both %d", c.TURNTCPPort)
	}
	if (c.TURNTLSPort > 0) != (c.TURNCert != "" && c.TURNKey != "") {
		return fmt.Errorf("turn-tls-port needs turn-cert and turn-key, and they need turn-tls-port")
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < turnsrv.MinSecretLen {
		return fmt.Errorf("turn-secret is %d bytes: want at least %d", len(c.TURNSecret), turnsrv.MinSecretLen)
	}
	if c.TURNTTL < time.Minute {
		return fmt.Errorf("turn-ttl %v: at least 1m", c.TURNTTL)
	}
	if c.TURNMaxAllocations < 1 {
		return fmt.Errorf("turn-max-allocations %d: at least 1", c.TURNMaxAllocations)
	}
	return nil
}

// startTURN starts the embedded TURN server when a listener is configured (nil, nil when not):
// it relays only to the node's media sockets, at every address they are advertised at.
func startTURN(cfg Config, n *node.Node, ifaceAddrs []net.Addr, reg prometheus.Registerer, logger hclog.Logger) (*turnsrv.Server, error) {
	if !cfg.turnEnabled() {
		return nil, nil
	}
	secret := cfg.TURNSecret
	if secret == "" {
		// Credentials are good only on the node that minted them: a random secret per process.
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = hex.EncodeToString(b[:])
	}
	bind := ""
	if cfg.LoopbackOnly {
		bind = "127.0.0.1"
	}
	listen := func(port int) string {
		if port == 0 {
			return ""
		}
		return net.JoinHostPort(bind, strconv.Itoa(port))
	}
	host := advertisedHost("", cfg.PublicIP, cfg.LoopbackOnly, ifaceAddrs)
	o := turnsrv.Options{
		Secret:         secret,
		UDP:            listen(cfg.TURNUDPPort),
		TCP:            listen(cfg.TURNTCPPort),
		TLS:            listen(cfg.TURNTLSPort),
		Host:           host,
		TLSHost:        cfg.TURNHost,
		RelayIPs:       []net.IP{net.ParseIP(host)},
		RelayBind:      bind,
		Media:          mediaAddrs(cfg, n, ifaceAddrs),
		MaxAllocations: cfg.TURNMaxAllocations,
		Logger:         logger,
		Registerer:     reg,
	}
	if cfg.TURNTLSPort > 0 {
		kp, err := newKeyPair(cfg.TURNCert, cfg.TURNKey)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = &tls.Config{GetCertificate: kp.get, MinVersion: tls.VersionTLS12}
	}
	return turnsrv.New(o)
}

// turnICEServers hands a participant the TURN server's URLs with fresh credentials.
func turnICEServers(t *turnsrv.Server, ttl time.Duration, logger hclog.Logger) func(string) []proto.ICEServer {
	return func(participant string) []proto.ICEServer {
		is, err := t.ICEServer(participant, ttl)
		if err != nil {
			logger.Warn("cannot mint TURN credentials", "participant", participant, "error", err)
			return nil
		}
		return []proto.ICEServer{{URLs: is.URLs, Username: is.Username, Credential: is.Credential}}
	}
}

// mediaAddrs are the node's media sockets at every address clients may know them by: the
// host's addresses (loopback only with --loopback-only) and the public IP, which, when the host
// does not hold it (1:1 NAT), is delivered to the socket's local address.
func mediaAddrs(cfg Config, n *node.Node, ifaceAddrs []net.Addr) []turnsrv.Media {
	var local []netip.Addr
	if cfg.LoopbackOnly {
		local = append(local, netip.MustParseAddr("127.0.0.1"))
	} else {
		for _, a := range ifaceAddrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					local = append(local, ip.Unmap())
				}
			}
		}
	}
	pub, _ := netip.ParseAddr(cfg.PublicIP)
	pubLocal := false
	for _, ip := range local {
		pubLocal = pubLocal || ip == pub.Unmap()
	}
	var out []turnsrv.Media
	for i := range n.Workers() {
		ua, ok := n.WorkerAddr(i).(*net.UDPAddr)
		if !ok {
			continue
		}
		sock := ua.AddrPort()
		port := sock.Port()
		for _, ip := range local {
			out = append(out, turnsrv.Media{Addr: netip.AddrPortFrom(ip, port)})
		}
		if pub.IsValid() && !pubLocal {
			deliver := sock.Addr().Unmap()
			if deliver.IsUnspecified() {
				deliver = netip.MustParseAddr("127.0.0.1")
				if pub.Is6() && !pub.Is4In6() {
					deliver = netip.IPv6Loopback()
				}
			}
			out = append(out, turnsrv.Media{Addr: netip.AddrPortFrom(pub.Unmap(), port), Local: netip.AddrPortFrom(deliver, port)})
		}
	}
	return out
}

// keyPair serves a certificate from files and reloads it when they change (a renewed
// certificate, as cert-manager writes it into a mounted secret, needs no restart).
type keyPair struct {
	certPath, keyPath string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func newKeyPair(certPath, keyPath string) (*keyPair, error) {
	kp := &keyPair{certPath: certPath, keyPath: keyPath}
	if _, err := kp.load(time.Now()); err != nil {
		return nil, err
	}
	return kp, nil
}

// load reads the pair when the certificate file changed since the last read.
func (kp *keyPair) load(now time.Time) (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.cert != nil && now.Sub(kp.checked) < 10*time.Second {
		return kp.cert, nil
	}
	kp.checked = now
	st, err := os.Stat(kp.certPath)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil // keep serving the last good one
		}
		return nil, fmt.Errorf("turn-cert: %w", err)
	}
	if kp.cert != nil && st.ModTime().Equal(kp.modTime) {
		return kp.cert, nil
	}
	c, err := tls.LoadX509KeyPair(kp.certPath, kp.keyPath)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil
		}
		return nil, fmt.Errorf("turn-cert/turn-key: %w", err)
	}
	kp.cert, kp.modTime = &c, st.ModTime()
	return kp.cert, nil
}

func (kp *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.load(time.Now()) }
