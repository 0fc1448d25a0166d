package vp8pub_test

import (
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/pion/webrtc/v4"
)

// TestSenderMarksItsPackets: an answering PeerConnection gets the track; each packet starts a
// keyframe and carries the sender's mark and its sequence number. Close may be called twice.
func TestSenderMarksItsPackets(t *testing.T) {
	rx, err := vp8pub.API(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rx.Close() })
	got := make(chan []byte, 1)
	rx.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- append(p.Payload[:0:0], p.Payload...):
			default:
			}
		}
	})
	s := vp8pub.Start(t, 7, func(offer string) (string, error) {
		if err := rx.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", err
		}
		a, err := rx.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		gathered := webrtc.GatheringCompletePromise(rx)
		if err := rx.SetLocalDescription(a); err != nil {
			return "", err
		}
		<-gathered
		return rx.LocalDescription().SDP, nil
	})
	select {
	case p := <-got:
		if len(p) != 6 || p[0] != 0x10 || p[1] != 0 || p[2] != 7 || p[3] != 0 || int(p[4])<<8|int(p[5]) == 0 {
			t.Fatalf("payload %x, want 10 00 07 00 and a sequence number", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no packet")
	}
	s.Close()
	s.Close()
}
