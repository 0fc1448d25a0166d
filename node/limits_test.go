package node

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/rtcp"
)

// TestSendLimit: a sender's allowance holds a burst of messages and of bytes, refills at the
// rates, and turns refusals into ErrFlooding once the sender has ignored floodStrikes of them.
func TestSendLimit(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newSendLimit(Rate{Messages: 10, Burst: 5, Bytes: 1000}, 1500, now)
	for i := 0; i < 5; i++ {
		if err := l.allow(10, now); err != nil {
			t.Fatalf("message %d of the burst: %v", i, err)
		}
	}
	if err := l.allow(10, now); !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrFlooding) {
		t.Fatalf("past the burst: %v, want ErrRateLimited", err)
	}
	now = now.Add(100 * time.Millisecond) // one message refilled
	if err := l.allow(10, now); err != nil {
		t.Fatalf("after 100 ms at 10/s: %v", err)
	}
	// Bytes: the bucket holds two seconds (2000), at least the largest message (1500).
	now = now.Add(time.Second)
	if err := l.allow(1500, now); err != nil {
		t.Fatalf("one largest message: %v", err)
	}
	if err := l.allow(1500, now); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("bytes past the bucket: %v", err)
	}
	if err := l.allow(400, now); err != nil {
		t.Fatalf("a small message within the bytes left: %v", err)
	}
	// Flooding: the refusals run out.
	var err error
	refusals := 1 // the byte refusal above
	for err = l.allow(10, now); !errors.Is(err, ErrFlooding); err = l.allow(10, now) {
		if err != nil {
			refusals++
		}
		if refusals > 2*floodStrikes {
			t.Fatal("never flooding")
		}
	}
	if refusals != floodStrikes {
		t.Fatalf("flooding after %d refusals, want %d", refusals, floodStrikes)
	}
	none := newSendLimit(Rate{Messages: -1, Bytes: -1}, 1500, now)
	for i := 0; i < 10000; i++ {
		if err := none.allow(1500, now); err != nil {
			t.Fatal("a negative rate limits")
		}
	}
}

