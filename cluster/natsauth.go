package cluster

import (
	"crypto/hmac"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	neturl "net/url"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded NATS server's ports require credentials derived from the cluster secrets, one
// label per port kind, so a client credential never opens a route or a gateway.
const (
	natsClientLabel  = "nats-client"
	natsRouteLabel   = "nats-route"
	natsGatewayLabel = "nats-gateway"
)

// NATSUser is the user name a node presents on every port of an embedded NATS server.
const NATSUser = "cascade"

// maxPresented bounds the credentials one connection may present (current and previous
// secrets), so a CONNECT cannot make the server hash without end.
const maxPresented = 4

// credential is the password form of a derived key.
func credential(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// natsPassword is what a node presents on a port of kind label: the credential of every one
// of its secrets, current first, joined by ",". A peer accepts it when any of them is one it
// accepts, so a node with [new, old] and one with [old], then one with [new], all connect:
// the secret rotates without a split.
func natsPassword(s Secrets, label string) string {
	keys := s.Derive(label)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = credential(k)
	}
	return strings.Join(parts, ",")
}

// NATSClientCredentials are the user and password a client presents to the client port of an
// embedded server of a cluster with secrets s (what a node joining with --nats presents).
func NATSClientCredentials(s Secrets) (user, password string) {
	return NATSUser, natsPassword(s, natsClientLabel)
}

// NATSRouteCredentials are the user and password a route presents to an embedded server's
// cluster port.
func NATSRouteCredentials(s Secrets) (user, password string) {
	return NATSUser, natsPassword(s, natsRouteLabel)
}

// secretAuth is an embedded server's authenticator of one port kind: it accepts a connection
// whose password holds a credential derived from any accepted secret under its label.
type secretAuth struct {
	accepted []string
}

func newSecretAuth(s Secrets, label string) secretAuth {
	keys := s.Derive(label)
	a := secretAuth{accepted: make([]string, len(keys))}
	for i, k := range keys {
		a.accepted[i] = credential(k)
	}
	return a
}

// Check implements server.Authentication.
func (a secretAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || o.Username != NATSUser {
		return false
	}
	return a.accepts(o.Password)
}

func (a secretAuth) accepts(password string) bool {
	parts := strings.SplitN(password, ",", maxPresented+1)
	if len(parts) > maxPresented {
		return false
	}
	ok := false
	for _, p := range parts {
		for _, want := range a.accepted {
			if hmac.Equal([]byte(p), []byte(want)) {
				ok = true // no early return: the time does not tell which one matched
			}
		}
	}
	return ok
}

// configureAuth locks the embedded server's ports: clients, routes and gateways need the
// credentials derived from the secrets; gateways need TLS unless o.InsecureGW, routes
// use it with o.RouteTLS.
func configureAuth(so *server.Options, o NATSOptions) error {
	so.CustomClientAuthentication = newSecretAuth(o.Secrets, natsClientLabel)
	var tlsConf *tls.Config
	if o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "" {
		var err error
		if tlsConf, err = loadNATSTLS(o.TLSCert, o.TLSKey, o.TLSCA); err != nil {
			return err
		}
	}
	if so.Cluster.Port != 0 {
		so.CustomRouterAuthentication = newSecretAuth(o.Secrets, natsRouteLabel)
		// Implicit routes (learnt from a peer's INFO) present these; explicit ones the
		// credentials in their URL, set in withRouteCredentials.
		so.Cluster.Username, so.Cluster.Password = NATSRouteCredentials(o.Secrets)
		for i, r := range so.Routes {
			so.Routes[i] = withUser(*r, so.Cluster.Username, so.Cluster.Password)
		}
		if o.RouteTLS {
			if tlsConf == nil {
				return fmt.Errorf("%w: nats route TLS needs a certificate and key (--nats-tls-cert, --nats-tls-key)", ErrBadNATSOptions)
			}
			so.Cluster.TLSConfig = tlsConf.Clone()
			so.Cluster.TLSTimeout = natsTLSTimeout
		}
	} else if o.RouteTLS {
		return fmt.Errorf("%w: nats route TLS without a route listener (--nats-cluster)", ErrBadNATSOptions)
	}
	if so.Gateway.Port != 0 {
		if tlsConf == nil && !o.InsecureGW {
			return fmt.Errorf("%w: nats gateways cross regions and need TLS: set a certificate, key and CA (--nats-tls-cert, --nats-tls-key, --nats-tls-ca), or --nats-gateway-insecure for tests and labs", ErrBadNATSOptions)
		}
		if err := configureGatewayAuth(so, o, tlsConf); err != nil {
			return err
		}
	}
	return nil
}

// natsTLSTimeout bounds a route's or gateway's TLS handshake (seconds).
const natsTLSTimeout = 5

// loadNATSTLS loads the certificate and key the embedded server presents on its routes and
// gateways, and the CA it verifies its peers' certificates with (empty: the system's).
func loadNATSTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: nats TLS needs both a certificate and a key (--nats-tls-cert, --nats-tls-key)", ErrBadNATSOptions)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: nats TLS certificate: %v", ErrBadNATSOptions, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nats TLS CA: %v", ErrBadNATSOptions, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: nats TLS CA %s: no PEM certificate in it", ErrBadNATSOptions, caFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// configureGatewayAuth sets the gateway's TLS and credentials. With TLS (tlsConf) a gateway
// authenticates with a client certificate whose key derives from a cluster secret: the
// accepting side lists the keys of every secret it accepts (as acceptable CAs) and checks the
// presented one is among them; the connecting side presents the one listed. NATS gateways
// check a single password, which could not accept two secrets during a rotation; certificates
// can. Without TLS (InsecureGW) the password derived from the current secret is the check.
func configureGatewayAuth(so *server.Options, o NATSOptions, tlsConf *tls.Config) error {
	if tlsConf == nil {
		user, pass := NATSUser, credential(o.Secrets.Derive(natsGatewayLabel)[0])
		so.Gateway.Username, so.Gateway.Password = user, pass
		for _, rg := range so.Gateway.Gateways {
			for i, u := range rg.URLs {
				rg.URLs[i] = withUser(*u, user, pass)
			}
		}
		return nil
	}
	ids, err := gatewayIdentities(o.Secrets)
	if err != nil {
		return err
	}
	c := tlsConf.Clone()
	c.GetClientCertificate = ids.clientCertificate
	accept := c.Clone() // the accepting side: asks for, and checks, a derived certificate
	accept.ClientAuth = tls.RequireAnyClientCert
	accept.ClientCAs = ids.pool
	accept.VerifyPeerCertificate = ids.verify
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return accept, nil }
	so.Gateway.TLSConfig = c
	so.Gateway.TLSTimeout = natsTLSTimeout
	return nil
}

// withUser is u with the user and password set.
func withUser(u neturl.URL, user, pass string) *neturl.URL {
	u.User = neturl.UserPassword(user, pass)
	return &u
}
