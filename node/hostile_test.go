package node_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

type nopListener struct{}

func (nopListener) Notify(string, any) {}

// testAPI is a pion API for test clients with the default codecs and pion's default
// interceptors (a subscriber NACKs what it misses and sends receiver reports, as a browser does),
// no mDNS, candidates on the networks given only, and whatever else set sets.
func testAPI(t *testing.T, networks []webrtc.NetworkType, set func(*webrtc.SettingEngine)) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes(networks)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	set(&se)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

// loopbackOnly keeps a test client's candidates on loopback.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
}

// udpMux is an ICE UDP mux over conn, closed at the end of the test: a client's one socket.
func udpMux(t *testing.T, conn *net.UDPConn) ice.UDPMux {
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn})
	t.Cleanup(func() { _ = mux.Close() })
	return mux
}

// clientAPI is a pion API for test clients on loopback over UDP/IPv4, with SRTP replay
// protection off, so that a retransmission of a packet that already arrived still reaches the
// track and is counted.
func clientAPI(t *testing.T) *webrtc.API {
	t.Helper()
	return testAPI(t, []webrtc.NetworkType{webrtc.NetworkTypeUDP4}, func(se *webrtc.SettingEngine) {
		loopbackOnly(se)
		se.DisableSRTPReplayProtection(true)
	})
}

// recvonlyVideo is a PeerConnection of clientAPI with one recvonly video transceiver: a
// subscriber's receive transport, ready to offer.
func recvonlyVideo(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return pc
}

// joinSubscriber joins identity to room as a subscriber whose receive transport is pc: pc offers
// (recvonly transceivers already added) once the publisher's track is live, and takes the answer.
func joinSubscriber(t *testing.T, n *node.Node, room, identity string, pc *webrtc.PeerConnection) *node.Participant {
	t.Helper()
	p, err := n.Join(room, identity, node.Grant{Subscribe: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer := subscribeWhenLive(t, p, vp8pub.Offer(t, pc))
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return p
}

// subscribeWhenLive sends p's subscribe offer until the publisher's track is live (the node
// stops answering ErrNotFound), and returns the answer.
func subscribeWhenLive(t *testing.T, p *node.Participant, offer string) string {
	t.Helper()
	var answer string
	var err error
	checkFor(t, 10*time.Second, func() error {
		answer, err = p.SubscribeOffer(offer)
		if errors.Is(err, node.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return answer
}

// sendonlyVP8 is a PeerConnection of api, closed with the test, that sends one VP8 track.
func sendonlyVP8(t *testing.T, api *webrtc.API) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, *webrtc.RTPTransceiver) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	return pc, track, tr
}

// publishVP8 joins "pub" to room and publishes a VP8 track from a send-only PeerConnection of
// api; the caller writes the track's packets and reads the sender's RTCP.
func publishVP8(t *testing.T, n *node.Node, api *webrtc.API, room string) (*node.Participant, *webrtc.TrackLocalStaticRTP, *webrtc.RTPTransceiver) {
	t.Helper()
	pc, track, tr := sendonlyVP8(t, api)
	p, err := n.Join(room, "pub", node.Grant{Publish: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(vp8pub.Offer(t, pc), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return p, track, tr
}

// testPublisher publishes a synthetic VP8 track (1000-byte packets, 100 per second) like WHIP.
type testPublisher struct {
	p    *node.Participant
	sent atomic.Int64
	plis atomic.Int64
}

func publish(t *testing.T, n *node.Node, api *webrtc.API, room string) *testPublisher {
	t.Helper()
	p, track, tr := publishVP8(t, n, api, room)
	pub := &testPublisher{p: p}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // the publisher's feedback: count keyframe requests
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					pub.plis.Add(1)
				}
			}
		}
	}()
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 1000)
		payload[0] = 0x10 // VP8 descriptor: start of partition
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 900, Marker: true}, Payload: payload}); err == nil {
				pub.sent.Add(1)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return pub
}

// testSubscriber receives the room's video like WHEP and counts what arrives: packets, RTP
// bytes, and packets whose sequence number arrived before (retransmissions). A hostile one
// NACKs every packet it gets, together with the 16 before it.
type testSubscriber struct {
	packets, bytes, dups atomic.Int64
	pc                   *webrtc.PeerConnection // the receive transport
}

