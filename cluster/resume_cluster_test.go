package cluster_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/pion/rtp"
)

// since lists the notifications from index i on, and the index after them.
func (h *heard) since(i int) ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got[i:]...), len(h.got)
}

func (h *heard) mark() int { _, n := h.since(0); return n }

// any tells whether one of notes is of method and mentions id.
func anyOf(notes []string, method, id string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, method+" ") && strings.Contains(n, id) {
			return true
		}
	}
	return false
}

// sink is a relay-style sink on a producer (Producer.Attach): what a subscriber's track gets.
type sink struct {
	mu   sync.Mutex
	seqs []uint16
	got  map[uint32]int // by the publisher's frame mark (publishVP8): how often it arrived
}

func (s *sink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	s.mu.Lock()
	s.seqs = append(s.seqs, h.SequenceNumber)
	if len(payload) >= 6 {
		if s.got == nil {
			s.got = map[uint32]int{}
		}
		s.got[uint32(payload[2])<<24|uint32(payload[3])<<16|uint32(payload[4])<<8|uint32(payload[5])]++
	}
	s.mu.Unlock()
	return 0, nil
}

// twice counts the frames that arrived more than once (through two pipes as one source).
func (s *sink) twice() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.got {
		if c > 1 {
			n++
		}
	}
	return n
}

func (s *sink) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	return s.WriteRTP(&p.Header, p.Payload)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seqs)
}

// jumps lists the steps between consecutive sequence numbers that are not +1..+50 (a restart
// of the numbering, or a jump a player would see).
func (s *sink) jumps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for i := 1; i < len(s.seqs); i++ {
		if d := s.seqs[i] - s.seqs[i-1]; d == 0 || d > 50 {
			out = append(out, fmt.Sprintf("%d->%d", s.seqs[i-1], s.seqs[i]))
		}
	}
	return out
}

// senders numbers the publishers of a test binary: a frame's mark (vp8pub).
var senders atomic.Uint32

// publishVP8 publishes a VP8 track as p (with the producer ids of a resumed session, if ids
// is not empty: keyed by the offer's mid, "0") and sends until closed or the test ends.
func publishVP8(t *testing.T, p *node.Participant, ids map[string]string) (*vp8pub.Sender, []node.ProducerInfo) {
	t.Helper()
	var infos []node.ProducerInfo
	v := vp8pub.Start(t, byte(senders.Add(1)), func(offer string) (string, error) {
		answer, got, err := p.PublishAs(offer, true, ids)
		infos = got
		return answer, err
	})
	return v, infos
}

// resumeCluster is three nodes on a MemNet: a (the publisher's), b (where it resumes), c (a
// viewer's), at a 250 ms heartbeat (slower than the other tests': a node of a loaded test
// machine that misses three beats drops its relay children) and resume grace grace.
type resumeCluster struct {
	n     map[string]*node.Node
	bus   map[string]*cluster.MemBus
	c     map[string]*cluster.Cluster
	pipes map[string]*relay.Pipes
}

// retiring counts node id's old pipes of moved producers.
func (rc *resumeCluster) retiring(id string) int { return rc.pipes[id].Retiring() }

// closeRelay closes node id's relay socket: no media leaves it any more.
func (rc *resumeCluster) closeRelay(t *testing.T, id string) {
	t.Helper()
	rc.pipes[id].Close()
}

func newResumeCluster(t *testing.T, grace time.Duration) *resumeCluster {
	return newResumeClusterFanout(t, grace, 0)
}

