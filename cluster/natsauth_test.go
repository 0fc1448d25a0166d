package cluster_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/testca"
	"github.com/cascade-sfu/cascade/node"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Secrets of the tests: one cluster, a rotation from old to new, and an outsider.
var (
	natsSecrets  = cluster.Secrets{"test-cluster-secret-0123456789-abcdef"}
	oldSecret    = "old-cluster-secret-0123456789-abcdefgh"
	newSecret    = "new-cluster-secret-0123456789-abcdefgh"
	rogueSecrets = cluster.Secrets{"rogue-cluster-secret-0123456789-abcdef"}
)

// quietFor asserts that f stays false for d (a thing that must not happen), after a positive
// control showed the same kind of thing does happen in time.
func quietFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if f() {
			t.Fatalf("%s", what)
		}
	}
}

func isAuthError(err error) bool {
	return err != nil && (errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"))
}

// TestNATSClientPortLocked: the embedded server's client port refuses a client with no
// credentials, with a wrong secret's, and with a route credential; it admits the cluster's
// client credential. The node itself talks to its server in-process, with the port locked.
func TestNATSClientPortLocked(t *testing.T) {
	_, ns, c := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets})
	refused := map[string][]nats.Option{
		"no credentials":   nil,
		"wrong secret":     {nats.UserInfo(cluster.NATSClientCredentials(rogueSecrets))},
		"route credential": {nats.UserInfo(cluster.NATSRouteCredentials(natsSecrets))},
		"wrong user":       {nats.UserInfo("admin", strings.SplitN(passwordOf(cluster.NATSClientCredentials(natsSecrets)), ",", 2)[0])},
		"too many":         {nats.UserInfo(cluster.NATSUser, strings.Repeat(passwordOf(cluster.NATSClientCredentials(natsSecrets))+",", 5))},
	}
	for name, opts := range refused {
		nc, err := nats.Connect(ns.ClientURL(), append(opts, nats.Timeout(2*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected to the client port", name)
		}
		if !isAuthError(err) {
			t.Fatalf("%s: refused, but not for authorization: %v", name, err)
		}
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(cluster.NATSClientCredentials(natsSecrets)))
	if err != nil {
		t.Fatalf("the cluster's credential refused: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(cluster.HeartbeatSubject("", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no heartbeat of the in-process node: %v", err)
	}
	if !ns.Connected() || c.Incarnation() == "" {
		t.Fatal("the node's in-process connection is down")
	}
	if got := ns.Conn().ConnectedUrl(); got == "" {
		t.Fatal("no connected URL")
	}
	// One client over the port (the test's) and the node's own in-process one.
	if n := ns.EmbeddedServer().NumClients(); n != 2 {
		t.Fatalf("%d clients on the embedded server, want 2", n)
	}
}

// passwordOf is the password of a (user, password) pair.
func passwordOf(_, password string) string { return password }

// TestNATSNodeJoinsWithCredential: a node joining another's embedded server with a URL (and no
// credentials file) presents the derived client credential; with the wrong secret it is refused.
func TestNATSNodeJoinsWithCredential(t *testing.T) {
	_, ns1, c1 := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets})
	_, _, c2 := member(t, node.Options{ID: "n2"}, cluster.NATSOptions{URL: ns1.ClientURL(), Secrets: natsSecrets})
	checkFor(t, 5*time.Second, func() error {
		if len(c1.Peers()) != 1 || len(c2.Peers()) != 1 {
			return fmt.Errorf("peers %v %v", c1.Peers(), c2.Peers())
		}
		return nil
	})
	rogue, err := cluster.StartNATS(cluster.NATSOptions{Name: "rogue", URL: ns1.ClientURL(), Secrets: rogueSecrets})
	if err != nil {
		t.Fatal(err) // the connection is retried in the background
	}
	defer rogue.Close()
	quietFor(t, 2*time.Second, "a node with the wrong secret connected", rogue.Connected)
	if rogue.Ready() {
		t.Fatal("a node with the wrong secret is ready")
	}
	if len(c1.Peers()) != 1 {
		t.Fatalf("n1 sees %v", c1.Peers())
	}
}

// routed starts a node whose embedded server listens for routes, routed to the given URLs.
func routed(t *testing.T, id string, secrets cluster.Secrets, routes ...string) (*cluster.NATS, *cluster.Cluster) {
	t.Helper()
	_, ns, c := member(t, node.Options{ID: id}, cluster.NATSOptions{Listen: "127.0.0.1:0", Cluster: "127.0.0.1:0", Routes: routes, Secrets: secrets})
	return ns, c
}

func seeEachOther(t *testing.T, cs ...*cluster.Cluster) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		for _, c := range cs {
			if len(c.Peers()) != len(cs)-1 {
				return fmt.Errorf("a node sees %v, want %d peers", c.Peers(), len(cs)-1)
			}
		}
		return nil
	})
}

