package relay

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestRotationUnderMediaLosesNothing: with keys rotating every 30 ms, steady media one way and
// feedback the other way for more than a second cross dozens of rotations; every packet
// arrives and none is dropped.
func TestRotationUnderMediaLosesNothing(t *testing.T) {
	ra, rb := &recorder{}, &recorder{}
	k := Keying{Rotation: 30 * time.Millisecond, Grace: 15 * time.Millisecond}
	a, tapA := listenTapped(t, ra, k, time.Now)
	b, _ := listenTapped(t, rb, k, time.Now)
	la, lb := link(t, a, b)
	const n = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // feedback from b, under b's own rotations
		defer wg.Done()
		for i := 0; i < n/10; i++ {
			if err := lb.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 11}}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for seq := 0; seq < n; seq++ {
		if err := media(la, 11, uint16(seq), "m"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	waitCount(t, rb, n, b)
	eventually(t, func() error {
		if _, fb := ra.snapshot(); fb != n/10 {
			return fmt.Errorf("feedback %d, want %d (drops %v)", fb, n/10, a.Drops())
		}
		return nil
	})
	for _, tr := range []*Transport{a, b} {
		if d := tr.Drops(); d[DropAuth]+d[DropKey]+d[DropReplay] != 0 {
			t.Fatalf("drops %v", d)
		}
	}
	epochs := map[uint32]bool{}
	for _, d := range tapA.datagrams() {
		epochs[idOf(d).mki] = true
	}
	if len(epochs) < 10 {
		t.Fatalf("media crossed %d epochs, want at least 10", len(epochs))
	}
	t.Logf("%d packets and %d feedback packets across %d epochs", n, n/10, len(epochs))
}

// TestOldOrUnknownKeyDropped: after a rotation the previous key still passes during the grace
// period, then is dropped, as is a key of an epoch the receiver does not know.
func TestOldOrUnknownKeyDropped(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	rb := &recorder{}
	k := Keying{Rotation: time.Hour, Grace: 30 * time.Second}
	a, _ := listenTapped(t, &recorder{}, k, clock.Now)
	b, _ := listenTapped(t, rb, k, clock.Now)
	la, lb := link(t, a, b)
	k0 := lb.Key() // b's receiving key, epoch 0: a holder of it after the rotation
	stale, err := newTx(PeerKey{Key: k0.Key, Epoch: 0, SSRC: 1000}, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := media(la, 11, 1, "e0"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rb, 1, b)
	clock.Add(time.Hour)
	a.rotate()
	if err := media(la, 11, 2, "e1"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rb, 2, b)
	if got := lb.Key(); got.Epoch != 1 {
		t.Fatalf("b's epoch %d after the rotation, want 1", got.Epoch)
	}
	sendWith(t, a, stale, b.Addr(), 99, 1, "old, in grace") // the previous key, within the grace period
	waitCount(t, rb, 3, b)
	clock.Add(31 * time.Second)
	b.rotate()
	sendWith(t, a, stale, b.Addr(), 99, 2, "old, past grace")
	unknown, err := newTx(PeerKey{Key: k0.Key, Epoch: 9, SSRC: 1001}, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	sendWith(t, a, unknown, b.Addr(), 98, 1, "unknown epoch")
	eventually(t, func() error {
		if b.DroppedKey.Load() != 2 {
			return fmt.Errorf("drops %v, want 2 for the key", b.Drops())
		}
		return nil
	})
	if err := media(la, 11, 3, "e1 again"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rb, 4, b)
	if got, _ := rb.snapshot(); got[2] != "A/99/1/old, in grace" || got[3] != "A/11/3/e1 again" {
		t.Fatalf("delivered %v", got)
	}
	if d := b.Drops(); d[DropAuth]+d[DropReplay] != 0 {
		t.Fatalf("drops %v", d)
	}
}

// TestSkippedEpochsAccepted: a sender whose packets under a few epochs were all lost is still
// understood (the receiver looks a few epochs ahead); an idle link does not rotate; a request
// that crossed a rotation (an
// earlier key of the same chain) keeps the sending context; a key of another chain (the peer
// reset its side) replaces it.
func TestSkippedEpochsAccepted(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	rb := &recorder{}
	k := Keying{Rotation: time.Hour, Grace: 30 * time.Second}
	a, _ := listenTapped(t, &recorder{}, k, clock.Now)
	b, _ := listenTapped(t, rb, k, clock.Now)
	la, lb := link(t, a, b)
	k0 := lb.Key()
	clock.Add(2 * time.Hour)
	a.rotate()
	if la.tx.epoch != 0 {
		t.Fatalf("an idle link rotated to epoch %d", la.tx.epoch)
	}
	for i := 0; i < lookahead; i++ { // packets under epochs 1 and 2 lost on the way
		la.mu.Lock()
		err := la.tx.advance(la.tx.epoch+1, clock.Now())
		la.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := media(la, 11, 1, "skipped"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rb, 1, b)
	if got := lb.Key().Epoch; got != lookahead {
		t.Fatalf("b's epoch %d, want %d", got, lookahead)
	}
	tx := la.tx
	if _, err := a.Link("B", b.Addr(), k0); err != nil || la.tx != tx || la.tx.epoch != lookahead {
		t.Fatalf("an earlier key of the chain replaced the sending context (%v)", err)
	}
	if _, err := a.Link("B", b.Addr(), PeerKey{Key: NewKey(), SSRC: 5}); err != nil || la.tx == tx {
		t.Fatalf("a key of another chain kept the sending context (%v)", err)
	}
}

// TestSentIndexMatchesSRTP: the sending side's index estimate (the sent log's) is the one
// pion/srtp seals with, across reordering and rollovers.
func TestSentIndexMatchesSRTP(t *testing.T) {
	tx, err := newTx(PeerKey{Key: NewKey(), SSRC: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var st sentStream
	seq := uint16(65000)
	for i := 0; i < 300_000; i++ {
		s := seq
		switch i % 7 {
		case 3:
			s = seq - 40 // a retransmission
		case 5:
			seq += 30 // a jump
		default:
			seq++
		}
		idx := st.index(s)
		if !st.started || idx > st.highest {
			st.started, st.highest = true, idx
		}
		raw := []byte{0x80, 96, byte(s >> 8), byte(s), 0, 0, 0, 0, 0, 0, 0, 1, 'x'}
		if _, err := tx.ctx.EncryptRTP(nil, raw, nil); err != nil {
			t.Fatal(err)
		}
		if roc, _ := tx.ctx.ROC(1); roc != uint32(st.highest>>16) {
			t.Fatalf("packet %d (seq %d): srtp's rollover counter %d, the sent log's %d", i, s, roc, st.highest>>16)
		}
	}
}

// TestSentLogAcrossRollover: the sent log tells resends by their full index, across a
// sequence number rollover.
func TestSentLogAcrossRollover(t *testing.T) {
	s := newSentLog()
	seq := uint16(65000)
	for i := 0; i < 1100; i++ {
		if seq != 10 { // 10 (after the rollover) is lost before the link
			if err := s.admit(7, seq, uint64(seq)); err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
		}
		seq++
	}
	// seq is now 564 of the second cycle.
	for _, c := range []struct {
		seq  uint16
		sum  uint64
		want error
	}{
		{65500, 65500, nil},            // a resend, the same bytes
		{65500, 1, ErrIndexReused},     // other bytes
		{10, 99, nil},                  // never sent: goes out once
		{10, 98, ErrIndexReused},       // and is then fixed
		{65000, 65000, ErrIndexReused}, // too old to tell (1100 behind)
	} {
		if err := s.admit(7, c.seq, c.sum); !errors.Is(err, c.want) {
			t.Errorf("admit(%d, %d) = %v, want %v", c.seq, c.sum, err, c.want)
		}
	}
}
