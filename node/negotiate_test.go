package node

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

type quietListener struct{}

func (quietListener) Notify(string, any) {}

func negotiationNode(t *testing.T) *Node {
	t.Helper()
	n, err := New(Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// holdGathering makes p's ICE gatherings last until release is closed; entered is closed when
// a negotiation starts waiting for one.
func holdGathering(p *Participant) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	p.gatherDone = func(*webrtc.PeerConnection) <-chan struct{} {
		close(entered)
		return release
	}
	return entered, release
}

// clientOffer is a browser's offer with one video section in direction dir.
func clientOffer(t *testing.T, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// promptly fails the test unless f returns within two seconds (then it lets the gathering end,
// so the test's cleanup does not hang on the old behaviour).
func promptly(t *testing.T, what string, release chan struct{}, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		close(release)
		t.Fatalf("%s waited for an ICE gathering", what)
	}
}

// TestPublishGatheringHoldsNoLock: while a WHIP publish waits for its ICE gathering, trickle,
// the room listing, the node's stats and leaving go on; the publish then ends with ErrClosed.
func TestPublishGatheringHoldsNoLock(t *testing.T) {
	n := negotiationNode(t)
	p, err := n.Join("room", "pub", Grant{Publish: true, Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := holdGathering(p)
	offer := clientOffer(t, webrtc.RTPTransceiverDirectionSendonly)
	res := make(chan error, 1)
	go func() {
		_, _, err := p.Publish(offer, true)
		res <- err
	}()
	<-entered
	promptly(t, "trickle", release, func() { _ = p.AddCandidate(TransportSend, webrtc.ICECandidateInit{}) })
	promptly(t, "the room listing", release, func() { _ = p.Room().Participants() })
	promptly(t, "stats", release, func() { _ = n.Stats() })
	promptly(t, "leaving", release, p.Close)
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("publish of a participant that left: %v, want ErrClosed", err)
	}
}

// TestSubscribeOfferGatheringHoldsNoLock: the same for a WHEP subscription.
func TestSubscribeOfferGatheringHoldsNoLock(t *testing.T) {
	n := negotiationNode(t)
	p, err := n.Join("room", "viewer", Grant{Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Room().AddRemoteProducer(ProducerInfo{ID: "PRfar", Mid: "0", Participant: "far", Kind: "video",
		Codec: webrtc.MimeTypeVP8, ClockRate: 90000}, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	entered, release := holdGathering(p)
	offer := clientOffer(t, webrtc.RTPTransceiverDirectionRecvonly)
	res := make(chan error, 1)
	go func() {
		_, err := p.SubscribeOffer(offer)
		res <- err
	}()
	<-entered
	promptly(t, "the room listing", release, func() { _ = p.Room().Participants() })
	promptly(t, "stats", release, func() { _ = n.Stats() })
	promptly(t, "leaving", release, p.Close)
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("subscription of a participant that left: %v, want ErrClosed", err)
	}
	if pr := p.Room().producer("PRfar"); pr != nil && len(pr.consumers()) != 0 {
		t.Fatalf("the closed participant's consumers stayed: %d", len(pr.consumers()))
	}
}

// TestSubscribeOfferAfterGathering: once the gathering ends the answer comes and the consumer is
// recorded; a second offer is refused.
func TestSubscribeOfferAfterGathering(t *testing.T) {
	n := negotiationNode(t)
	p, err := n.Join("room", "viewer", Grant{Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.Room().AddRemoteProducer(ProducerInfo{ID: "PRfar", Mid: "0", Participant: "far", Kind: "video",
		Codec: webrtc.MimeTypeVP8, ClockRate: 90000}, "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := holdGathering(p)
	first := clientOffer(t, webrtc.RTPTransceiverDirectionRecvonly)
	res := make(chan error, 1)
	go func() {
		_, err := p.SubscribeOffer(first)
		res <- err
	}()
	<-entered
	second := make(chan error, 1)
	offer := clientOffer(t, webrtc.RTPTransceiverDirectionRecvonly)
	go func() { // waits for the first negotiation (neg), then finds the transport taken
		_, err := p.SubscribeOffer(offer)
		second <- err
	}()
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := <-second; !errors.Is(err, ErrBadState) {
		t.Fatalf("second offer: %v, want ErrBadState", err)
	}
	if len(pr.consumers()) != 1 {
		t.Fatalf("%d consumers, want 1", len(pr.consumers()))
	}
}
