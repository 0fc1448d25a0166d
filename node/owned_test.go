package node_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/webrtc/v4"
)

// goroutinesIn lists the stacks of the running goroutines that have a frame containing one of
// the names.
func goroutinesIn(names ...string) []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, name := range names {
			if strings.Contains(g, name) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// The frames of the goroutines that read a participant's transports: a subscriber's RTCP
// feedback readers, a publisher's track read loops and RTCP drains.
var (
	subscriberReaders = []string{"node.(*Consumer).readRTCP"}
	publisherReaders  = []string{"node.(*Participant).onTrack", "node.(*Producer).readLoop", "node.(*transport).drainRTCP"}
)

// TestCloseWaitsForReaders: when a participant's Close returns, the goroutines reading its
// transports have returned too; it is checked at once, without polling.
func TestCloseWaitsForReaders(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	api := clientAPI(t)
	pub := publish(t, n, api, "r")

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		if _, _, err := tr.Read(buf); err == nil {
			close(got)
		}
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
	sub := joinSubscriber(t, n, "r", "sub", pc)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no media reached the subscriber")
	}
	if len(goroutinesIn(subscriberReaders...)) == 0 || len(goroutinesIn(publisherReaders...)) == 0 {
		t.Fatal("the transports' readers are not running: the test checks nothing")
	}

	sub.Close()
	if left := goroutinesIn(subscriberReaders...); len(left) > 0 {
		t.Fatalf("the subscriber's Close returned before its RTCP readers:\n%s", strings.Join(left, "\n\n"))
	}
	pub.p.Close()
	if left := goroutinesIn(publisherReaders...); len(left) > 0 {
		t.Fatalf("the publisher's Close returned before its track and RTCP readers:\n%s", strings.Join(left, "\n\n"))
	}
}
