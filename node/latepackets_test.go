package node

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// offerClient is a subscriber's receive transport as the Go client (signal/client, Lean) makes
// it: default codecs, the simulcast header extensions, transport-wide feedback. It answers the
// participant's offers as they come.
type offerClient struct {
	t  *testing.T
	pc *webrtc.PeerConnection
	p  *Participant

	mu      sync.Mutex
	pending []webrtc.ICECandidateInit // the node's candidates before the first offer
	offers  chan string
}

// Notify implements Listener: offers are answered in order on the client's goroutine.
func (c *offerClient) Notify(method string, data any) {
	switch method {
	case EventOffer:
		c.offers <- data.(map[string]string)["sdp"]
	case EventTrickle:
		cand := data.(map[string]any)["candidate"].(webrtc.ICECandidateInit)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.pc.RemoteDescription() == nil {
			c.pending = append(c.pending, cand)
			return
		}
		_ = c.pc.AddICECandidate(cand)
	}
}

func newOfferClient(t *testing.T) *offerClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureTWCCSender(me, reg); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return &offerClient{t: t, pc: pc, offers: make(chan string, 16)}
}

// answer applies the next offer and answers it; it returns once the participant has the answer.
func (c *offerClient) answer() error {
	var sdp string
	select {
	case sdp = <-c.offers:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no offer")
	}
	c.mu.Lock()
	err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
	held := c.pending
	c.pending = nil
	c.mu.Unlock()
	if err != nil {
		return err
	}
	for _, cand := range held {
		_ = c.pc.AddICECandidate(cand)
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(ans); err != nil {
		return err
	}
	<-gathered
	return c.p.Answer(c.pc.LocalDescription().SDP)
}

// answerAll answers offers until none comes for quiet.
func (c *offerClient) answerAll(quiet time.Duration) error {
	for {
		select {
		case sdp := <-c.offers:
			c.offers <- sdp // put back for answer (the channel is only read here)
			if err := c.answer(); err != nil {
				return err
			}
		case <-time.After(quiet):
			return nil
		}
	}
}

// TestLatePacketsOfARemovedConsumer: packets of a consumer the subscriber no longer has (sent
// before the consumer was removed, arriving after the subscriber applied the offer without
// it) must not become a track: once they did, the receiving pion found the removed consumer's
// media section by payload type and added a transceiver of its own outside the negotiation
// (an extra track of no id, and a receive transport whose next negotiations went astray).
// The node offers the mid header extension, so such a packet is seen as one of no media
// section and dropped. The remaining consumer's packets go on arriving.
func TestLatePacketsOfARemovedConsumer(t *testing.T) {
	n := negotiationNode(t)
	c := newOfferClient(t)
	p, err := n.Join("room", "viewer", Grant{Subscribe: true}, false, c)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	type arrival struct {
		id   string
		ssrc uint32
	}
	tracks := make(chan arrival, 16)
	received := make(map[uint32]int)
	var rmu sync.Mutex
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		tracks <- arrival{tr.ID(), uint32(tr.SSRC())}
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			rmu.Lock()
			received[uint32(tr.SSRC())]++
			rmu.Unlock()
		}
	})
	// The removed one first: its media section is then the first of its payload type, the
	// one the guess would take.
	for _, id := range []string{"PRgone", "PRstays"} {
		if _, err := p.Room().AddRemoteProducer(ProducerInfo{ID: id, Mid: "0", Participant: "far-" + id, Kind: "video",
			Codec: webrtc.MimeTypeVP8, ClockRate: 90000}, "elsewhere"); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"PRgone", "PRstays"} {
		if err := p.Subscribe(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.answerAll(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	gone, stays := p.consumers["PRgone"], p.consumers["PRstays"]
	p.mu.Unlock()
	waitFor(t, 10*time.Second, func() error {
		if gone.bind.Load() == nil || stays.bind.Load() == nil {
			return fmt.Errorf("consumers not bound")
		}
		if c.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			return fmt.Errorf("subscriber %s", c.pc.ConnectionState())
		}
		return nil
	})
	gb, sb := gone.bind.Load(), stays.bind.Load()
	// What the worker would write: a VP8 keyframe packet on a binding, under ssrc.
	seq := map[uint32]uint16{}
	write := func(b *binding, ssrc uint32) {
		seq[ssrc]++
		h := rtp.Header{Version: 2, SSRC: ssrc, PayloadType: b.pt, SequenceNumber: seq[ssrc], Timestamp: uint32(seq[ssrc]) * 3000, Marker: true}
		payload := make([]byte, 200)
		payload[0] = 0x10
		_, _ = b.writer.WriteRTP(&h, payload)
	}
	want := map[string]bool{"PRgone": true, "PRstays": true}
	got := map[string]bool{}
	for len(got) < 2 {
		write(gb, gb.ssrc)
		write(sb, sb.ssrc)
		select {
		case a := <-tracks:
			if !want[a.id] {
				t.Fatalf("a track of no consumer before the removal: %+v", a)
			}
			got[a.id] = true
		case <-time.After(20 * time.Millisecond):
		}
	}

	if err := p.Unsubscribe("PRgone"); err != nil {
		t.Fatal(err)
	}
	if err := c.answerAll(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Late packets of the removed consumer (on the remaining sender's stream, which the SRTP
	// session of the transport encrypts by their SSRC), with the remaining consumer's.
	rmu.Lock()
	before := received[sb.ssrc]
	rmu.Unlock()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		write(sb, gb.ssrc)
		write(sb, sb.ssrc)
		select {
		case a := <-tracks:
			t.Errorf("a track after the removal: id %q ssrc %d (the removed consumer's ssrc %d)", a.id, a.ssrc, gb.ssrc)
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Mid() == "" {
			t.Errorf("a %s transceiver outside the negotiation (%s)", tr.Kind(), tr.Direction())
		}
	}
	rmu.Lock()
	after := received[sb.ssrc]
	rmu.Unlock()
	if after-before < 20 {
		t.Errorf("the remaining consumer's packets stopped: %d after the removal", after-before)
	}

	// The next negotiation (a new producer) works out too, and every consumer's media arrives.
	if _, err := p.Room().AddRemoteProducer(ProducerInfo{ID: "PRnew", Mid: "0", Participant: "far-new", Kind: "video",
		Codec: webrtc.MimeTypeVP8, ClockRate: 90000}, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := p.Subscribe("PRnew"); err != nil {
		t.Fatal(err)
	}
	if err := c.answerAll(500 * time.Millisecond); err != nil {
		t.Fatalf("negotiating a new consumer after the late packets: %v", err)
	}
	p.mu.Lock()
	fresh := p.consumers["PRnew"]
	p.mu.Unlock()
	waitFor(t, 5*time.Second, func() error {
		if fresh.bind.Load() == nil {
			return fmt.Errorf("the new consumer is not bound")
		}
		return nil
	})
	nb := fresh.bind.Load()
	rmu.Lock()
	before = received[sb.ssrc]
	rmu.Unlock()
	newTrack := false
	deadline = time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !newTrack {
		write(nb, nb.ssrc)
		write(sb, sb.ssrc)
		select {
		case a := <-tracks:
			if a.id != "PRnew" {
				t.Errorf("track %q (ssrc %d), want the new consumer's", a.id, a.ssrc)
			} else {
				newTrack = true
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !newTrack {
		t.Error("the new consumer's track never arrived")
	}
	// The new track may arrive before the remaining consumer's packets written meanwhile were
	// read: keep writing until one is, or fail.
	waitFor(t, 3*time.Second, func() error {
		write(sb, sb.ssrc)
		rmu.Lock()
		after := received[sb.ssrc]
		rmu.Unlock()
		if after == before {
			return fmt.Errorf("the remaining consumer's packets stopped after the new negotiation")
		}
		return nil
	})
}

// waitFor polls f until it returns nil, failing the test with f's error after timeout.
func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
