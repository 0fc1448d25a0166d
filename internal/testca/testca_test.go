package testca

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

// The server certificate verifies against the CA for its IP and its name, and for nothing else.
func TestWriteChainsToTheCA(t *testing.T) {
	f := Write(t, t.TempDir(), net.ParseIP("198.18.0.1"), "turn.cascade.test")
	kp, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"198.18.0.1", "turn.cascade.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.test"}); err == nil {
		t.Error("verifies for other.test")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "turn.cascade.test"}); err == nil {
		t.Error("verifies without the test CA")
	}
}
