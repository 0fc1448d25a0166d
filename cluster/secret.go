package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// MinSecretLen is the shortest cluster secret accepted (bytes).
const MinSecretLen = 32

// DevClusterSecret is the cluster secret of development mode (`cascade node --dev`): public,
// so nodes on one machine form a cluster with no setup. Never for production.
const DevClusterSecret = "cascade-development-cluster-secret-do-not-use"

// Secrets are the cluster secrets the operator set: the first is current (it signs and derives
// what this node presents), every one is accepted, so a secret rotates without downtime: add
// the new one second on every node, then swap the order, then drop the old one.
type Secrets []string

// ErrBadSecret wraps every validation error of Secrets.
var ErrBadSecret = errors.New("bad cluster secret")

// Validate checks that there is at least one secret and each is long enough.
func (s Secrets) Validate() error {
	if len(s) == 0 {
		return fmt.Errorf("%w: none set", ErrBadSecret)
	}
	for i, v := range s {
		if len(v) < MinSecretLen {
			return fmt.Errorf("%w: secret %d is %d bytes, want at least %d", ErrBadSecret, i+1, len(v), MinSecretLen)
		}
	}
	return nil
}

// Current is the secret this node signs with.
func (s Secrets) Current() string { return s[0] }

// Derive returns the key of purpose label derived from each secret, current first. Every use
// of the cluster secret (NATS passwords, node-key vouchers) derives its own key, so one
// derived value never reveals another or the secret.
func (s Secrets) Derive(label string) [][]byte {
	out := make([][]byte, len(s))
	for i, v := range s {
		out[i] = DeriveKey(v, label)
	}
	return out
}

// DeriveKey is HMAC-SHA256 of "cascade/"+label under secret.
func DeriveKey(secret, label string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("cascade/" + label))
	return m.Sum(nil)
}

// RandomSecret draws a secret for a node that is alone (no cluster to share it with).
func RandomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
