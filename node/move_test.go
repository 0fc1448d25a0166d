package node_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// received is what a subscriber's track delivered, in order.
type received struct {
	mu     sync.Mutex
	tracks int
	seqs   []uint16
	tss    []uint32
	pics   []int // VP8 15-bit PictureID, -1 without one
}

// atLeast waits until r has had want packets; when says when, for the failure.
func (r *received) atLeast(t *testing.T, want int, when string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		if c := r.count(); c < want {
			return fmt.Errorf("%d packets %s, want %d", c, when, want)
		}
		return nil
	})
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

// check fails unless the stream is one track whose sequence numbers go up by one (a few lost
// on a loaded machine, never a jump), whose timestamps never go back nor jump by more than a
// second, and (pics) whose PictureIDs go up by at most one per packet (the same tolerance).
func (r *received) check(t *testing.T, pics bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracks != 1 {
		t.Fatalf("%d tracks, want the same one throughout", r.tracks)
	}
	for i := 1; i < len(r.seqs); i++ {
		if d := r.seqs[i] - r.seqs[i-1]; d < 1 || d > 4 { // a lost packet or three, never a jump
			t.Fatalf("packet %d: seq %d after %d", i, r.seqs[i], r.seqs[i-1])
		}
		if d := int32(r.tss[i] - r.tss[i-1]); d < 0 || d > 90000 {
			t.Fatalf("packet %d: timestamp %d after %d", i, r.tss[i], r.tss[i-1])
		}
		if d := (r.pics[i] - r.pics[i-1] + 1<<15) % (1 << 15); pics && (r.pics[i] < 0 || d > 4) {
			t.Fatalf("packet %d: PictureID %d after %d", i, r.pics[i], r.pics[i-1])
		}
	}
}

// subscribeVideo joins identity to room as a subscriber (WHEP-like, listener l) of the room's
// video and records what its track delivers.
func subscribeVideo(t *testing.T, n *node.Node, room, identity string, l node.Listener) *received {
	t.Helper()
	pc := recvonlyVideo(t)
	rec := &received{}
	var wg sync.WaitGroup
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		defer wg.Done()
		rec.mu.Lock()
		rec.tracks++
		rec.mu.Unlock()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			pic := -1
			if len(p.Payload) > 3 && p.Payload[2]&0x80 != 0 {
				pic = int(p.Payload[2]&0x7f)<<8 | int(p.Payload[3])
			}
			rec.mu.Lock()
			rec.seqs, rec.tss, rec.pics = append(rec.seqs, p.SequenceNumber), append(rec.tss, p.Timestamp), append(rec.pics, pic)
			rec.mu.Unlock()
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	p, err := n.Join(room, identity, node.Grant{Subscribe: true}, false, l)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := p.SubscribeOffer(vp8pub.Offer(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return rec
}

// vp8Packet is one packet of a one-packet VP8 frame with a 15-bit PictureID.
func vp8Packet(seq uint16, ts uint32, pic uint16, key bool) []byte {
	hdr := byte(0x01)
	if key {
		hdr = 0
	}
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Marker: true},
		Payload: []byte{0x90, 0x80, 0x80 | byte(pic>>8&0x7f), byte(pic), hdr, 1, 2, 3}}).Marshal()
	return raw
}

// relayFeed injects a VP8 source into a producer as a relay would, one frame per 10 ms, a
// keyframe every 30 frames from frame key0, until stopped.
type relayFeed struct {
	stop, done chan struct{}
	frames     atomic.Int64
}

func feed(p *node.Producer, gen uint32, seq0 uint16, ts0 uint32, pic0 uint16, key0 int) *relayFeed {
	f := &relayFeed{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			p.InjectFrom(gen, vp8Packet(seq0+uint16(i), ts0+uint32(i)*900, (pic0+uint16(i))&0x7fff, i >= key0 && (i-key0)%30 == 0))
			f.frames.Add(1)
		}
	}()
	return f
}

func (f *relayFeed) end() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

type keyframes struct{ n atomic.Int64 }

func (k *keyframes) RequestKeyframe() { k.n.Add(1) }