func subscribe(t *testing.T, n *node.Node, api *webrtc.API, room, identity string, hostile bool) *testSubscriber {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	s := &testSubscriber{pc: pc}
	var wg sync.WaitGroup
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		defer wg.Done()
		var seen [1 << 16]bool
		buf := make([]byte, 1500)
		var h rtp.Header
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if _, err := h.Unmarshal(buf[:n]); err != nil {
				continue
			}
			s.packets.Add(1)
			s.bytes.Add(int64(n))
			if seen[h.SequenceNumber] {
				s.dups.Add(1)
				continue
			}
			seen[h.SequenceNumber] = true
			if hostile {
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: uint32(tr.SSRC()),
					Nacks: []rtcp.NackPair{{PacketID: h.SequenceNumber - 16, LostPackets: 0xffff}}}})
			}
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	joinSubscriber(t, n, room, identity, pc)
	return s
}

// metricSum adds up the samples of a metric family whose labels include want.
func metricSum(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestHostileSubscriberBounded: a subscriber that NACKs every packet it gets, and the 16 before
// it, cannot make the node an amplifier: the bytes it receives stay under 1.5x the media an
// honest subscriber of the same producer receives in the same time (its first NACKs are
// answered, then its losses of 100 % say "congested" and the rest are refused, after a keyframe
// request), and the honest subscriber receives every packet, once.
func TestHostileSubscriberBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	api := clientAPI(t)
	pub := publish(t, n, api, "r")
	honest := subscribe(t, n, api, "r", "honest", false)
	hostile := subscribe(t, n, api, "r", "hostile", true)
	checkFor(t, 10*time.Second, func() error {
		if h, x := honest.packets.Load(), hostile.packets.Load(); h < 100 || x < 100 {
			return fmt.Errorf("honest got %d packets, hostile %d", h, x)
		}
		return nil
	})
	sent0, hb0, hp0, xb0 := pub.sent.Load(), honest.bytes.Load(), honest.packets.Load(), hostile.bytes.Load()
	checkFor(t, 20*time.Second, func() error { // 4 s of media
		if d := pub.sent.Load() - sent0; d < 400 {
			return fmt.Errorf("published %d packets", d)
		}
		return nil
	})
	sent, hb, hp, xb := pub.sent.Load()-sent0, honest.bytes.Load()-hb0, honest.packets.Load()-hp0, hostile.bytes.Load()-xb0
	ratio := float64(xb) / float64(hb)
	resent := metricSum(t, reg, "cascade_rtx_packets_total", nil)
	refused := metricSum(t, reg, "cascade_rtx_refused_total", nil)
	kf := metricSum(t, reg, "cascade_rtx_keyframe_requests_total", nil)
	t.Logf("%d packets published; honest received %d (%d bytes); hostile received %d bytes = %.2fx; node resent %v, refused %v "+
		"(budget %v, congested %v, duplicate %v, too_old %v, range %v), %v keyframe requests instead, publisher got %d PLIs",
		sent, hp, hb, xb, ratio, resent, refused, metricSum(t, reg, "cascade_rtx_refused_total", map[string]string{"reason": "budget"}),
		metricSum(t, reg, "cascade_rtx_refused_total", map[string]string{"reason": "congested"}),
		metricSum(t, reg, "cascade_rtx_refused_total", map[string]string{"reason": "duplicate"}),
		metricSum(t, reg, "cascade_rtx_refused_total", map[string]string{"reason": "too_old"}),
		metricSum(t, reg, "cascade_rtx_refused_total", map[string]string{"reason": "range"}), kf, pub.plis.Load())
	if ratio > 1.5 {
		t.Errorf("the hostile subscriber received %.2fx the media bytes, want at most 1.5x", ratio)
	}
	if float64(hp) < 0.95*float64(sent) || honest.dups.Load() != 0 {
		t.Errorf("honest subscriber: %d of %d packets, %d duplicates", hp, sent, honest.dups.Load())
	}
	if resent == 0 || refused == 0 || kf == 0 {
		t.Errorf("resent %v, refused %v, keyframe requests %v: want some of each (the first NACKs answered, then refused)", resent, refused, kf)
	}
}
