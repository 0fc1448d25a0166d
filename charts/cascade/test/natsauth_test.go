package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// loopbackTLS makes a throwaway CA and a certificate for 127.0.0.1 signed by it, as the PEM
// contents of a kubernetes.io/tls Secret with its CA (tls.crt, tls.key, ca.crt).
func loopbackTLS(t *testing.T) map[string]string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chart test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	return map[string]string{"tls.crt": enc("CERTIFICATE", der), "tls.key": enc("EC PRIVATE KEY", keyDER), "ca.crt": enc("CERTIFICATE", caDER)}
}

// TestClusterSecret: the default install creates the cluster Secret (48 random characters)
// and hands it to the node as CASCADE_CLUSTER_SECRET, the previous one as an optional
// CASCADE_CLUSTER_SECRET_PREVIOUS; values set it; an existing Secret replaces it.
func TestClusterSecret(t *testing.T) {
	r := render(t, renderOpts{})
	s := r.get(t, "Secret", "cascade-cluster").(*corev1.Secret)
	if got := s.Data["cluster-secret"]; len(got) != 48 {
		t.Fatalf("generated cluster secret %q: want 48 characters", got)
	}
	if _, ok := s.Data["cluster-secret-previous"]; ok {
		t.Fatal("a previous secret without a rotation")
	}
	again := render(t, renderOpts{}).get(t, "Secret", "cascade-cluster").(*corev1.Secret)
	if string(again.Data["cluster-secret"]) == string(s.Data["cluster-secret"]) {
		t.Fatal("two renders without a cluster drew the same secret: not random")
	}
	_, _, tpl := r.workload(t)
	c := container(t, &tpl.Spec, "cascade")
	envs := r.podEnv(t, c, "cascade-0")
	if envs["CASCADE_CLUSTER_SECRET"] != string(s.Data["cluster-secret"]) {
		t.Fatalf("CASCADE_CLUSTER_SECRET = %q, want the Secret's", envs["CASCADE_CLUSTER_SECRET"])
	}
	if _, ok := envs["CASCADE_CLUSTER_SECRET_PREVIOUS"]; ok {
		t.Fatal("CASCADE_CLUSTER_SECRET_PREVIOUS set without a rotation")
	}
	prev := 0
	for _, e := range c.Env {
		if e.Name == "CASCADE_CLUSTER_SECRET_PREVIOUS" && e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
			prev++
		}
	}
	if prev != 1 {
		t.Fatal("no optional CASCADE_CLUSTER_SECRET_PREVIOUS: a rotation could not reach the pods")
	}

	newS, oldS := strings.Repeat("n", 40), strings.Repeat("o", 40)
	rot := render(t, renderOpts{set: []string{"clusterSecret.value=" + newS, "clusterSecret.previous=" + oldS}})
	_, _, rotTpl := rot.workload(t)
	envs = rot.podEnv(t, container(t, &rotTpl.Spec, "cascade"), "cascade-0")
	if envs["CASCADE_CLUSTER_SECRET"] != newS || envs["CASCADE_CLUSTER_SECRET_PREVIOUS"] != oldS {
		t.Fatalf("rotation: env %q / %q", envs["CASCADE_CLUSTER_SECRET"], envs["CASCADE_CLUSTER_SECRET_PREVIOUS"])
	}
	rot.checkNodeConfig(t, "cascade-0")
	sum := func(r *rendered) string { _, _, p := r.workload(t); return p.Annotations["checksum/cluster-secret"] }
	if sum(rot) == sum(r) {
		t.Fatal("a rotation does not roll the pods")
	}

	ex := render(t, renderOpts{set: []string{"clusterSecret.existingSecret=shared"}})
	if ex.find("Secret", "cascade-cluster") != nil {
		t.Fatal("a cluster Secret created despite existingSecret")
	}
	_, _, tpl = ex.workload(t)
	envs = ex.podEnv(t, container(t, &tpl.Spec, "cascade"), "cascade-0")
	if envs["CASCADE_CLUSTER_SECRET"] != fakeClusterSecret {
		t.Fatalf("existing Secret: CASCADE_CLUSTER_SECRET = %q", envs["CASCADE_CLUSTER_SECRET"])
	}
}

// secretLookup is Helm's lookup backed by a fake API server holding objs.
type secretLookup struct {
	client *dynamicfake.FakeDynamicClient
}

func (l secretLookup) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("lookup of %s %s not emulated", apiVersion, kind)
	}
	return l.client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}), true, nil
}