// TestMoveRemoteProducer: a remote producer's origin moves while a real subscriber receives
// it: the subscriber keeps its track, with continuous sequence numbers, timestamps and
// PictureIDs across the switch; the local participants are told producerMoved once and
// neither producerRemoved nor producerAdded; the cluster layer gets ProducerMoved from the
// old origin; the new source is asked for a keyframe.
func TestMoveRemoteProducer(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	watcher, lw := join(t, n, "r", "w", node.Grant{Subscribe: true})
	r := watcher.Room()
	info := node.ProducerInfo{ID: "PRmoving", Participant: "PAremote", Kind: "video", Codec: webrtc.MimeTypeVP8, ClockRate: 90000}
	pr, err := r.AddRemoteProducer(info, "n2")
	if err != nil {
		t.Fatal(err)
	}
	pr.SetUpstream(&keyframes{})
	ls := &recorder{}
	old := feed(pr, pr.Generation(), 1000, 5000, 100, 0)
	t.Cleanup(old.end)
	rec := subscribeVideo(t, n, "r", "s", ls)
	rec.atLeast(t, 50, "before the move")

	added := []int{ls.count(node.EventProducerAdded), lw.count(node.EventProducerAdded)}
	info.Epoch = 1
	moved, gen, err := r.MoveProducer(info, "n3")
	if err != nil || moved != pr || gen != 1 || pr.Origin() != "n3" {
		t.Fatalf("move: %v, same producer %v, generation %d, origin %q", err, moved == pr, gen, pr.Origin())
	}
	up := &keyframes{}
	pr.SetUpstream(up) // the cluster layer's new relay
	// The new source's first keyframe comes 15 frames in; the old one goes on meanwhile.
	nw := feed(pr, gen, 60000, 4000000000, 30000, 15)
	t.Cleanup(nw.end)
	checkFor(t, 10*time.Second, func() error {
		if f := nw.frames.Load(); f < 25 {
			return fmt.Errorf("%d frames of the new source", f)
		}
		return nil
	})
	old.end()
	before := rec.count()
	rec.atLeast(t, before+50, "after the old source ended")
	nw.end()
	rec.check(t, true)
	if up.n.Load() == 0 {
		t.Error("the new source was not asked for a keyframe")
	}
	for i, l := range []*recorder{ls, lw} {
		if l.count(node.EventProducerMoved) != 1 || !l.has(node.EventProducerMoved, `{"id":"PRmoving","participant":"PAremote"}`) ||
			l.count(node.EventProducerRemoved) != 0 || l.count(node.EventProducerAdded) != added[i] {
			t.Fatalf("notifications:\n%s", l)
		}
	}
	e, _ := ev.find("ProducerMoved").(node.ProducerMoved)
	if ev.count("ProducerMoved") != 1 || e.From != "n2" || e.Producer != pr || ev.count("ProducerRemoved") != 0 {
		t.Fatalf("events: %d ProducerMoved (from %q), %d ProducerRemoved", ev.count("ProducerMoved"), e.From, ev.count("ProducerRemoved"))
	}
	// A stale announcement (an older epoch) does not move it back; the same origin changes nothing.
	info.Epoch = 0
	if _, _, err := r.MoveProducer(info, "n2"); !errors.Is(err, node.ErrResume) || pr.Origin() != "n3" {
		t.Fatalf("stale move: %v, origin %q", err, pr.Origin())
	}
	info.Epoch = 1
	if _, g, err := r.MoveProducer(info, "n3"); err != nil || g != gen {
		t.Fatalf("move to the same origin: %v, generation %d", err, g)
	}
}

