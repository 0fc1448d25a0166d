package relay

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
)

// Key rotation. A link key is the root of a chain: the key of epoch n+1 is derived from the key
// of epoch n (HKDF-SHA256), so both ends of a link know every later key without another
// exchange. Every packet names its epoch in its MKI (RFC 3711), 4 bytes, big endian. A sender
// moves to the next epoch after the rotation interval, once it sent under the current one (an
// idle link does not rotate, so its receiver never sees a jump of many epochs). A receiver
// accepts the epoch it last authenticated and the next few (lookahead: packets under an epoch
// may all be lost), and keeps the previous one for a grace period after the first packet under
// a new one (packets in flight). Neither side waits for the other: no media gap. Each epoch's
// key protects at most an interval of traffic, far below SRTP's limits (2^48 packets per SSRC,
// 2^31 SRTCP packets).
//
// The previous epochs' keys are derivable from none of the later ones (HKDF is one-way), but a
// link key handed over reveals all later epochs of its chain: the rotation bounds the traffic
// under one key and retires old keys; it is no substitute for keeping the exchange secret.
const (
	// DefaultKeyRotation is how long a sender uses one epoch's key.
	DefaultKeyRotation = time.Hour
	// DefaultKeyGrace is how long a receiver still accepts the previous epoch's key after the
	// first packet under the next.
	DefaultKeyGrace = 30 * time.Second
	// ReplayWindow is the replay window of every relay SRTP and SRTCP stream, in packets: a
	// retransmission of a packet the receiver never got passes while it is less than this far
	// behind the newest packet of its stream; a packet received before is dropped.
	ReplayWindow = 1024

	mkiLen = 4
	// maxChainSteps bounds the derivations spent to tell whether a key handed over belongs to
	// the chain a link already sends on (beyond it, the key is taken as a new chain).
	maxChainSteps = 1024
)

// Keying is a transport's key schedule.
type Keying struct {
	// Rotation is how long a sender uses one epoch's key (0: DefaultKeyRotation).
	Rotation time.Duration
	// Grace is how long a receiver accepts the previous epoch's key (0: DefaultKeyGrace).
	Grace time.Duration
}

func (k Keying) withDefaults() Keying {
	if k.Rotation <= 0 {
		k.Rotation = DefaultKeyRotation
	}
	if k.Grace <= 0 {
		k.Grace = DefaultKeyGrace
	}
	return k
}

// PeerKey is what a node hands a peer to send with: its receiving key as of an epoch, and an
// SSRC the peer's sending context sends its feedback under. The SSRC is one the receiver never
// handed out before under that key chain, so that no two sending contexts, even of different
// incarnations of the peer, ever use one (SSRC, SRTCP index) under one key.
type PeerKey struct {
	Key   []byte
	Epoch uint32
	SSRC  uint32
}

// mki is the MKI of an epoch.
func mki(epoch uint32) []byte { return binary.BigEndian.AppendUint32(nil, epoch) }

// nextKey derives the key of epoch from the key of the epoch before it.
func nextKey(k []byte, epoch uint32) []byte {
	info := binary.BigEndian.AppendUint32([]byte("cascade relay link key "), epoch)
	out, err := hkdf.Key(sha256.New, k, nil, string(info), KeyLen)
	if err != nil { // only for a length HKDF cannot produce
		panic(err)
	}
	return out
}

// sameChain tells whether key b of epoch eb and key a of epoch ea are links of one chain.
func sameChain(a []byte, ea uint32, b []byte, eb uint32) bool {
	if ea > eb {
		a, ea, b, eb = b, eb, a, ea
	}
	if eb-ea > maxChainSteps {
		return false
	}
	for e := ea; e < eb; e++ {
		a = nextKey(a, e+1)
	}
	return string(a) == string(b)
}

// countingDetector is a replay window that counts what it rejects.
type countingDetector struct {
	replaydetector.CheckAccepter
	rejected *atomic.Uint64
}

func (d countingDetector) CheckSeq(seq uint64) replaydetector.Token {
	tok := d.CheckAccepter.CheckSeq(seq)
	if !tok.Passed() {
		d.rejected.Add(1)
	}
	return tok
}

// Check is never called by srtp while CheckSeq exists; it is here for the interface.
func (d countingDetector) Check(seq uint64) (func() bool, bool) {
	tok := d.CheckSeq(seq)
	return func() bool { return d.Accept(tok) }, tok.Passed()
}

func replayWindow(maxIndex uint64, rejected *atomic.Uint64) func() replaydetector.ReplayDetector {
	return func() replaydetector.ReplayDetector {
		return countingDetector{replaydetector.New(ReplayWindow, maxIndex).(replaydetector.CheckAccepter), rejected}
	}
}

// Largest SRTP and SRTCP indices, for the replay windows.
const (
	maxSRTPIndex  = 1<<48 - 1
	maxSRTCPIndex = 1<<31 - 1
)

