package cluster

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"time"
)

// Freshness is how far an envelope's Time may lie from the receiver's clock, either way: a
// captured message is refused once it is older than this (and Dedup refuses it before), and
// the nodes' clocks may disagree by up to this much (NTP keeps them within milliseconds).
const Freshness = 45 * time.Second

// voucherLabel names the key, derived from each cluster secret, that vouches for node certs.
const voucherLabel = "node-voucher"

// Errors of the envelope's signature and its cert.
var (
	ErrUnsigned     = errors.New("cluster: control message not signed")
	ErrCertMismatch = errors.New("cluster: control message signed for another node or incarnation")
	ErrVoucher      = errors.New("cluster: node key not vouched for by a cluster secret this node accepts")
	ErrSignature    = errors.New("cluster: bad control message signature")
	ErrTime         = errors.New("cluster: control message outside the freshness window")
)

// Cert is a node incarnation's public keys, vouched for by the cluster secrets: Vouchers holds
// one HMAC-SHA256 of the cert's other fields per secret the node holds (current first), under
// the key derived from that secret, so a node holding [new, old] during a rotation is accepted
// both by nodes holding [new, ...] and by nodes still holding only [old].
type Cert struct {
	Node string `json:"node"`
	Inc  string `json:"inc"`
	// Born is when the incarnation started (Unix milliseconds, its clock): of two incarnations
	// of a node, the later born is current (see Verifier.Older).
	Born int64 `json:"born"`
	// Sign is the Ed25519 public key that signs the incarnation's envelopes.
	Sign []byte `json:"sign"`
	// Box is the X25519 public key other nodes seal relay keys to (see SealTo).
	Box      []byte   `json:"box"`
	Vouchers [][]byte `json:"vouchers"`
}

// voucher is the HMAC of the cert's node, incarnation and keys under key.
func (c *Cert) voucher(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cascade/cert/v1"))
	writeField(m, []byte(c.Node))
	writeField(m, []byte(c.Inc))
	writeField(m, binary.BigEndian.AppendUint64(nil, uint64(c.Born)))
	writeField(m, c.Sign)
	writeField(m, c.Box)
	return m.Sum(nil)
}

// maxVouchers bounds the vouchers of a cert checked (a node holds two secrets during a
// rotation), so a forged cert costs few HMACs.
const maxVouchers = 4

// vouchedBy tells whether one of the cert's vouchers is by one of keys.
func (c *Cert) vouchedBy(keys [][]byte) bool {
	if len(c.Vouchers) > maxVouchers {
		return false
	}
	for _, v := range c.Vouchers {
		for _, k := range keys {
			if hmac.Equal(v, c.voucher(k)) {
				return true
			}
		}
	}
	return false
}

// NodeKeys are the keys of one incarnation of this node, drawn when it starts: an Ed25519
// signing key and an X25519 key, and the cert the cluster secrets vouch for.
type NodeKeys struct {
	cert Cert
	priv ed25519.PrivateKey
	box  *ecdh.PrivateKey
}

// NewNodeKeys draws the keys of node's incarnation inc, born (started) at born, and vouches for
// them with every secret.
func NewNodeKeys(node, inc string, born time.Time, secrets Secrets) (*NodeKeys, error) {
	if err := secrets.Validate(); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	box, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k := &NodeKeys{cert: Cert{Node: node, Inc: inc, Born: born.UnixMilli(), Sign: pub, Box: box.PublicKey().Bytes()}, priv: priv, box: box}
	for _, key := range secrets.Derive(voucherLabel) {
		k.cert.Vouchers = append(k.cert.Vouchers, k.cert.voucher(key))
	}
	return k, nil
}

// Cert is the keys' vouched cert.
func (k *NodeKeys) Cert() Cert { return k.cert }

// sigContext separates envelope signatures from any other Ed25519 use of the key.
const sigContext = "cascade/envelope/v1"

// digest is the SHA-512 of the canonical encoding of every signed field of e: its node,
// incarnation, sequence number, time, type and body, and its cert's public keys (the
// vouchers only attest those keys). Each variable field is length-prefixed.
func digest(e *Envelope, c *Cert) [sha512.Size]byte {
	h := sha512.New()
	writeField(h, []byte(e.Node))
	writeField(h, []byte(e.Inc))
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], e.Seq)
	binary.BigEndian.PutUint64(n[8:], uint64(e.Time))
	h.Write(n[:])
	writeField(h, []byte(e.Type))
	writeField(h, e.Body)
	writeField(h, c.Sign)
	writeField(h, c.Box)
	var d [sha512.Size]byte
	h.Sum(d[:0])
	return d
}