// newResumeClusterFanout is newResumeCluster with a relay fan-out of fanoutA on node a.
func newResumeClusterFanout(t *testing.T, grace time.Duration, fanoutA int) *resumeCluster {
	t.Helper()
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	rc := &resumeCluster{n: map[string]*node.Node{}, bus: map[string]*cluster.MemBus{}, c: map[string]*cluster.Cluster{}, pipes: map[string]*relay.Pipes{}}
	for _, id := range []string{"a", "b", "c"} {
		fanout := 0
		if id == "a" {
			fanout = fanoutA
		}
		rc.n[id], rc.bus[id], rc.c[id], rc.pipes[id] = memMemberWith(t, net, id, cluster.Options{Heartbeat: 250 * time.Millisecond, ResumeGrace: grace}, fanout)
	}
	checkFor(t, 5*time.Second, func() error {
		for id, c := range rc.c {
			if len(c.Peers()) != 2 {
				return fmt.Errorf("%s sees %v", id, c.Peers())
			}
		}
		return nil
	})
	return rc
}

// resumeOf is what the publisher's resume credential would say of its session on a.
// publish joins "pub" to room "r" on node id, heard by h, and publishes a VP8 track: the
// participant, its sender and its producer.
func (rc *resumeCluster) publish(t *testing.T, id string, h *heard) (*node.Participant, *vp8pub.Sender, node.ProducerInfo) {
	t.Helper()
	pub, err := rc.n[id].Join("r", "pub", node.Grant{Publish: true, Subscribe: true}, false, h)
	if err != nil {
		t.Fatal(err)
	}
	v, infos := publishVP8(t, pub, nil)
	return pub, v, infos[0]
}

// republish resumes res on node id and publishes its VP8 track again under the id of was.
func (rc *resumeCluster) republish(t *testing.T, id string, res node.Resume, was node.ProducerInfo) (*node.Participant, []node.ProducerInfo) {
	t.Helper()
	pub, err := rc.n[id].JoinResumed("r", "pub", node.Grant{Publish: true, Subscribe: true}, false, &heard{}, res)
	if err != nil {
		t.Fatal(err)
	}
	_, infos := publishVP8(t, pub, map[string]string{was.Mid: was.ID})
	return pub, infos
}

func resumeOf(p *node.Participant) node.Resume {
	return node.Resume{ID: p.ID(), Epoch: p.Epoch(), JoinedAt: p.Info().JoinedAt, Producers: p.Resumable(), Node: "a"}
}

// watch joins a viewer on node id and attaches a sink to its copy of producer pid once it is
// there: the viewer's notifications and what its track gets.
func (rc *resumeCluster) watch(t *testing.T, id, pid string) (*heard, *sink) {
	t.Helper()
	h := &heard{}
	if _, err := rc.n[id].Join("r", "viewer-"+id, node.Grant{Subscribe: true}, false, h); err != nil {
		t.Fatal(err)
	}
	var pr *node.Producer
	checkFor(t, 5*time.Second, func() error {
		if pr = rc.n[id].Producer("r", pid); pr == nil {
			return fmt.Errorf("%s does not have producer %s", id, pid)
		}
		return nil
	})
	s := &sink{}
	if _, err := pr.Attach(s, 0x1234); err != nil {
		t.Fatal(err)
	}
	receives(t, s, "before the move")
	return h, s
}

// receives waits for a sink to get media again.
func receives(t *testing.T, s *sink, when string) {
	t.Helper()
	from := s.count()
	checkFor(t, 10*time.Second, func() error {
		if got := s.count() - from; got < 10 {
			return fmt.Errorf("%s: %d packets", when, got)
		}
		return nil
	})
}

