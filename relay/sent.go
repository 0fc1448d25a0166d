package relay

import "errors"

// Errors of the sending side's nonce discipline.
var (
	// ErrIndexReused: a packet under an (SSRC, index) already sent with other bytes, or too old
	// to tell. AES-GCM must never seal two plaintexts under one nonce, so it is not sent.
	ErrIndexReused = errors.New("relay: packet index already used with other bytes")
	// ErrSSRCRetired: an SSRC whose pipe ended on this link; it is never sent under again.
	ErrSSRCRetired = errors.New("relay: ssrc retired on this link")
)

// sentWindow is the number of packets per SSRC the sender remembers: a retransmission further
// behind the newest packet than this is refused (it could not be checked).
const sentWindow = 1024

// sentLog remembers, per SSRC a link sends under, the newest packet index and a hash of each of
// the last sentWindow packets, so a retransmission goes out under the index the packet had only
// with the same bytes (the same ciphertext: the nonce is not reused), and a packet the link
// never sent (reordered, or lost before the link) goes out once. An SSRC whose pipe ended is
// retired: kept as a tombstone, never sent under again. Guarded by Link.mu.
type sentLog struct {
	streams map[uint32]*sentStream // nil: retired
}

type sentStream struct {
	started bool
	highest uint64 // newest index sent
	// slots[i%sentWindow] names the last packet sent with an index i of that residue: a tag of
	// i (1 + i/sentWindow mod 65535) in the top 16 bits, the low 48 bits of its hash below (0:
	// empty). A tag that matches by wraparound only makes a packet never sent look sent, which
	// refuses it (safe); two plaintexts pass as one only if 48 bits of their hashes agree.
	slots [sentWindow]uint64
}

const sumBits = 48

func slotOf(idx, sum uint64) uint64 {
	return (1+idx/sentWindow%(1<<(64-sumBits)-1))<<sumBits | sum&(1<<sumBits-1)
}

func newSentLog() sentLog {
	return sentLog{streams: make(map[uint32]*sentStream)}
}

// used tells whether the link ever sent under ssrc.
func (s *sentLog) used(ssrc uint32) bool {
	_, ok := s.streams[ssrc]
	return ok
}

// retire ends ssrc on the link.
func (s *sentLog) retire(ssrc uint32) { s.streams[ssrc] = nil }

// admit checks a packet about to be encrypted under (ssrc, seq) with plaintext hash sum, and
// records it.
func (s *sentLog) admit(ssrc uint32, seq uint16, sum uint64) error {
	st, ok := s.streams[ssrc]
	if !ok {
		st = &sentStream{}
		s.streams[ssrc] = st
	}
	if st == nil {
		return ErrSSRCRetired
	}
	idx := st.index(seq)
	slot, want := &st.slots[idx%sentWindow], slotOf(idx, sum)
	switch {
	case !st.started || idx > st.highest:
		st.started, st.highest = true, idx
	case st.highest-idx >= sentWindow:
		return ErrIndexReused
	case *slot>>sumBits == want>>sumBits: // sent before
		if *slot != want {
			return ErrIndexReused
		}
		return nil // the same packet again: the same bytes on the wire
	}
	*slot = want
	return nil
}

// index is the packet index SRTP's sender gives seq (RFC 3711, 3.3.1, as pion/srtp estimates
// it: the rollover counter that puts seq closest to the newest index, never below zero).
func (st *sentStream) index(seq uint16) uint64 {
	if !st.started {
		return uint64(seq)
	}
	const half = 1 << 15
	roc, last := st.highest>>16, int32(st.highest&0xffff)
	s := int32(seq)
	if st.highest > half {
		switch {
		case last < half && s-last > half:
			roc--
		case last >= half && last-half > s:
			roc++
		}
	}
	return roc<<16 | uint64(seq)
}