// TestNATSRoutesRotation: nodes route together while the secret rotates, both ways: a node
// with [new, old] and one with [old] form one cluster, with routes from either side; then one
// with [new] joins the [new, old] one.
func TestNATSRoutesRotation(t *testing.T) {
	a, ca := routed(t, "a", cluster.Secrets{newSecret, oldSecret})
	b, cb := routed(t, "b", cluster.Secrets{oldSecret}, a.RouteURL())
	_, cc := routed(t, "c", cluster.Secrets{newSecret, oldSecret}, b.RouteURL())
	seeEachOther(t, ca, cb, cc)
	_, cd := routed(t, "d", cluster.Secrets{newSecret}, a.RouteURL())
	checkFor(t, 10*time.Second, func() error {
		if p := cd.Peers(); len(p) == 0 {
			return fmt.Errorf("d sees no peer")
		}
		if p := ca.Peers(); len(p) != 3 {
			return fmt.Errorf("a sees %v", p)
		}
		return nil
	})
}

// TestNATSRogueRoute: a nats-server routing in with no credentials, a wrong secret's or a
// client credential gets no route and hears no heartbeat; one with the cluster's route
// credential does (the positive control).
func TestNATSRogueRoute(t *testing.T) {
	ns, _ := routed(t, "n1", natsSecrets)
	target, err := url.Parse(ns.RouteURL())
	if err != nil {
		t.Fatal(err)
	}
	rogue := func(user *url.Userinfo) *server.Server {
		u := *target
		u.User = user
		s := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "cascade", Host: "127.0.0.1", Port: -1}, Routes: []*url.URL{&u}})
		t.Cleanup(s.Shutdown)
		return s
	}
	hears := func(s *server.Server) *nats.Subscription {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		sub, err := nc.SubscribeSync(cluster.SubjectHeartbeat + ".>")
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	good := rogue(url.UserPassword(cluster.NATSRouteCredentials(natsSecrets)))
	if _, err := hears(good).NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the cluster's route credential: no heartbeat through the route: %v", err)
	}
	bad := []*server.Server{
		rogue(nil),
		rogue(url.UserPassword(cluster.NATSRouteCredentials(rogueSecrets))),
		rogue(url.UserPassword(cluster.NATSClientCredentials(natsSecrets))),
	}
	var subs []*nats.Subscription
	for _, s := range bad {
		subs = append(subs, hears(s))
	}
	// n1's routes are pooled (several per peer): look for the rogues' server ids among them.
	routedIn := func(s *server.Server) bool {
		z, err := ns.EmbeddedServer().Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range z.Routes {
			if r.RemoteID == s.ID() {
				return true
			}
		}
		return false
	}
	if !routedIn(good) {
		t.Fatal("the good route is not listed: the check below would prove nothing")
	}
	quietFor(t, 2*time.Second, "a rogue server got a route", func() bool {
		for i, s := range bad {
			if routedIn(s) {
				return true
			}
			if msgs, _, _ := subs[i].Pending(); msgs > 0 {
				t.Logf("rogue %d heard a heartbeat", i)
				return true
			}
		}
		return false
	})
}

// gatewayTLS writes a CA and a certificate for 127.0.0.1.
func gatewayTLS(t *testing.T) testca.Files {
	return testca.Write(t, t.TempDir(), net.IPv4(127, 0, 0, 1), "localhost")
}

// TestNATSGatewayNeedsTLS: a gateway without TLS is refused unless explicitly insecure; route
// TLS and half a key pair are refused too.
func TestNATSGatewayNeedsTLS(t *testing.T) {
	base := cluster.NATSOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Secrets: natsSecrets, ClusterName: "eu", Gateway: "127.0.0.1:0"}
	_, err := cluster.StartNATS(base)
	if !errors.Is(err, cluster.ErrBadNATSOptions) || !strings.Contains(err.Error(), "TLS") || !strings.Contains(err.Error(), "--nats-gateway-insecure") {
		t.Fatalf("a gateway without TLS: %v", err)
	}
	f := gatewayTLS(t)
	half := base
	half.TLSCert = f.Cert
	if _, err := cluster.StartNATS(half); !errors.Is(err, cluster.ErrBadNATSOptions) {
		t.Fatalf("a certificate without its key: %v", err)
	}
	rt := cluster.NATSOptions{Listen: "127.0.0.1:0", Secrets: natsSecrets, Cluster: "127.0.0.1:0", RouteTLS: true}
	if _, err := cluster.StartNATS(rt); !errors.Is(err, cluster.ErrBadNATSOptions) {
		t.Fatalf("route TLS without a certificate: %v", err)
	}
	insecure := base
	insecure.InsecureGW = true
	ns, err := cluster.StartNATS(insecure)
	if err != nil {
		t.Fatalf("an explicitly insecure gateway: %v", err)
	}
	ns.Close()
}