// TestProducerMovesAcrossNodes: a publisher on a, a viewer on c receiving its video through
// the relay; the publisher's session resumes on b (make-before-break: a still lives) and
// publishes again under the same producer id. c moves the producer to b without a leave, a
// join, a producerRemoved or a producerAdded (a producerMoved only), pipes it from b, the old
// pipe from a goes after the switch window, and the viewer's track goes on with continuous
// sequence numbers.
func TestProducerMovesAcrossNodes(t *testing.T) {
	rc := newResumeCluster(t, 5*time.Second)
	pub, old, info := rc.publish(t, "a", &heard{})
	pid := info.ID
	h, s := rc.watch(t, "c", pid)
	mark := h.mark()

	res := resumeOf(pub)
	pub2, infos2 := rc.republish(t, "b", res, info)
	if pub2.ID() != pub.ID() || pub2.Epoch() != res.Epoch+1 {
		t.Fatalf("resumed as %s epoch %d", pub2.ID(), pub2.Epoch())
	}
	if infos2[0].ID != pid {
		t.Fatalf("republished as %s, not %s", infos2[0].ID, pid)
	}
	checkFor(t, 10*time.Second, func() error {
		if got := rc.c["c"].Rooms().Producers("r")[pid]; got != "b" {
			return fmt.Errorf("c has the producer from %q", got)
		}
		if got := rc.c["c"].Rooms().Participants("r")[pub.ID()]; got != "b" {
			return fmt.Errorf("c has the publisher on %q", got)
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error { // make-before-break: both pipes are up a while
		if got := rc.pipes["c"].Piped("r"); len(got) != 1 || got[0].Parent != "b" || rc.retiring("c") != 1 {
			return fmt.Errorf("c's pipes in: %v, %d retiring", got, rc.retiring("c"))
		}
		return nil
	})
	receives(t, s, "while both sources flow")
	receives(t, s, "while both sources flow (longer)")
	// Through the old pipe c gets the new source too (a relays it on, once it switched): tagged
	// with the old pipe's generation, those copies are not forwarded once c's viewer switched.
	// A few may arrive twice around the switch; tagged alike, every one would.
	if n := s.twice(); n > 5 {
		t.Errorf("%d frames reached the viewer twice while both pipes were up", n)
	}
	old.Close() // the old publisher stops: whatever c gets from now on comes through b
	receives(t, s, "after the move")
	checkFor(t, 10*time.Second, func() error {
		if n := rc.retiring("c"); n != 0 {
			return fmt.Errorf("c still has %d old pipes", n)
		}
		return nil
	})
	receives(t, s, "after the old pipe went")
	notes, _ := h.since(mark)
	if !anyOf(notes, node.EventProducerMoved, pid) {
		t.Errorf("the viewer was not told producerMoved: %v", notes)
	}
	for _, bad := range []struct{ method, id string }{{node.EventProducerRemoved, pid}, {node.EventProducerAdded, pid},
		{node.EventParticipantLeft, pub.ID()}, {node.EventParticipantJoined, pub.ID()}} {
		if anyOf(notes, bad.method, bad.id) {
			t.Errorf("the viewer was told %s: %v", bad.method, notes)
		}
	}
	if j := s.jumps(); len(j) > 0 {
		t.Errorf("the viewer's track jumped: %v", j)
	}
}

// TestNodeKilledPublisherResumes: a's membership ends without a goodbye (its bus is cut, its
// relay closed) while its publisher's session resumes on b within the grace: c holds the
// publisher and its producer through the grace, moves them to b, its viewer receives again and
// never hears of a leave or a removal, not even once the grace is over.
func TestNodeKilledPublisherResumes(t *testing.T) {
	const grace = 3 * time.Second
	rc := newResumeCluster(t, grace)
	pub, _, info := rc.publish(t, "a", &heard{})
	pid := info.ID
	hb, _ := rc.watch(t, "b", pid)
	hc, s := rc.watch(t, "c", pid)
	markB, markC := hb.mark(), hc.mark()
	res := resumeOf(pub)

	rc.bus["a"].SetConnected(false) // killed: no goodbye, no event gets out
	rc.closeRelay(t, "a")
	checkFor(t, 5*time.Second, func() error {
		if got := rc.c["c"].Rooms().Orphans("r")[pub.ID()]; got != "a" {
			return fmt.Errorf("c has not noticed a's departure: orphans %v", rc.c["c"].Rooms().Orphans("r"))
		}
		return nil
	})
	killed := time.Now()

	rc.republish(t, "b", res, info)
	receives(t, s, "after the resume")
	if got := rc.c["c"].Rooms().Producers("r")[pid]; got != "b" {
		t.Fatalf("c has the producer from %q", got)
	}
	if time.Since(killed) > grace {
		t.Logf("the resume took longer than the grace (%v): the check below proves little", time.Since(killed))
	}
	time.Sleep(time.Until(killed.Add(grace + 500*time.Millisecond))) // the grace is over
	receives(t, s, "after the grace")
	for name, h := range map[string]*heard{"b": hb, "c": hc} {
		mark := map[string]int{"b": markB, "c": markC}[name]
		notes, _ := h.since(mark)
		for _, bad := range []struct{ method, id string }{{node.EventProducerRemoved, pid}, {node.EventProducerAdded, pid},
			{node.EventParticipantLeft, pub.ID()}, {node.EventParticipantJoined, pub.ID()}} {
			if anyOf(notes, bad.method, bad.id) {
				t.Errorf("the viewer on %s was told %s: %v", name, bad.method, notes)
			}
		}
	}
	if got := rc.c["c"].Rooms().Participants("r")[pub.ID()]; got != "b" {
		t.Fatalf("after the grace c has the publisher on %q", got)
	}
}

// TestProducerAdoptedByItsCarrier: a relays the publisher's video to b only (fan-out 1), b
// relays it on to c; the publisher's session resumes on b, the carrier. b's viewer and c's
// viewer keep their tracks (c re-pipes from b, the new origin, and the old pipe goes), c's
// tree of the producer is the new one (c under b), and a, which no longer carries it, relays
// nothing.
func TestProducerAdoptedByItsCarrier(t *testing.T) {
	rc := newResumeClusterFanout(t, 5*time.Second, 1)
	pub, old, info := rc.publish(t, "a", &heard{})
	pid := info.ID
	_, sb := rc.watch(t, "b", pid)
	hc, sc := rc.watch(t, "c", pid)
	if got := rc.pipes["c"].Piped("r"); len(got) != 1 || got[0].Parent != "b" {
		t.Fatalf("c's pipes in before the move: %v (a relays to one node only)", got)
	}
	mark := hc.mark()

	rc.republish(t, "b", resumeOf(pub), info)
	checkFor(t, 10*time.Second, func() error {
		if got := rc.c["c"].Rooms().Producers("r")[pid]; got != "b" {
			return fmt.Errorf("c has the producer from %q", got)
		}
		return nil
	})
	old.Close()
	checkFor(t, 10*time.Second, func() error {
		if n := rc.retiring("c"); n != 0 {
			return fmt.Errorf("c still has %d old pipes", n)
		}
		if in, out := rc.pipes["a"].Counts(); in != 0 || out != 0 {
			return fmt.Errorf("a still has %d pipes in, %d out", in, out)
		}
		return nil
	})
	receives(t, sb, "b's viewer after the move")
	receives(t, sc, "c's viewer after the move")
	if got := rc.pipes["c"].Piped("r"); len(got) != 1 || got[0].Parent != "b" {
		t.Fatalf("c's pipes in after the move: %v", got)
	}
	notes, _ := hc.since(mark)
	if anyOf(notes, node.EventProducerRemoved, pid) || anyOf(notes, node.EventProducerAdded, pid) || !anyOf(notes, node.EventProducerMoved, pid) {
		t.Errorf("c's viewer was told %v", notes)
	}
	for id, s := range map[string]*sink{"b": sb, "c": sc} {
		if j := s.jumps(); len(j) > 0 {
			t.Errorf("the track of %s's viewer jumped: %v", id, j)
		}
	}
}

// TestStaleSessionFencedAfterPartition: a is cut off from the cluster (NATS only: its relay
// still lives) while its publisher's session resumes on b. When the partition heals, a learns
// of the resumed session through the room re-sync and fences its stale copy (closed "resumed",
// no leave for anyone); the stale copy's announcements (epoch 0) move nothing back on c.
//
// What a knows of the room afterwards depends on whether it still has anyone in it. Alone, the
// fenced copy was a's last participant in the room: the room closes on a when the copy goes
// (once its producer moved, within tens of milliseconds of the fence, or at the linger's end),
// and a follows the room no more (RoomState keeps only the rooms open on its node). With a
// viewer of its own, a keeps the room and must list the publisher as b's. (This test once
// asked the alone case for the publisher on b: it passed only when its poll fell between the
// fence and the room's close, and failed about 1 run in 3 under load.)
func TestStaleSessionFencedAfterPartition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		viewer bool // a has a participant of its own in the room, besides the stale copy
	}{{"alone", false}, {"with a viewer on a", true}} {
		t.Run(tc.name, func(t *testing.T) { staleSessionFencedAfterPartition(t, tc.viewer) })
	}
}

