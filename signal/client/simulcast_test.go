package client

import (
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func newLayers(t *testing.T, rids ...string) []*SimulcastLayer {
	t.Helper()
	var ls []*SimulcastLayer
	for _, rid := range rids {
		l, err := NewSimulcastLayer(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub", rid)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return ls
}

// TestSimulcastLayersReachAReceiver publishes three layers the way PublishSimulcast does (one
// transceiver, an encoding per rid) to a plain pion receiver that, like the node, knows the
// layers only by rid: each layer must arrive as its own track, named by its rid, on the SSRC the
// layer reports (so that a keyframe request for it can be told from the others'). Real
// DTLS/SRTP on loopback, both with and without the client's interceptors.
func TestSimulcastLayersReachAReceiver(t *testing.T) {
	for _, lean := range []bool{false, true} {
		t.Run(map[bool]string{false: "interceptors", true: "lean"}[lean], func(t *testing.T) {
			api, err := newAPI(true, lean, nil)
			if err != nil {
				t.Fatal(err)
			}
			send, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer send.Close()
			recv := newReceiver(t)
			defer recv.Close()

			layers := newLayers(t, "q", "h", "f")
			if err := checkLayers(layers); err != nil {
				t.Fatal(err)
			}
			if _, err := addTransceiver(send, pubTrack{track: layers[0], layers: layers}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			got := map[string]uint32{} // rid -> SSRC
			recv.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				mu.Lock()
				got[tr.RID()] = uint32(tr.SSRC())
				mu.Unlock()
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
				}
			})
			connect(t, send, recv)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := uint16(0); ; seq++ {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					for _, l := range layers {
						p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000},
							Payload: []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}}
						_ = l.WriteRTP(p)
					}
				}
			}()
			defer func() { close(stop); wg.Wait() }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n == 3 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			var rids []string
			for rid := range got {
				rids = append(rids, rid)
			}
			sort.Strings(rids)
			if len(got) != 3 {
				t.Fatalf("the receiver got tracks for rids %v, want f, h, q", rids)
			}
			for _, l := range layers {
				if got[l.RID()] != l.SSRC() || l.SSRC() == 0 {
					t.Errorf("layer %s: SSRC %d, the receiver's track has %d", l.RID(), l.SSRC(), got[l.RID()])
				}
			}
		})
	}
}

// newReceiver is a receive-only pion transport that resolves simulcast streams by their mid and
// rid header extensions, as the node does.
func newReceiver(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	me := vp8pub.SimulcastEngine(t)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// connect negotiates send (offerer) with recv, with every candidate in the descriptions.
func connect(t *testing.T, send, recv *webrtc.PeerConnection) {
	t.Helper()
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: vp8pub.Offer(t, send)}
	if err := recv.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := recv.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(recv)
	if err := recv.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := send.SetRemoteDescription(*recv.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// TestSimulcastLayersChecked: PublishSimulcast refuses what cannot be one simulcast track.
func TestSimulcastLayersChecked(t *testing.T) {
	other, err := NewSimulcastLayer(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "other", "pub", "h")
	if err != nil {
		t.Fatal(err)
	}
	for name, ls := range map[string][]*SimulcastLayer{
		"none":       nil,
		"four":       newLayers(t, "a", "b", "c", "d"),
		"same rid":   newLayers(t, "q", "q"),
		"two tracks": {newLayers(t, "q")[0], other},
	} {
		if err := checkLayers(ls); !errors.Is(err, ErrSimulcastLayers) {
			t.Errorf("%s: %v, want ErrSimulcastLayers", name, err)
		}
	}
	if _, err := NewSimulcastLayer(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub", ""); !errors.Is(err, ErrSimulcastLayers) {
		t.Errorf("a layer without rid: %v", err)
	}
}

// TestMediaNotesDecoded: layerChanged, layersWanted and activeSpeakers reach their callbacks,
// decoded.
func TestMediaNotesDecoded(t *testing.T) {
	var lc proto.LayerChangedData
	var lw proto.LayersWantedData
	var as proto.ActiveSpeakersData
	c := &Client{o: Options{OnLayerChanged: func(d proto.LayerChangedData) { lc = d },
		OnLayersWanted: func(d proto.LayersWantedData) { lw = d }, OnActiveSpeakers: func(d proto.ActiveSpeakersData) { as = d }}}
	c.notify(proto.MethodLayerChanged, json.RawMessage(`{"producer":"p1","layer":1,"rid":"h"}`))
	c.notify(proto.MethodLayersWanted, json.RawMessage(`{"producer":"p1","layers":{"q":true,"f":false}}`))
	c.notify(proto.MethodActiveSpeakers, json.RawMessage(`{"speakers":[{"participant":"a","producer":"p2","level":0.5}]}`))
	if lc.Producer != "p1" || lc.Layer != 1 || lc.Rid != "h" {
		t.Errorf("layerChanged: %+v", lc)
	}
	if !lw.Layers["q"] || lw.Layers["f"] || len(lw.Layers) != 2 {
		t.Errorf("layersWanted: %+v", lw)
	}
	if len(as.Speakers) != 1 || as.Speakers[0].Participant != "a" || as.Speakers[0].Level != 0.5 {
		t.Errorf("activeSpeakers: %+v", as)
	}
}
