package node_test

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The simulcast publisher of these tests: one VP8 video section with three rids (q, h, f:
// 320x180, 640x360, 1280x720), one one-packet frame per layer every 20 ms, a keyframe per
// layer every 15 frames (the layers' keyframes staggered), each layer with its own sequence
// numbers, timestamps, PictureIDs and TL0PICIDX, and RTCP sender reports that map every
// layer's timestamps onto one capture clock. Each packet's VP8 payload carries its layer and
// its frame number at offset 10, so a subscriber can tell what it was sent.

var simRids = []string{"q", "h", "f"}

var simSizes = [][2]int{{320, 180}, {640, 360}, {1280, 720}}

// simSPS are H264 sequence parameter sets of those sizes (x264's, as in TestSPSSize).
var simSPS = []string{"674d400deca0a0cfcf8088000003000800000301e078a14cb0",
	"6764001eacd940a02ff970110000030001000003003c0f162d96", "6742c01fd9005005bb0110000003001000000303c0f18324800000"}

const (
	simFrame    = 20 * time.Millisecond
	simTicks    = 1800 // 20 ms at 90 kHz
	simKeyEvery = 15
)

// simAPI is a pion API without interceptors (the test writes its own sender reports) whose
// PeerConnections send the mid and rid header extensions, on loopback UDP/IPv4.
func simAPI(t *testing.T) *webrtc.API {
	t.Helper()
	return vp8pub.LoopbackAPI(vp8pub.SimulcastEngine(t))
}

type simPublisher struct {
	h264   bool // H264 instead of VP8: keyframes are a STAP-A of an SPS and an IDR slice
	pc     *webrtc.PeerConnection
	sender *webrtc.RTPSender
	tracks []*webrtc.TrackLocalStaticRTP
	stop   chan struct{}
	done   chan struct{}
}

// newSimPublisher makes the publisher's PeerConnection (closed with the test); its offer is
// vp8pub.Offer(t, s.pc).
func newSimPublisher(t *testing.T, h264 bool) *simPublisher {
	t.Helper()
	pc, err := simAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	s := &simPublisher{h264: h264, pc: pc, stop: make(chan struct{}), done: make(chan struct{})}
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if h264 {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	}
	for _, rid := range simRids {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, "v", "s", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		s.tracks = append(s.tracks, tr)
	}
	if s.sender, err = pc.AddTrack(s.tracks[0]); err != nil {
		t.Fatal(err)
	}
	for _, tr := range s.tracks[1:] {
		if err := s.sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// answered applies the node's answer and starts sending until the end of the test.
func (s *simPublisher) answered(t *testing.T, answer string) {
	t.Helper()
	mid, midID, ridID, enc := s.negotiated(t, answer)
	if midID == 0 || ridID == 0 || len(enc) != len(simRids) {
		t.Fatalf("negotiated mid %d rid %d, %d encodings", midID, ridID, len(enc))
	}
	go s.send(mid, midID, ridID, enc)
	t.Cleanup(func() { close(s.stop); <-s.done })
}

// negotiated applies the node's answer and returns what the packets need: the sender's mid,
// the ids of the mid and rid header extensions and the encodings (one a layer, with its SSRC).
func (s *simPublisher) negotiated(t *testing.T, answer string) (mid string, midID, ridID uint8, enc []webrtc.RTPEncodingParameters) {
	t.Helper()
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	params := s.sender.GetParameters()
	for _, e := range params.HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	for _, tr := range s.pc.GetTransceivers() {
		if tr.Sender() == s.sender {
			mid = tr.Mid()
		}
	}
	return mid, midID, ridID, params.Encodings
}

func (s *simPublisher) send(mid string, midID, ridID uint8, enc []webrtc.RTPEncodingParameters) {
	defer close(s.done)
	tick := time.NewTicker(simFrame)
	defer tick.Stop()
	t0 := time.Now()
	tsBase := []uint32{1000, 5_000_000, 4_000_000_000}
	seq := []uint16{100, 20000, 65500}
	picBase := []uint16{10, 3000, 32760}
	tl0Base := []uint8{0, 100, 250}
	for k := 0; ; k++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		for l, tr := range s.tracks {
			key := k%simKeyEvery == l*simKeyEvery/len(s.tracks)
			pic := (picBase[l] + uint16(k)) & 0x7fff
			payload := []byte{0x90, 0xc0, 0x80 | byte(pic>>8), byte(pic), tl0Base[l] + uint8(k)}
			if key {
				w, h := simSizes[l][0], simSizes[l][1]
				payload = append(payload, 0x50, 0x42, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
			} else {
				payload = append(payload, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0)
			}
			payload = append(payload, byte(l), byte(k>>8), byte(k))
			if s.h264 {
				payload = []byte{0x41, 0x9a, byte(l), byte(k >> 8), byte(k)} // a non-IDR slice
				if key {
					sps, _ := hex.DecodeString(simSPS[l])
					idr := []byte{0x65, 0x88, byte(l), byte(k >> 8), byte(k)}
					payload = append(append(append([]byte{24, 0, byte(len(sps))}, sps...), 0, byte(len(idr))), idr...)
				}
			}
			h := rtp.Header{Version: 2, SequenceNumber: seq[l], Timestamp: tsBase[l] + uint32(k)*simTicks, Marker: true}
			seq[l]++
			_ = h.SetExtension(midID, []byte(mid))
			_ = h.SetExtension(ridID, []byte(simRids[l]))
			_ = tr.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
		}
		if k%5 == 0 { // the layers' clocks, as one capture clock
			at := t0.Add(time.Duration(k) * simFrame)
			var pkts []rtcp.Packet
			for l := range s.tracks {
				pkts = append(pkts, &rtcp.SenderReport{SSRC: uint32(enc[l].SSRC), NTPTime: toNTP(at), RTPTime: tsBase[l] + uint32(k)*simTicks})
			}
			_ = s.pc.WriteRTCP(pkts)
		}
	}
}

func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + 2208988800)
	return secs<<32 | uint64(t.Nanosecond())*(1<<32)/1e9
}

// publishSimulcast joins identity to room and publishes the simulcast track; it returns the
// producer's id once it is live.
func publishSimulcast(t *testing.T, n *node.Node, room, identity string, h264 bool) (*node.Participant, string) {
	t.Helper()
	s := newSimPublisher(t, h264)
	p, err := n.Join(room, identity, node.Grant{Publish: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(vp8pub.Offer(t, s.pc), true)
	if err != nil {
		t.Fatal(err)
	}
	s.answered(t, answer)
	return p, liveProducer(t, p)
}

// liveProducer waits until p has a producer live in its room and returns its id.
func liveProducer(t *testing.T, p *node.Participant) string {
	t.Helper()
	var id string
	checkFor(t, 10*time.Second, func() error {
		for _, pr := range p.Room().Producers() {
			if pr.Participant == p.ID() {
				id = pr.ID
				return nil
			}
		}
		return errors.New("no live producer yet")
	})
	return id
}