// TestLimitsDefaults: zero fields take the defaults, negative ones stay (no cap), and the
// NACK cap reaches the retransmission budget.
func TestLimitsDefaults(t *testing.T) {
	o := Options{Limits: Limits{Rooms: -1, Chat: Rate{Messages: 3}}}.withDefaults()
	l := o.Limits
	if l.Rooms != -1 || l.RoomParticipants != DefaultMaxRoomParticipants || l.Tracks != DefaultMaxTracks || l.NackSeqs != DefaultNackSeqs ||
		l.Chat != (Rate{Messages: 3, Burst: DefaultChatBurst, Bytes: DefaultChatBytes}) ||
		l.Data != (Rate{Messages: DefaultDataRate, Burst: DefaultDataBurst, Bytes: DefaultDataBytes}) {
		t.Fatalf("limits %+v", l)
	}
	n, err := New(Options{Workers: 1, LoopbackOnly: true, TCPPort: TCPDisabled, Limits: Limits{NackSeqs: 16}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.rtx.MaxPerNack != 16 {
		t.Fatalf("NACK cap %d in the budget, want 16", n.rtx.MaxPerNack)
	}
}

// TestNackSeqsCap: whatever a NACK names (a subscriber's NACK as large as a packet, a relay
// child's list of thousands of sequence numbers), at most Limits.NackSeqs are looked up and
// resent, newest first; the rest are counted as out of range without being looked at.
func TestNackSeqsCap(t *testing.T) {
	const limit = 16
	newRig := func() *relayRig {
		r := newRelayRig(t, 100)
		r.c.rtx = rtxbudget.New(rtxbudget.Config{Share: 1, MaxPerNack: limit}.WithDefaults(), r.now, 0)
		for i := 0; i < 300; i++ {
			r.media()
		}
		return r
	}
	// A subscriber's NACK of a full 1500-byte packet: 371 pairs of 17 sequence numbers.
	r := newRig()
	pairs := make([]rtcp.NackPair, (1500-12)/4)
	for i := range pairs {
		pairs[i] = rtcp.NackPair{PacketID: r.seq - uint16(17*(len(pairs)-i)), LostPackets: 0xffff}
	}
	r.c.beginFeedback(r.now)
	r.c.nackPairs(pairs, make([]byte, 1500))
	named := uint64(17 * len(pairs))
	if got, refused := r.w.rtxPackets.Load(), r.w.rtxRefused[rtxbudget.OutOfRange].Load(); got != limit || refused != named-limit {
		t.Fatalf("subscriber NACK of %d: resent %d, refused past the cap %d; want %d, %d", named, got, refused, limit, named-limit)
	}
	for s := r.seq - limit; s != r.seq; s++ {
		if r.out.sent[s] != 2 {
			t.Fatalf("seq %d, among the newest %d, not resent", s, limit)
		}
	}
	// A relay child's NACK of 5000 sequence numbers.
	r = newRig()
	seqs := make([]uint16, 5000)
	for i := range seqs {
		seqs[i] = r.seq - uint16(len(seqs)-1-i)
	}
	r.c.nack(r.now, seqs)
	if got, refused := r.w.rtxPackets.Load(), r.w.rtxRefused[rtxbudget.OutOfRange].Load(); got != limit || refused != 5000-limit {
		t.Fatalf("relay NACK of 5000: resent %d, refused past the cap %d; want %d, %d", got, refused, limit, 5000-limit)
	}
}

type nopListener struct{}

func (nopListener) Notify(string, any) {}

// TestRoomFullCountsTheCluster: the cap on a room's participants counts those the cluster
// announced on other nodes too; a join that replaces a session of its identity, here or on
// another node, is admitted; a join that would open a room past the node's cap is refused.
func TestRoomFullCountsTheCluster(t *testing.T) {
	n, err := New(Options{Workers: 1, LoopbackOnly: true, TCPPort: TCPDisabled, Limits: Limits{RoomParticipants: 3, Rooms: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	g := Grant{Publish: true, Subscribe: true}
	a, err := n.Join("r", "a", g, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	r := a.Room()
	r.AddRemoteParticipant(ParticipantInfo{ID: "PAremote1", Identity: "x", JoinedAt: 1}, "n2")
	r.AddRemoteParticipant(ParticipantInfo{ID: "PAremote2", Identity: "y", JoinedAt: 1}, "n3")
	if _, err := n.Join("r", "b", g, false, nopListener{}); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("a fourth participant (one here, two elsewhere): %v, want ErrRoomFull", err)
	}
	if _, err := n.Join("r", "x", g, false, nopListener{}); err != nil {
		t.Fatalf("x moving here from n2: %v", err)
	}
	if _, err := n.Join("r", "a", g, false, nopListener{}); err != nil {
		t.Fatalf("a reconnecting: %v", err)
	}
	if _, err := n.Join("s", "c", g, false, nopListener{}); !errors.Is(err, ErrTooManyRooms) {
		t.Fatalf("a second room: %v, want ErrTooManyRooms", err)
	}
	if _, err := n.Join("r", "b", g, false, nopListener{}); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("b, with a and x here and x, y elsewhere (x counted once): %v, want ErrRoomFull", err)
	}
}

// BenchmarkRoomFull: the cap's check at a join into a room of 10,000 participants elsewhere,
// below the cap (the common case) and at it.
func BenchmarkRoomFull(b *testing.B) {
	for _, limit := range []int{20000, 10000} {
		b.Run(strconv.Itoa(limit), func(b *testing.B) { benchmarkRoomFull(b, limit) })
	}
}

func benchmarkRoomFull(b *testing.B, limit int) {
	n, err := New(Options{Workers: 1, LoopbackOnly: true, TCPPort: TCPDisabled, Limits: Limits{RoomParticipants: limit}})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	p, err := n.Join("r", "a", Grant{}, false, nopListener{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		p.Room().AddRemoteParticipant(ParticipantInfo{ID: "PA" + strconv.Itoa(i), Identity: "i" + strconv.Itoa(i)}, "n2")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n.mu.Lock()
		n.roomFull(p.Room(), nil, "newcomer", nil)
		n.mu.Unlock()
	}
}

// BenchmarkSendLimit: one chat or data message's check.
func BenchmarkSendLimit(b *testing.B) {
	now := time.Unix(1e9, 0)
	l := newSendLimit(Rate{Messages: 1e9, Burst: 1 << 30, Bytes: 1 << 40}, 1500, now)
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		_ = l.allow(100, now)
	}
}
