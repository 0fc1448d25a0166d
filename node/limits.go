package node

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
)

// Errors of the node's limits (PROTOCOL.md, "Limits"); the signaling layer maps each to a code.
var (
	ErrTooManyRooms  = errors.New("this node serves as many rooms as it may")
	ErrRoomFull      = errors.New("the room is full")
	ErrTooManyTracks = errors.New("too many tracks for one participant")
	ErrRateLimited   = errors.New("sending too fast")
	// ErrFlooding wraps ErrRateLimited: the sender went on sending far past its limit.
	ErrFlooding = fmt.Errorf("%w, persistently", ErrRateLimited)
)

// Limits are the node's caps. A zero field takes its default (the Default constants below); a
// negative one turns that cap off.
type Limits struct {
	// Rooms is the number of rooms this node serves at a time.
	Rooms int
	// RoomParticipants caps the participants of one room as this node knows it, by identity:
	// its own, and once the room is open here, those the cluster announced on other nodes. A
	// join that replaces a session of its identity is always admitted. Joins on several nodes at
	// the same moment may pass it by a few.
	RoomParticipants int
	// Tracks caps the producers of one participant (the sending audio and video sections of its
	// send transport).
	Tracks int
	// Chat limits the application messages (the message request) of one participant.
	Chat Rate
	// Data limits the data-channel messages of one participant.
	Data Rate
	// NackSeqs caps the sequence numbers handled per NACK, from a subscriber or a relay child,
	// newest first: what a NACK can cost is bounded whatever it names (not negative: a NACK
	// is always bounded).
	NackSeqs int
}

// Rate is a sender's allowance: two token buckets, of messages and of bytes. Messages per
// second and bytes per second refill them; Burst messages, and two seconds of bytes (at least
// one message of the largest size), fill them.
type Rate struct {
	Messages float64 // per second; negative: no limit
	Burst    int
	Bytes    int // per second; negative: no limit on bytes
}

// Defaults of Limits: high enough for a town hall and for chat at typing speed, low enough that
// one participant cannot flood a room.
const (
	DefaultMaxRooms            = 5000
	DefaultMaxRoomParticipants = 10000
	DefaultMaxTracks           = 16
	DefaultChatRate            = 10 // messages per second
	DefaultChatBurst           = 30
	DefaultChatBytes           = 64 << 10 // per second
	DefaultDataRate            = 100
	DefaultDataBurst           = 200
	DefaultDataBytes           = 256 << 10
	DefaultNackSeqs            = rtxbudget.DefaultMaxPerNack
)

// maxChatMessage is the largest chat message (a signaling frame): the byte bucket holds one.
const maxChatMessage = 64 << 10

// floodStrikes is how many refusals a sender may collect (one is forgiven per second) before it
// counts as flooding (ErrFlooding): a client that slows down when refused never floods, one that
// ignores its refusals does within seconds.
const floodStrikes = 100

func (l Limits) withDefaults() Limits {
	if l.Rooms == 0 {
		l.Rooms = DefaultMaxRooms
	}
	if l.RoomParticipants == 0 {
		l.RoomParticipants = DefaultMaxRoomParticipants
	}
	if l.Tracks == 0 {
		l.Tracks = DefaultMaxTracks
	}
	l.Chat = l.Chat.withDefaults(Rate{Messages: DefaultChatRate, Burst: DefaultChatBurst, Bytes: DefaultChatBytes})
	l.Data = l.Data.withDefaults(Rate{Messages: DefaultDataRate, Burst: DefaultDataBurst, Bytes: DefaultDataBytes})
	if l.NackSeqs <= 0 {
		l.NackSeqs = DefaultNackSeqs
	}
	return l
}

func (r Rate) withDefaults(d Rate) Rate {
	if r.Messages == 0 {
		r.Messages = d.Messages
	}
	if r.Burst <= 0 {
		r.Burst = d.Burst
	}
	if r.Bytes == 0 {
		r.Bytes = d.Bytes
	}
	return r
}

// roomFull tells whether a join of identity would pass the room's cap (its own maxParticipants
// when set, else the node's), and which cap that is. The room's participants are counted by
// identity (a session here and one elsewhere of one identity, transiently both known, count
// once), and a join that replaces a session of its identity, here or elsewhere, adds none. The
// caller holds n.mu.
func (n *Node) roomFull(r *Room, old *Participant, identity string) (int, bool) {
	local := n.identities[r.name]
	count := len(local)
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := n.opts.Limits.RoomParticipants
	if m := r.settings.MaxParticipants; m > 0 {
		limit = m
	}
	if limit < 0 || old != nil {
		return limit, false
	}
	if count+len(r.remote) < limit {
		return limit, false // below the cap even counting every session: no need to look closer
	}
	for _, rp := range r.remote {
		if rp.info.Identity == identity {
			return limit, false
		}
		if _, here := local[rp.info.Identity]; !here {
			count++
		}
	}
	return limit, count >= limit
}

// admitTracks checks an offer's sending media sections against the cap per participant.
func (n *Node) admitTracks(sending int) error {
	if limit := n.opts.Limits.Tracks; limit >= 0 && sending > limit {
		return fmt.Errorf("%w: the offer sends %d tracks, at most %d are allowed", ErrTooManyTracks, sending, limit)
	}
	return nil
}

// sendLimit is one participant's allowance for one kind of message (chat or data).
type sendLimit struct {
	mu             sync.Mutex
	msgs, bytes    bucket
	strikes        bucket // refusals before the sender counts as flooding
	noMsgs, noByte bool
}

func newSendLimit(r Rate, largest int, now time.Time) *sendLimit {
	l := &sendLimit{noMsgs: r.Messages < 0, noByte: r.Bytes < 0}
	l.msgs = newBucket(r.Messages, float64(r.Burst), now)
	l.bytes = newBucket(float64(r.Bytes), float64(max(2*r.Bytes, largest)), now)
	l.strikes = newBucket(1, floodStrikes, now)
	return l
}

// allow takes a message of size bytes from the allowance: nil, ErrRateLimited, or ErrFlooding
// once the sender has been refused floodStrikes times without slowing down.
func (l *sendLimit) allow(size int, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	okMsgs := l.noMsgs || l.msgs.has(1, now)
	okBytes := l.noByte || l.bytes.has(float64(size), now)
	if okMsgs && okBytes {
		if !l.noMsgs {
			l.msgs.take(1)
		}
		if !l.noByte {
			l.bytes.take(float64(size))
		}
		return nil
	}
	if !l.strikes.has(1, now) {
		return ErrFlooding
	}
	l.strikes.take(1)
	return ErrRateLimited
}

// bucket is a token bucket on the caller's clock.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64, now time.Time) bucket {
	return bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// has refills the bucket up to now and tells whether it holds n tokens.
func (b *bucket) has(n float64, now time.Time) bool {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+b.rate*el.Seconds())
		b.last = now
	}
	return b.tokens >= n
}

func (b *bucket) take(n float64) { b.tokens -= n }