// rxKeys is a link's receiving side: a chain of keys, one context with the ciphers of the
// epochs it accepts: the newest one authenticated, the next few (a sender rotates on its own
// clock, and may rotate more than once between two packets of an idle link), and the one
// before for a grace period. Guarded by Link.rxMu.
type rxKeys struct {
	ctx       *srtp.Context
	epoch     uint32            // the newest epoch authenticated (or 0)
	keys      map[uint32][]byte // the registered epochs' keys
	prevUntil time.Time
	hasPrev   bool // epoch-1's cipher is still registered, until prevUntil
}

// lookahead is how many epochs past the newest authenticated one a receiver accepts.
const lookahead = 3

func newRx(root []byte, replays *atomic.Uint64) (*rxKeys, error) {
	ctx, err := srtp.CreateContext(root[:16], root[16:], profile, srtp.MasterKeyIndicator(mki(0)),
		srtp.SRTPReplayDetectorFactory(replayWindow(maxSRTPIndex, replays)),
		srtp.SRTCPReplayDetectorFactory(replayWindow(maxSRTCPIndex, replays)))
	if err != nil {
		return nil, err
	}
	rx := &rxKeys{ctx: ctx, keys: map[uint32][]byte{0: root}}
	if err := rx.extend(); err != nil {
		return nil, err
	}
	return rx, nil
}

// key is the key of the newest epoch authenticated.
func (rx *rxKeys) key() []byte { return rx.keys[rx.epoch] }

// extend registers the epochs up to lookahead past the newest.
func (rx *rxKeys) extend() error {
	for e := rx.epoch + 1; e <= rx.epoch+lookahead; e++ {
		if _, ok := rx.keys[e]; ok {
			continue
		}
		k := nextKey(rx.keys[e-1], e)
		if err := rx.ctx.AddCipherForMKI(mki(e), k[:16], k[16:]); err != nil {
			return err
		}
		rx.keys[e] = k
	}
	return nil
}

// authenticated notes the epoch of a packet that passed authentication (its MKI, the last
// bytes): the first packet under a later epoch moves the receiver on to it.
func (rx *rxKeys) authenticated(pkt []byte, now func() time.Time, grace time.Duration) {
	m := binary.BigEndian.Uint32(pkt[len(pkt)-mkiLen:])
	if m <= rx.epoch || m > rx.epoch+lookahead {
		return
	}
	_ = rx.ctx.SetSendMKI(mki(m)) // the send MKI cannot be removed: keep it current
	for e := range rx.keys {
		if e+1 < m { // older than the previous epoch: gone now
			_ = rx.ctx.RemoveMKI(mki(e))
			delete(rx.keys, e)
		}
	}
	rx.epoch = m
	rx.hasPrev, rx.prevUntil = true, now().Add(grace)
	_ = rx.extend()
}

// expire drops the previous epoch's key once its grace period is over.
func (rx *rxKeys) expire(now time.Time) {
	if rx.hasPrev && !now.Before(rx.prevUntil) {
		_ = rx.ctx.RemoveMKI(mki(rx.epoch - 1))
		delete(rx.keys, rx.epoch-1)
		rx.hasPrev = false
	}
}

// txKeys is a link's sending side: the peer's key chain from the epoch it handed over, one
// context. Guarded by Link.mu.
type txKeys struct {
	ctx      *srtp.Context
	epoch    uint32
	key      []byte
	since    time.Time // when the sender moved to this epoch
	used     bool      // a packet went out under this epoch's key
	rtcpSSRC uint32    // every RTCP packet is sent under it
	sent     sentLog
}

func newTx(pk PeerKey, now time.Time) (*txKeys, error) {
	if len(pk.Key) != KeyLen || pk.SSRC == 0 {
		return nil, ErrBadKey
	}
	key := append([]byte(nil), pk.Key...)
	ctx, err := srtp.CreateContext(key[:16], key[16:], profile, srtp.MasterKeyIndicator(mki(pk.Epoch)))
	if err != nil {
		return nil, err
	}
	return &txKeys{ctx: ctx, epoch: pk.Epoch, key: key, since: now, rtcpSSRC: pk.SSRC, sent: newSentLog()}, nil
}

// advance moves the sender to a later epoch of its chain.
func (tx *txKeys) advance(to uint32, now time.Time) error {
	key := tx.key
	for e := tx.epoch; e < to; e++ {
		key = nextKey(key, e+1)
	}
	if err := tx.ctx.AddCipherForMKI(mki(to), key[:16], key[16:]); err != nil {
		return err
	}
	if err := tx.ctx.SetSendMKI(mki(to)); err != nil {
		return err
	}
	_ = tx.ctx.RemoveMKI(mki(tx.epoch))
	tx.epoch, tx.key, tx.since, tx.used = to, key, now, false
	return nil
}