// TestClusterSecretKeptOnUpgrade: an upgrade finds the installed Secret (Helm's lookup, here
// against a fake API server) and keeps its secret: a rolling upgrade never splits the cluster.
func TestClusterSecretKeptOnUpgrade(t *testing.T) {
	const installed = "installed-cluster-secret-0123456789abcdefgh"
	existing := &corev1.Secret{Data: map[string][]byte{"cluster-secret": []byte(installed)}}
	existing.Name, existing.Namespace = "cascade-cluster", "media"
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	upgrade := func(objs ...runtime.Object) string {
		t.Helper()
		vals, err := chartutil.ToRenderValues(ch, map[string]any{}, chartutil.ReleaseOptions{Name: "cascade", Namespace: "media", IsUpgrade: len(objs) > 0},
			&chartutil.Capabilities{KubeVersion: *kubeVersion, APIVersions: chartutil.DefaultVersionSet})
		if err != nil {
			t.Fatal(err)
		}
		out, err := engine.RenderWithClientProvider(ch, vals, secretLookup{dynamicfake.NewSimpleDynamicClient(scheme, objs...)})
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := codecs.UniversalDeserializer().Decode([]byte(out["cascade/templates/secret-cluster.yaml"]), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(obj.(*corev1.Secret).Data["cluster-secret"])
	}
	if got := upgrade(existing); got != installed {
		t.Fatalf("upgrade rendered cluster secret %q, want the installed %q", got, installed)
	}
	if got := upgrade(); got == installed || len(got) != 48 {
		t.Fatalf("a fresh install rendered %q: want a new random secret (the positive control)", got)
	}
}

// TestNATSLockedDown: the default install's NATS ports all require the cluster's credentials
// (the node config has no insecure switch), gateways are refused without TLS unless insecure is
// chosen, and nats.tls mounts the certificate for gateways and, optionally, routes.
func TestNATSLockedDown(t *testing.T) {
	r := render(t, renderOpts{})
	cfg := r.nodeConfig(t, "cascade-0")
	for _, k := range []string{"nats-gateway-insecure", "nats-gateway", "nats-tls-cert"} {
		if _, ok := cfg[k]; ok {
			t.Errorf("default config sets %s", k)
		}
	}
	if cfg["nats-listen"] == nil || cfg["nats-cluster"] == nil {
		t.Fatalf("default config: no embedded NATS: %v", cfg)
	}

	gw := []string{"nats.gateway.enabled=true", "nats.gateway.remotes[0].name=us", "nats.gateway.remotes[0].urls[0]=nats://gw.us:7222"}
	if _, err := renderChart(renderOpts{set: gw}); err == nil || !strings.Contains(err.Error(), "nats.tls.secretName") {
		t.Fatalf("gateways without TLS: %v", err)
	}
	insecure := render(t, renderOpts{set: append(gw, "nats.gateway.insecure=true")})
	if cfg := insecure.nodeConfig(t, "cascade-0"); cfg["nats-gateway-insecure"] != true {
		t.Fatalf("insecure gateways: config %v", cfg)
	}
	insecure.checkNodeConfig(t, "cascade-0")

	tlsR := render(t, renderOpts{set: append(gw, "nats.tls.secretName=gw-tls", "nats.tls.routes=true")})
	cfg = tlsR.nodeConfig(t, "cascade-0")
	if cfg["nats-tls-cert"] != "/etc/cascade-nats-tls/tls.crt" || cfg["nats-tls-key"] != "/etc/cascade-nats-tls/tls.key" ||
		cfg["nats-tls-ca"] != "/etc/cascade-nats-tls/ca.crt" || cfg["nats-route-tls"] != true {
		t.Fatalf("TLS config %v", cfg)
	}
	_, _, tpl := tlsR.workload(t)
	mounted := false
	for _, v := range tpl.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "gw-tls" && len(v.Secret.Items) == 3 {
			mounted = true
		}
	}
	if !mounted {
		t.Fatal("the NATS TLS Secret is not mounted with its three keys")
	}
	tlsR.checkNodeConfig(t, "cascade-0")

	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"nats.tls.routes=true"}, "nats.tls.routes needs nats.tls.secretName"},
		{[]string{"nats.external.url=nats://n:4222", "nats.tls.secretName=x"}, "external NATS"},
		{[]string{"clusterSecret.value=short"}, "clusterSecret"},
		{[]string{"clusterSecret.value=" + strings.Repeat("a", 40), "clusterSecret.previous=" + strings.Repeat("a", 40)}, "previous equals"},
	} {
		if _, err := renderChart(renderOpts{set: tc.set}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %v: error %v, want one mentioning %q", tc.set, err, tc.want)
		}
	}
}
