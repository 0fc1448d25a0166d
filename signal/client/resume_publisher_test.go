package client_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// TestPublisherResumesSameNode: a publisher whose signaling connection goes silent resumes on
// the same node (the node still holds its producer): a viewer hears producerMoved, never
// producerRemoved or a second producerAdded, and its track carries media again.
func TestPublisherResumesSameNode(t *testing.T) {
	n, sp := frozenNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pubResumed := make(chan client.Resume, 1)
	po := client.Options{Token: n.Token("restore", "alice"), LoopbackOnly: true, NoAutoSubscribe: true, Resume: true,
		OnResume: func(r client.Resume) { pubResumed <- r }}
	client.SetPingInterval(&po, 100*time.Millisecond)
	pub, err := client.Dial(ctx, "ws://"+sp.addr()+"/ws", po)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, video); err != nil {
		t.Fatal(err)
	}
	stop := sendVideo(video)
	defer stop()
	var mu sync.Mutex
	var heard []string
	pkts := make(chan string, 1000)
	so := client.Options{Token: n.Token("restore", "bob"), LoopbackOnly: true,
		OnNotification: func(m string, d json.RawMessage) {
			if m != proto.MethodTrickle && m != proto.MethodOffer {
				mu.Lock()
				heard = append(heard, m+" "+string(d))
				mu.Unlock()
			}
		},
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				select {
				case pkts <- tr.ID():
				default:
				}
			}
		}}
	sub, err := client.Dial(ctx, n.URL, so)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	select {
	case <-pkts:
	case <-ctx.Done():
		t.Fatal("no media before the resume")
	}
	sp.freeze()
	select {
	case r := <-pubResumed:
		if r.Fresh {
			t.Fatalf("the publisher joined afresh: %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no resume")
	}
	// Media again after the resume: packets that arrive once those queued before it are gone.
	time.Sleep(time.Second)
	for len(pkts) > 0 {
		<-pkts
	}
	select {
	case <-pkts:
	case <-time.After(5 * time.Second):
		t.Error("the viewer gets no media after the publisher resumed")
	}
	mu.Lock()
	defer mu.Unlock()
	var added, removed, moved int
	for _, h := range heard {
		switch strings.SplitN(h, " ", 2)[0] {
		case proto.MethodProducerAdded:
			added++
		case proto.MethodProducerRemoved:
			removed++
		case proto.MethodProducerMoved:
			moved++
		}
	}
	if added != 1 || removed != 0 || moved != 1 {
		t.Fatalf("the viewer heard %d producerAdded, %d producerRemoved, %d producerMoved, want 1, 0, 1: %q", added, removed, moved, heard)
	}
}
