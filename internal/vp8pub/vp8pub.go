// Package vp8pub is a publisher for tests: a PeerConnection on loopback UDP/IPv4 that sends one
// VP8 track, a keyframe every 20 ms, each packet marked with its sender's mark and its own
// sequence number, so that a receiver can tell which sender a frame came from.
package vp8pub

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Sender is the publisher's PeerConnection and the goroutine that writes its track.
type Sender struct {
	pc   *webrtc.PeerConnection
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// API is a pion API with the default codecs whose PeerConnections use loopback UDP/IPv4 only.
func API(t testing.TB) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return LoopbackAPI(me)
}

// SimulcastEngine is a media engine with the default codecs and the mid and rid header
// extensions that simulcast streams are told apart by.
func SimulcastEngine(t testing.TB) *webrtc.MediaEngine {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	return me
}

// LoopbackAPI is a pion API with the codecs of me whose PeerConnections use loopback UDP/IPv4
// only (for a test publisher that needs more than the default codecs, e.g. a header extension).
func LoopbackAPI(me *webrtc.MediaEngine) *webrtc.API {
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// Start offers a send-only VP8 track, every candidate gathered, to publish, which returns the
// answer, and sends until Close or the end of the test. Each packet's payload is 0x10 (S=1,
// partition 0) and 0 (a payload header with P=0): every packet starts a keyframe; then the
// frame's mark: mark, 0 and the packet's sequence number (big-endian).
func Start(t testing.TB, mark byte, publish func(offer string) (answer string, err error)) *Sender {
	t.Helper()
	pc, err := API(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Sender{pc: pc, stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	Negotiate(t, pc, publish)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true},
				Payload: []byte{0x10, 0, mark, 0, byte(seq >> 8), byte(seq)}})
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Negotiate offers pc's transceivers, every candidate gathered, to publish, which returns the
// answer, and applies the answer: a publisher's whole exchange with a node, without trickle.
func Negotiate(t testing.TB, pc *webrtc.PeerConnection, publish func(offer string) (answer string, err error)) {
	t.Helper()
	answer, err := publish(Offer(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

// Offer sets and returns pc's offer with every candidate gathered, as a client without trickle
// (WHIP, WHEP, a publish request) sends it.
func Offer(t testing.TB, pc *webrtc.PeerConnection) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// Close stops the sending and closes the PeerConnection; it may be called more than once.
func (s *Sender) Close() {
	s.once.Do(func() { close(s.stop); <-s.done; _ = s.pc.Close() })
}