func staleSessionFencedAfterPartition(t *testing.T, viewerOnA bool) {
	rc := newResumeCluster(t, 5*time.Second)
	ha := &heard{}
	pub, _, info := rc.publish(t, "a", ha)
	pid := info.ID
	hva := &heard{}
	if viewerOnA {
		if _, err := rc.n["a"].Join("r", "viewer-a", node.Grant{Subscribe: true}, false, hva); err != nil {
			t.Fatal(err)
		}
	}
	hc, sc := rc.watch(t, "c", pid)
	mark := hc.mark()
	markA := hva.mark()
	res := resumeOf(pub)

	rc.bus["a"].SetConnected(false)
	rc.republish(t, "b", res, info)
	checkFor(t, 10*time.Second, func() error {
		if got := rc.c["c"].Rooms().Producers("r")[pid]; got != "b" {
			return fmt.Errorf("c has the producer from %q", got)
		}
		return nil
	})
	if ha.count(node.EventClosed) != 0 {
		t.Fatal("the stale copy was closed while a was cut off")
	}

	rc.bus["a"].SetConnected(true) // the partition heals
	// What cascade node wires to the NATS connection's reconnect (main.go: OnTrouble): a
	// partition shorter than the heartbeat timeout is noticed by nothing else here, and the
	// messages it lost would stay lost.
	rc.c["a"].Resync("reconnected")
	checkFor(t, 15*time.Second, func() error {
		if ha.count(node.EventClosed, node.ReasonResumed) != 1 {
			got, _ := ha.since(0)
			return fmt.Errorf("a's stale copy not fenced: %v", got)
		}
		if !viewerOnA { // the room goes on a with the fenced copy, and a's view of it
			if rc.n["a"].Room("r") != nil {
				return fmt.Errorf("the room is still open on a")
			}
			if got := rc.c["a"].Rooms().Participants("r"); len(got) != 0 {
				return fmt.Errorf("a still follows the room it closed: %v", got)
			}
			return nil
		}
		if got := rc.c["a"].Rooms().Participants("r")[pub.ID()]; got != "b" {
			return fmt.Errorf("a has the publisher on %q", got)
		}
		return nil
	})
	if viewerOnA && rc.n["a"].Room("r") == nil {
		t.Fatal("the room closed on a, which has a viewer in it")
	}
	receives(t, sc, "after the partition healed")
	if got := rc.c["c"].Rooms().Producers("r")[pid]; got != "b" {
		t.Fatalf("after the partition healed, c has the producer from %q", got)
	}
	notes, _ := hc.since(mark)
	notesA, _ := hva.since(markA)
	for _, bad := range []struct{ method, id string }{{node.EventProducerRemoved, pid}, {node.EventProducerAdded, pid},
		{node.EventParticipantLeft, pub.ID()}, {node.EventParticipantJoined, pub.ID()}} {
		if anyOf(notes, bad.method, bad.id) {
			t.Errorf("c's viewer was told %s: %v", bad.method, notes)
		}
		if anyOf(notesA, bad.method, bad.id) {
			t.Errorf("a's viewer was told %s: %v", bad.method, notesA)
		}
	}
	if viewerOnA { // after the re-sync, nothing takes it back
		if got := rc.c["a"].Rooms().Participants("r")[pub.ID()]; got != "b" {
			t.Errorf("at the end, a has the publisher on %q", got)
		}
	}
}
