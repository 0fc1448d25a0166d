package node

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// offerListener hands a participant's receive-transport offers to the test.
type offerListener chan string

func (l offerListener) Notify(method string, data any) {
	if m, ok := data.(map[string]string); ok && method == EventOffer {
		l <- m["sdp"]
	}
}

// TestDataConsumerDrained: the node's data consumer is detached (no pion read buffer), and what
// a client sends on it, or on a channel of its own on the receive transport, is still read and
// dropped, large messages included: more than the association's receive window (1 MiB) in
// messages up to 256 KiB leaves the client's send buffers empty, which it could not if the node
// left them unread. The node's messages still arrive afterwards, and closing the participant
// ends the drains (transport.close waits for them).
func TestDataConsumerDrained(t *testing.T) {
	n := negotiationNode(t)
	offers := make(offerListener, 4)
	p, err := n.Join("r", "sub", Grant{Subscribe: true}, false, offers)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}

	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	var mu sync.Mutex
	var got [][]byte
	opened := make(chan *webrtc.DataChannel, 1)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { opened <- dc })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			mu.Lock()
			got = append(got, m.Data)
			mu.Unlock()
		})
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: <-offers}); err != nil {
		t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := p.Answer(pc.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	var consumer *webrtc.DataChannel
	select {
	case consumer = <-opened:
	case <-time.After(20 * time.Second):
		t.Fatal("the data consumer did not open")
	}
	if consumer.Label() != "cascade" {
		t.Fatalf("data consumer labelled %q", consumer.Label())
	}
	own, err := pc.CreateDataChannel("mine", nil)
	if err != nil {
		t.Fatal(err)
	}
	ownOpen := make(chan struct{})
	own.OnOpen(func() { close(ownOpen) })
	select {
	case <-ownOpen:
	case <-time.After(20 * time.Second):
		t.Fatal("the client's own channel did not open")
	}

	// 3 MiB on each channel: small messages and large ones, sent as the window allows.
	for _, dc := range []*webrtc.DataChannel{consumer, own} {
		for i := range 48 {
			size := 100 + i
			if i%4 == 3 {
				size = 256 << 10
			}
			for dc.BufferedAmount() > 512<<10 {
				time.Sleep(5 * time.Millisecond) // the client's own flow control, not a wait for the node
			}
			if err := dc.Send(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	harness.Eventually(t, 20*time.Second, func() error {
		if a, b := consumer.BufferedAmount(), own.BufferedAmount(); a+b > 0 {
			return fmt.Errorf("%d and %d bytes still unsent: the node does not read them", a, b)
		}
		return nil
	})

	harness.Eventually(t, 10*time.Second, func() error {
		p.sendData([]byte("after"), false)
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 || string(got[len(got)-1]) != "after" {
			return fmt.Errorf("the node's message has not arrived")
		}
		return nil
	})

	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: a drain outlives its transport")
	}
}
