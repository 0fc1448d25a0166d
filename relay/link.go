package relay

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Link is the encrypted path to one peer node. It is a webrtc.TrackLocalWriter, so a
// producer's relay sink writes to it directly.
//
// Nonces. AES-GCM seals each packet under a nonce made of its SSRC and packet index (SRTCP:
// its SRTCP index), so no (SSRC, index) may be sealed twice with other bytes under one key.
// Three rules keep it so. Every SSRC sent under on a link is handed out by the receiving side,
// from a counter that lives as long as its key chain (NewSSRC: the SSRCs of pipes; Key: the
// SSRC a sending context sends its feedback under), so a pipe made again, or a peer that
// restarts its sending side, never starts an SSRC at an index used before. The sending
// context stays while the peer's key chain does (Transport.Link). And a retransmission under
// an index already sent goes out only with the same bytes (sentLog).
type Link struct {
	Peer string
	t    *Transport

	addr   atomic.Pointer[netip.AddrPort]
	linked bool // under t.mu: the peer's key is known, the link sends
	closed atomic.Bool
	heard  atomic.Int64  // Unix nanoseconds of the peer's last authenticated RTCP (0: never)
	ssrcs  atomic.Uint32 // the last SSRC handed out under the receiving key chain
	seed   maphash.Seed  // of the hashes of the packets sent

	rxMu sync.Mutex // guards rx: the read goroutine, Key and the key schedule
	rx   *rxKeys

	// mu guards tx, which is not safe for concurrent use: it is held for the encryption only.
	// The workers' relay sinks marshal, encrypt and send each into a buffer of their own, so
	// they overlap their system calls instead of queueing behind one another's.
	mu   sync.Mutex
	tx   *txKeys
	bufs sync.Pool // of *sendBuf
}

// sendBuf is one write's plaintext and ciphertext.
type sendBuf struct {
	plain, out [1600]byte
}

func (l *Link) getBuf() *sendBuf {
	if b, ok := l.bufs.Get().(*sendBuf); ok {
		return b
	}
	return new(sendBuf)
}

// Key is what the peer sends with: this side's receiving key as of its current epoch, and a
// fresh SSRC for the feedback of a sending context the peer would make from it.
func (l *Link) Key() PeerKey {
	l.rxMu.Lock()
	k := PeerKey{Key: l.rx.key(), Epoch: l.rx.epoch}
	l.rxMu.Unlock()
	k.SSRC = l.NewSSRC()
	return k
}

// NewSSRC hands out an SSRC the peer never sent under with this side's receiving key chain.
func (l *Link) NewSSRC() uint32 { return l.NewSSRCs(1) }

// NewSSRCs hands out n consecutive such SSRCs (a pipe's, one per simulcast layer) and returns
// the first.
func (l *Link) NewSSRCs(n uint32) uint32 {
	for {
		if last := l.ssrcs.Add(n); last >= n { // no SSRC of the run is 0 (the counter wrapped)
			return last - n + 1
		}
	}
}

// setPeerKey makes or keeps the sending context for the peer's key (see Transport.Link).
func (l *Link) setPeerKey(pk PeerKey, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tx := l.tx; tx != nil && sameChain(tx.key, tx.epoch, pk.Key, pk.Epoch) {
		if pk.Epoch > tx.epoch {
			return tx.advance(pk.Epoch, now)
		}
		return nil
	}
	tx, err := newTx(pk, now)
	if err != nil {
		return err
	}
	l.tx = tx
	l.linked = true
	return nil
}

// rotate moves the sending side to the next epoch when its key is due, and retires the
// receiving side's previous key past its grace period.
func (l *Link) rotate(now time.Time) {
	l.mu.Lock()
	if tx := l.tx; tx != nil && tx.used && now.Sub(tx.since) >= l.t.keying.Rotation {
		if err := tx.advance(tx.epoch+1, now); err != nil {
			l.t.log.Error("cannot rotate the relay key", "peer", l.Peer, "error", err)
		}
	}
	l.mu.Unlock()
	l.rxMu.Lock()
	l.rx.expire(now)
	l.rxMu.Unlock()
}

// Retire ends an SSRC on the link (its pipe ended): nothing is sent under it again.
func (l *Link) Retire(ssrc uint32) {
	l.mu.Lock()
	if l.tx != nil {
		l.tx.sent.retire(ssrc)
	}
	l.mu.Unlock()
}

// sentUnder tells whether the link's sending context ever sent under ssrc.
func (l *Link) sentUnder(ssrc uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tx != nil && l.tx.sent.used(ssrc)
}

// WriteRTP encrypts and sends one packet to the peer. Concurrent writers serialise on the
// encryption only, never on the send.
func (l *Link) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	a := l.addr.Load()
	if a == nil || l.closed.Load() {
		return 0, ErrClosed
	}
	b := l.getBuf()
	defer l.bufs.Put(b)
	n, err := h.MarshalTo(b.plain[:])
	if err != nil {
		return 0, err
	}
	if n+len(payload) > 1500 {
		return 0, errors.New("relay: packet too large")
	}
	plain := append(b.plain[:n], payload...)
	sum := maphash.Bytes(l.seed, plain)
	l.mu.Lock()
	tx := l.tx
	if tx == nil {
		l.mu.Unlock()
		return 0, ErrNotLinked
	}
	if err := tx.sent.admit(h.SSRC, h.SequenceNumber, sum); err != nil {
		l.mu.Unlock()
		l.t.RefusedResend.Add(1)
		return 0, err
	}
	out, err := tx.ctx.EncryptRTP(b.out[:0], plain, h)
	tx.used = true
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if _, err := l.t.conn.WriteToUDPAddrPort(out, *a); err != nil {
		return 0, err
	}
	l.t.PacketsOut.Add(1)
	l.t.BytesOut.Add(uint64(len(out)))
	return len(out), nil
}

// Write sends a marshaled RTP packet.
func (l *Link) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	return l.WriteRTP(&p.Header, p.Payload)
}

// WriteRTCP encrypts and sends feedback to the peer, under the sending context's feedback SSRC
// (whatever sender SSRC the first packet names: the peer reads only the media SSRCs).
func (l *Link) WriteRTCP(pkts []rtcp.Packet) error {
	a := l.addr.Load()
	if a == nil || l.closed.Load() {
		return ErrClosed
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	if len(raw) < 8 {
		return errors.New("relay: rtcp packet too short")
	}
	b := l.getBuf()
	defer l.bufs.Put(b)
	l.mu.Lock()
	tx := l.tx
	if tx == nil {
		l.mu.Unlock()
		return ErrNotLinked
	}
	raw[4], raw[5], raw[6], raw[7] = byte(tx.rtcpSSRC>>24), byte(tx.rtcpSSRC>>16), byte(tx.rtcpSSRC>>8), byte(tx.rtcpSSRC)
	out, err := tx.ctx.EncryptRTCP(b.out[:0], raw, nil)
	tx.used = true
	l.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = l.t.conn.WriteToUDPAddrPort(out, *a)
	return err
}
