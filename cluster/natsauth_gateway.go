package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// natsGatewayCertLabel derives the gateways' certificate keys.
const natsGatewayCertLabel = "nats-gateway-cert"

// gatewayIDs are the certificates a gateway may present (one per secret, current first) and
// the public keys it accepts.
type gatewayIDs struct {
	certs    []tls.Certificate
	subjects [][]byte // RawSubject of certs[i]
	accepted []ed25519.PublicKey
	pool     *x509.CertPool
}

// gatewayIdentities derives, for each secret, an Ed25519 key and a self-signed certificate of
// it. Everything is deterministic: every node holding a secret derives the same certificate.
func gatewayIdentities(s Secrets) (*gatewayIDs, error) {
	ids := &gatewayIDs{pool: x509.NewCertPool()}
	for _, seed := range s.Derive(natsGatewayCertLabel) {
		key := ed25519.NewKeyFromSeed(seed)
		pub := key.Public().(ed25519.PublicKey)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "cascade gateway " + hex.EncodeToString(pub[:8])},
			NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, key)
		if err != nil {
			return nil, fmt.Errorf("nats gateway certificate: %w", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("nats gateway certificate: %w", err)
		}
		ids.certs = append(ids.certs, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert})
		ids.subjects = append(ids.subjects, cert.RawSubject)
		ids.accepted = append(ids.accepted, pub)
		ids.pool.AddCert(cert)
	}
	return ids, nil
}

// clientCertificate presents the derived certificate the other side accepts (it lists them as
// acceptable CAs); the current one when it lists none of ours.
func (ids *gatewayIDs) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	for i, subj := range ids.subjects {
		for _, ca := range cri.AcceptableCAs {
			if bytes.Equal(ca, subj) {
				return &ids.certs[i], nil
			}
		}
	}
	return &ids.certs[0], nil
}

// errGatewayCert refuses a gateway whose certificate no secret of this node derives.
var errGatewayCert = errors.New("nats gateway: the client certificate is not derived from this cluster's secrets")

// verify accepts a client certificate whose key is derived from one of the accepted secrets
// (the TLS handshake proved the peer holds its private key).
func (ids *gatewayIDs) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errGatewayCert
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return errGatewayCert
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return errGatewayCert
	}
	for _, a := range ids.accepted {
		if a.Equal(pub) {
			return nil
		}
	}
	return errGatewayCert
}
