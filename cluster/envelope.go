package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the control-message envelope.
var (
	ErrBadEnvelope = errors.New("cluster: bad control message")
	ErrDuplicate   = errors.New("cluster: control message seen before")
	ErrStale       = errors.New("cluster: control message of an older incarnation or too old")
)

// Envelope wraps every control message a node sends another (heartbeats, room events, room
// syncs, pipe requests and replies). It is signed by the sender incarnation's key, which Cert
// carries, vouched for by the cluster secret (see NodeKeys, Verifier): receivers drop a message
// whose cert, signature or time (see Freshness) does not hold. Then they merge by (Node, Inc,
// Seq): a message seen before, one of a node's previous incarnation, or one older than the
// receiver's window changes nothing, so nats.go replaying its reconnect buffer, a late message,
// or a captured one sent again, is harmless.
type Envelope struct {
	// Node is the sender's node id.
	Node string `json:"node"`
	// Inc is the sender's incarnation: a random id drawn when its process started. A node
	// restarted under the same id is a new incarnation.
	Inc string `json:"inc"`
	// Seq numbers the sender's messages within its incarnation, from 1, on every subject.
	Seq uint64 `json:"seq"`
	// Time is the sender's clock when it sent the message (Unix milliseconds). Receivers refuse
	// a message whose Time is more than Freshness from their clock; no other decision compares
	// clocks of two nodes.
	Time int64 `json:"time"`
	// Type names the body's type (a room event's method, "heartbeat", "pipe", ...).
	Type string `json:"type"`
	// Body is the message, JSON.
	Body json.RawMessage `json:"body,omitempty"`
	// Cert is the sender incarnation's vouched public keys.
	Cert *Cert `json:"cert,omitempty"`
	// Sig is the Ed25519ph signature, by Cert's key, of every other field (see digest).
	Sig []byte `json:"sig,omitempty"`
}

// NewIncarnation draws a random incarnation id.
func NewIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Clock tells the time; the wall clock in production, a fake advanced by the test (or a
// simulator's virtual time) elsewhere.
type Clock interface {
	Now() time.Time
}

// WallClock is the production Clock.
type WallClock struct{}

// Now implements Clock.
func (WallClock) Now() time.Time { return time.Now() }

// Stamper seals this node's outgoing messages: node, incarnation, the next sequence number
// and the send time, and, with keys, its cert and signature. It is safe for concurrent use.
type Stamper struct {
	node, inc string
	clock     Clock
	keys      *NodeKeys
	seq       atomic.Uint64
}

// NewStamper returns the stamper of node's incarnation inc, whose envelopes are not signed
// (for tests of the state machines; Verifier refuses them).
func NewStamper(node, inc string, clock Clock) *Stamper {
	return &Stamper{node: node, inc: inc, clock: clock}
}

// NewSigningStamper returns the stamper of the incarnation keys belong to: it signs every
// envelope.
func NewSigningStamper(keys *NodeKeys, clock Clock) *Stamper {
	return &Stamper{node: keys.cert.Node, inc: keys.cert.Inc, clock: clock, keys: keys}
}

// Seal wraps body (marshalled to JSON) in an envelope of type typ.
func (s *Stamper) Seal(typ string, body any) ([]byte, error) {
	return s.SealAs(s.Reserve(), typ, body)
}

// Reserve takes the next sequence number for a message sealed later with SealAs. A snapshot
// (a room sync reply) reserves its number before it reads the state it reports, so every
// message about a change the snapshot misses is numbered after it.
func (s *Stamper) Reserve() uint64 { return s.seq.Add(1) }

// SealAs is Seal with a sequence number taken by Reserve.
func (s *Stamper) SealAs(seq uint64, typ string, body any) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	e := Envelope{Node: s.node, Inc: s.inc, Seq: seq, Time: s.clock.Now().UnixMilli(), Type: typ, Body: raw}
	if s.keys != nil {
		if err := s.keys.sign(&e); err != nil {
			return nil, err
		}
	}
	return json.Marshal(e)
}

// Open parses an envelope (its body stays raw).
func Open(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil || e.Node == "" || e.Inc == "" || e.Seq == 0 || e.Type == "" {
		return Envelope{}, ErrBadEnvelope
	}
	return e, nil
}

// window is how many sequence numbers behind a sender's newest a message may arrive and still
// count (messages of one sender on several subjects reach their handlers in any order).
const window = 8192

// Dedup is the receiver's merge filter over envelopes. It keeps a node's window when the node
// leaves the membership, so the same incarnation coming back (after a partition) continues
// where it was, and its replayed old messages stay duplicates. It is safe for concurrent use.
type Dedup struct {
	mu      sync.Mutex
	senders map[string]*sender // by node id
}

type sender struct {
	inc     string
	retired map[string]bool // earlier incarnations
	high    uint64          // newest sequence number seen
	seen    [window / 64]uint64
}

// NewDedup returns an empty filter.
func NewDedup() *Dedup { return &Dedup{senders: make(map[string]*sender)} }

// Accept tells whether e is new: nil, or ErrDuplicate, or ErrStale. restarted reports that e
// is the first message of a new incarnation of a node known under another one (the previous
// incarnation is retired: its state must go).
func (d *Dedup) Accept(e Envelope) (restarted bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.senders[e.Node]
	switch {
	case s == nil:
		s = &sender{inc: e.Inc, retired: map[string]bool{}}
		d.senders[e.Node] = s
	case s.inc != e.Inc:
		if s.retired[e.Inc] {
			return false, ErrStale
		}
		s.retired[s.inc] = true
		*s = sender{inc: e.Inc, retired: s.retired}
		restarted = true
	}
	if e.Seq+window <= s.high {
		return restarted, ErrStale
	}
	for s.high < e.Seq { // slide the window forward, clearing the bits that enter it
		s.high++
		s.clear(s.high)
		if e.Seq-s.high > window { // a jump: start the window afresh
			s.seen = [window / 64]uint64{}
			s.high = e.Seq
		}
	}
	if s.has(e.Seq) {
		return restarted, ErrDuplicate
	}
	s.set(e.Seq)
	return restarted, nil
}

func (s *sender) has(seq uint64) bool { i := seq % window; return s.seen[i/64]&(1<<(i%64)) != 0 }
func (s *sender) set(seq uint64)      { i := seq % window; s.seen[i/64] |= 1 << (i % 64) }
func (s *sender) clear(seq uint64)    { i := seq % window; s.seen[i/64] &^= 1 << (i % 64) }