// TestMoveUnknownProducer: a move of a producer the room does not know adds it.
func TestMoveUnknownProducer(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	w, lw := join(t, n, "r", "w", node.Grant{Subscribe: true})
	pr, gen, err := w.Room().MoveProducer(node.ProducerInfo{ID: "PRx", Participant: "PAx", Kind: "audio", Codec: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "n2")
	if err != nil || pr == nil || gen != 0 || pr.Origin() != "n2" {
		t.Fatalf("%v %v %d", err, pr, gen)
	}
	if lw.count(node.EventProducerAdded) != 1 || lw.count(node.EventProducerMoved) != 0 || ev.count("ProducerMoved") != 0 {
		t.Fatalf("notifications:\n%s", lw)
	}
}

// TestMoveLocalProducerAway: a local publisher's producer moves to another node (its session
// resumed there): the producer stays with its consumers and becomes remote; the end of the
// old session (its track, then its Close) does not remove it.
func TestMoveLocalProducerAway(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	pubL := &recorder{}
	pub, id := publishLive(t, n, "r", "pub", pubL)
	r := pub.Room()
	ls := &recorder{}
	rec := subscribeVideo(t, n, "r", "s", ls)
	rec.atLeast(t, 10, "before the move")
	info := n.Producer("r", id).Info()
	info.Epoch = 1
	pr, gen, err := r.MoveProducer(info, "n2")
	if err != nil || gen != 1 || pr.Origin() != "n2" {
		t.Fatalf("move: %v, generation %d, origin %q", err, gen, pr.Origin())
	}
	up := &keyframes{}
	pr.SetUpstream(up)
	pub.Close() // the superseded session ends: its track, then the participant
	if n.Producer("r", id) != pr {
		t.Fatal("the producer ended with its old publisher's session")
	}
	if ls.count(node.EventProducerMoved) != 1 || ls.count(node.EventProducerRemoved) != 0 {
		t.Fatalf("subscriber notifications:\n%s", ls)
	}
	e, _ := ev.find("ProducerMoved").(node.ProducerMoved)
	if e.From != "" || ev.count("ProducerRemoved") != 0 {
		t.Fatalf("ProducerMoved from %q, %d ProducerRemoved", e.From, ev.count("ProducerRemoved"))
	}
	// The new origin's media reaches the same subscriber track.
	before := rec.count()
	f := feed(pr, gen, 9, 1, 1, 5)
	t.Cleanup(f.end)
	rec.atLeast(t, before+30, "from the new origin")
	f.end()
	rec.mu.Lock()
	tracks := rec.tracks
	rec.mu.Unlock()
	if tracks != 1 {
		t.Fatalf("%d tracks", tracks)
	}
	if up.n.Load() == 0 {
		t.Error("no keyframe request reached the new origin")
	}
}

// TestPublishAsUnknownID: a resumed publish naming a producer id the session did not have is
// refused with ErrResume, and publishes nothing.
func TestPublishAsUnknownID(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	p, _ := join(t, n, "r", "p", node.Grant{Publish: true})
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.PublishAs(o.SDP, false, map[string]string{"0": "PRnotmine"}); !errors.Is(err, node.ErrResume) {
		t.Fatalf("PublishAs with an unknown id: %v, want ErrResume", err)
	}
	if len(p.Room().Producers()) != 0 {
		t.Fatal("something was published")
	}
}

// TestAdoptOnSameNode: a publisher resumes its session on the same node (JoinResumed) and
// publishes again under its producer's id (PublishAs): the new track takes over the producer,
// consumers and all. The subscriber keeps its track, with continuous sequence numbers and
// timestamps; it hears producerMoved, not producerRemoved/producerAdded; the cluster layer
// gets ProducerMoved (from this node) and ProducerAdded with the new epoch (the announcement
// of the move); the old session closes and the producer lives on.
func TestAdoptOnSameNode(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	old, id := publishLive(t, n, "r", "pub", &recorder{})
	ls := &recorder{}
	rec := subscribeVideo(t, n, "r", "s", ls)
	rec.atLeast(t, 20, "before the resume")
	pr := n.Producer("r", id)
	info := pr.Info()
	res := node.Resume{ID: old.ID(), Epoch: old.Epoch(), JoinedAt: old.Info().JoinedAt, Node: n.ID(), Producers: []node.ProducerInfo{info}}
	p, err := n.JoinResumed("r", "pub", node.Grant{Publish: true, Subscribe: true}, false, &recorder{}, res)
	if err != nil {
		t.Fatal(err)
	}
	added := ev.count("ProducerAdded")

	pc, track, _ := sendonlyVP8(t, clientAPI(t))
	answer, infos, err := p.PublishAs(vp8pub.Offer(t, pc), true, map[string]string{info.Mid: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != id {
		t.Fatalf("published %+v, want producer %s", infos, id)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // a keyframe every 30 frames, from the tenth
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			raw := vp8Packet(30000+uint16(i), 123456789+uint32(i)*900, uint16(i), i >= 10 && (i-10)%30 == 0)
			var pkt rtp.Packet
			_ = pkt.Unmarshal(raw)
			_ = track.WriteRTP(&pkt)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	})
	checkFor(t, 10*time.Second, func() error {
		if ev.count("ProducerMoved") != 1 {
			return errors.New("no ProducerMoved yet")
		}
		select {
		case <-old.Done():
		default:
			return errors.New("the old session has not closed")
		}
		return nil
	})
	before := rec.count()
	rec.atLeast(t, before+50, "from the resumed session")
	close(stop)
	<-done
	rec.check(t, false)
	if got := n.Producer("r", id); got != pr || got.Origin() != "" || got.Info().Epoch != 1 {
		t.Fatalf("the producer after the resume: same %v, %+v", got == pr, got.Info())
	}
	if ls.count(node.EventProducerMoved) != 1 || ls.count(node.EventProducerRemoved) != 0 || ls.count(node.EventProducerAdded) != 0 {
		t.Fatalf("subscriber notifications:\n%s", ls)
	}
	e, _ := ev.find("ProducerMoved").(node.ProducerMoved)
	if e.From != "" || e.Producer != pr || ev.count("ProducerRemoved") != 0 || ev.count("ProducerAdded") != added+1 {
		t.Fatalf("events: ProducerMoved from %q, %d ProducerRemoved, %d ProducerAdded after the resume",
			e.From, ev.count("ProducerRemoved"), ev.count("ProducerAdded")-added)
	}
}