func writeField(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

var sigOptions = &ed25519.Options{Hash: crypto.SHA512, Context: sigContext}

// sign sets e's cert and signature (Ed25519ph over digest).
func (k *NodeKeys) sign(e *Envelope) error {
	e.Cert = &k.cert
	d := digest(e, &k.cert)
	sig, err := k.priv.Sign(nil, d[:], sigOptions)
	e.Sig = sig
	return err
}

// Verifier checks the envelopes of other nodes: a cert vouched for by one of the accepted
// secrets, for the envelope's node and incarnation, a valid signature by the cert's key, and a
// time within Freshness of the receiver's clock. Verified certs are cached by node and
// incarnation, so a voucher is checked once per incarnation, not per message. It is safe for
// concurrent use.
type Verifier struct {
	vouch [][]byte
	clock Clock

	mu    sync.RWMutex
	certs map[certKey]*Cert // verified
	peers map[string]*Cert  // each node's current incarnation (see Accepted)
}

type certKey struct{ node, inc string }

// maxCerts bounds the verified certs cached (only vouched certs get in: they are the
// incarnations of the cluster's nodes); past it the cache starts again.
const maxCerts = 4096

// NewVerifier returns the verifier of envelopes vouched for by any of secrets.
func NewVerifier(secrets Secrets, clock Clock) *Verifier {
	return &Verifier{vouch: secrets.Derive(voucherLabel), clock: clock, certs: map[certKey]*Cert{}, peers: map[string]*Cert{}}
}

// Verify checks e's cert, signature and time; nil, or one of ErrUnsigned, ErrCertMismatch,
// ErrVoucher, ErrSignature, ErrTime.
func (v *Verifier) Verify(e *Envelope) error {
	c := e.Cert
	if c == nil || len(e.Sig) != ed25519.SignatureSize || len(c.Sign) != ed25519.PublicKeySize {
		return ErrUnsigned
	}
	if c.Node != e.Node || c.Inc != e.Inc {
		return ErrCertMismatch
	}
	k := certKey{c.Node, c.Inc}
	v.mu.RLock()
	known := v.certs[k]
	v.mu.RUnlock()
	if known == nil || !bytes.Equal(known.Sign, c.Sign) || !bytes.Equal(known.Box, c.Box) {
		if !c.vouchedBy(v.vouch) {
			return ErrVoucher
		}
		v.mu.Lock()
		if len(v.certs) >= maxCerts {
			v.certs = map[certKey]*Cert{}
		}
		v.certs[k] = c
		v.mu.Unlock()
	} else {
		e.Cert = known // the cached one: the same keys, and one less object kept by Accepted
	}
	d := digest(e, e.Cert)
	if ed25519.VerifyWithOptions(e.Cert.Sign, d[:], e.Sig, sigOptions) != nil {
		return ErrSignature
	}
	if skew := v.clock.Now().Sub(time.UnixMilli(e.Time)); skew > Freshness || skew < -Freshness {
		return ErrTime
	}
	return nil
}

// Accepted records e's cert as its node's current one: call it for an envelope that passed
// Verify and Dedup (so of the node's newest incarnation).
func (v *Verifier) Accepted(e *Envelope) {
	v.mu.RLock()
	cur := v.peers[e.Node]
	v.mu.RUnlock()
	if cur == e.Cert {
		return
	}
	v.mu.Lock()
	v.peers[e.Node] = e.Cert
	v.mu.Unlock()
}

// Older tells whether e is of an incarnation of its node born before the current one (that of
// the last message accepted from the node): a message of an earlier process, sent again. Dedup
// refuses those of incarnations this node saw retired; this refuses the others too (the
// receiver started after the node restarted).
func (v *Verifier) Older(e *Envelope) bool {
	v.mu.RLock()
	cur := v.peers[e.Node]
	v.mu.RUnlock()
	return cur != nil && cur.Inc != e.Inc && e.Cert.Born <= cur.Born
}

// Peer is the cert of node's current incarnation, if a message of it was accepted.
func (v *Verifier) Peer(node string) (*Cert, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c, ok := v.peers[node]
	return c, ok
}