// TestNATSGatewayTLS: two regions linked by TLS gateways see each other; a rogue gateway with
// no credentials or a wrong secret's (over TLS) is refused.
func TestNATSGatewayTLS(t *testing.T) {
	f := gatewayTLS(t)
	tlsOpts := func(name string, gws map[string][]string) cluster.NATSOptions {
		return cluster.NATSOptions{Listen: "127.0.0.1:0", ClusterName: name, Gateway: "127.0.0.1:0", Gateways: gws, Secrets: natsSecrets,
			TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA}
	}
	_, eu, ceu := member(t, node.Options{ID: "eu1", Region: "eu"}, tlsOpts("eu", nil))
	_, _, cus := member(t, node.Options{ID: "us1", Region: "us"}, tlsOpts("us", map[string][]string{"eu": {eu.GatewayURL()}}))
	seeEachOther(t, ceu, cus)
	inbound := func() int {
		z, err := eu.EmbeddedServer().Gatewayz(nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range z.InboundGateways {
			n += len(l)
		}
		return n
	}
	before := inbound()
	if before == 0 {
		t.Fatal("the us gateway is not counted as inbound: the count below would prove nothing")
	}
	target, _ := url.Parse(eu.GatewayURL())
	// Rogues: no client certificate (with no, a guessed or a route password), and a
	// certificate of their own, whatever the CA it might chain to.
	own := selfSigned(t)
	for i, user := range []*url.Userinfo{nil, url.UserPassword(cluster.NATSUser, "guess"), url.UserPassword(cluster.NATSRouteCredentials(natsSecrets)), nil} {
		u := *target
		u.User = user
		conf := &tls.Config{InsecureSkipVerify: true}
		if i == 3 {
			conf.Certificates = []tls.Certificate{own}
		}
		s := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, Gateway: server.GatewayOpts{
			Name: fmt.Sprintf("rogue%d", i), Host: "127.0.0.1", Port: -1, TLSConfig: conf, TLSTimeout: 2,
			Gateways: []*server.RemoteGatewayOpts{{Name: "eu", URLs: []*url.URL{&u}}}}})
		t.Cleanup(s.Shutdown)
	}
	// A Cascade node of another cluster (another secret), with a certificate the CA signed.
	other := tlsOpts("rogue", map[string][]string{"eu": {eu.GatewayURL()}})
	other.Secrets, other.StoreDir = rogueSecrets, t.TempDir()
	rogue, err := cluster.StartNATS(other)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	quietFor(t, 2*time.Second, "a rogue gateway connected", func() bool { return inbound() > before })
}

// TestNATSGatewayRotation: over TLS, gateways authenticate with certificates derived from the
// secrets, so regions rotate without a split: [new, old] and [old] link, and so do [new] and
// [new, old].
func TestNATSGatewayRotation(t *testing.T) {
	f := gatewayTLS(t)
	region := func(id, name string, secrets cluster.Secrets, gws map[string][]string) (*cluster.NATS, *cluster.Cluster) {
		_, ns, c := member(t, node.Options{ID: id, Region: name}, cluster.NATSOptions{Listen: "127.0.0.1:0", ClusterName: name, Gateway: "127.0.0.1:0",
			Gateways: gws, Secrets: secrets, TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA})
		return ns, c
	}
	eu, ceu := region("eu1", "eu", cluster.Secrets{newSecret, oldSecret}, nil)
	_, cus := region("us1", "us", cluster.Secrets{oldSecret}, map[string][]string{"eu": {eu.GatewayURL()}})
	seeEachOther(t, ceu, cus)
	ap, cap := region("ap1", "ap", cluster.Secrets{newSecret, oldSecret}, nil)
	_, csa := region("sa1", "sa", cluster.Secrets{newSecret}, map[string][]string{"ap": {ap.GatewayURL()}})
	seeEachOther(t, cap, csa)
}

// selfSigned is a throwaway Ed25519 client certificate.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "cascade gateway rogue"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestNATSRouteTLS: with RouteTLS the routes run over TLS (verified against the CA) and still
// need the route credential.
func TestNATSRouteTLS(t *testing.T) {
	f := gatewayTLS(t)
	tlsRouted := func(id string, secrets cluster.Secrets, routes ...string) (*cluster.NATS, *cluster.Cluster) {
		_, ns, c := member(t, node.Options{ID: id}, cluster.NATSOptions{Listen: "127.0.0.1:0", Cluster: "127.0.0.1:0", Routes: routes, Secrets: secrets,
			RouteTLS: true, TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA})
		return ns, c
	}
	a, ca := tlsRouted("a", natsSecrets)
	_, cb := tlsRouted("b", natsSecrets, a.RouteURL())
	seeEachOther(t, ca, cb)
	// A plain-text rogue with the right credential cannot route in: TLS is required.
	u, _ := url.Parse(a.RouteURL())
	u.User = url.UserPassword(cluster.NATSRouteCredentials(natsSecrets))
	rogue := startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "cascade", Host: "127.0.0.1", Port: -1}, Routes: []*url.URL{u}})
	defer rogue.Shutdown()
	quietFor(t, 2*time.Second, "a plain-text route joined a TLS cluster", func() bool {
		z, _ := a.EmbeddedServer().Routez(nil)
		for _, r := range z.Routes {
			if r.RemoteID == rogue.ID() {
				return true
			}
		}
		return false
	})
}
