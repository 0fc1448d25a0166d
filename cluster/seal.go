package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// ErrSealed is returned for a sealed body this node cannot open: not sealed to this
// incarnation, or tampered with.
var ErrSealed = errors.New("cluster: sealed message not for this node or tampered with")

// Sealed is a message body only one node incarnation can read (a pipe request or reply, which
// carry relay link keys): encrypted with AES-256-GCM under a key agreed by X25519 between a
// fresh key of the sender (Eph) and the recipient's vouched Box key, through HKDF-SHA256 bound
// to the sender, the recipient, the message type and a caller's binding (a reply's request).
// Every message has its own key, so the nonce is zero.
type Sealed struct {
	To    string `json:"to"`
	ToInc string `json:"to_inc"`
	Eph   []byte `json:"eph"`
	Box   []byte `json:"box"`
}

// sealInfo is the HKDF info: what the sealed key is bound to.
func sealInfo(typ string, from, to *Cert, bind []byte) string {
	var b []byte
	for _, f := range [][]byte{[]byte("cascade/seal/v1"), []byte(typ), []byte(from.Node), []byte(from.Inc), []byte(to.Node), []byte(to.Inc), to.Box, bind} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return string(b)
}

func sealAEAD(shared, eph []byte, info string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, shared, eph, info, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealTo encrypts plain for the incarnation of cert to, as a message of type typ from this
// node's keys, bound to bind.
func (k *NodeKeys) SealTo(to *Cert, typ string, bind, plain []byte) (Sealed, error) {
	pub, err := ecdh.X25519().NewPublicKey(to.Box)
	if err != nil {
		return Sealed{}, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Sealed{}, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return Sealed{}, err
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := sealAEAD(shared, ephPub, sealInfo(typ, &k.cert, to, bind))
	if err != nil {
		return Sealed{}, err
	}
	var nonce [12]byte
	return Sealed{To: to.Node, ToInc: to.Inc, Eph: ephPub, Box: aead.Seal(nil, nonce[:], plain, nil)}, nil
}

// OpenFrom decrypts s, a message of type typ sealed to these keys by the incarnation of cert
// from, bound to bind; ErrSealed if it cannot.
func (k *NodeKeys) OpenFrom(from *Cert, typ string, bind []byte, s Sealed) ([]byte, error) {
	if s.To != k.cert.Node || s.ToInc != k.cert.Inc {
		return nil, ErrSealed
	}
	pub, err := ecdh.X25519().NewPublicKey(s.Eph)
	if err != nil {
		return nil, ErrSealed
	}
	shared, err := k.box.ECDH(pub)
	if err != nil {
		return nil, ErrSealed
	}
	aead, err := sealAEAD(shared, s.Eph, sealInfo(typ, from, &k.cert, bind))
	if err != nil {
		return nil, ErrSealed
	}
	var nonce [12]byte
	plain, err := aead.Open(nil, nonce[:], s.Box, nil)
	if err != nil {
		return nil, ErrSealed
	}
	return plain, nil
}
