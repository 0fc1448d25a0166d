package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// A subscriber (manual subscription, no auto-subscribe) whose node goes silent resumes (here
// on the same node, through a proxy whose new connections flow): its subscription is restored
// without the application doing anything, and its media arrives again through OnTrack, on a
// track of the same id. (A publisher's resume, same producer ids, is TestFailoverPublisher-
// NodeKilled in bots/, across real node processes: a resume on the same node is not what
// placement does, and there the node removes the adopted producer at times.)
func TestResumeRestoresSubscriptions(t *testing.T) {
	n, sp := frozenNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	po := client.Options{Token: n.Token("restore", "alice"), LoopbackOnly: true, NoAutoSubscribe: true}
	pub, err := client.Dial(ctx, n.URL, po)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "alice")
	if err != nil {
		t.Fatal(err)
	}
	res, err := pub.Publish(ctx, video)
	if err != nil || len(res.Producers) != 1 {
		t.Fatalf("publish: %v %+v", err, res)
	}
	id := res.Producers[0].ID
	stop := sendVideo(video)
	defer stop()

	// Each track that arrives: its id and whether a packet came on it.
	tracks := make(chan string, 8)
	subResumed := make(chan client.Resume, 1)
	so := client.Options{Token: n.Token("restore", "bob"), LoopbackOnly: true, Resume: true, NoAutoSubscribe: true,
		OnResume: func(r client.Resume) { subResumed <- r },
		OnNotification: func(m string, d json.RawMessage) {
			if m != proto.MethodTrickle { // what the subscriber heard, for a failure's log
				t.Logf("subscriber heard %s %.120s", m, d)
			}
		},
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			if _, _, err := tr.ReadRTP(); err == nil {
				tracks <- tr.ID()
			}
		}}
	sub := dialPinging(t, ctx, sp.url(), so, 100*time.Millisecond)
	// The producer is the room's once the publisher's transport connected: ask until then.
	for {
		err := sub.Request(ctx, proto.MethodSubscribe, proto.ProducerData{Producer: id}, nil)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("subscribe: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// media waits for the next track with a packet: the producer's, by its id.
	media := func(when, missing string) {
		t.Helper()
		select {
		case got := <-tracks:
			if got != id {
				t.Fatalf("%s, track %q, want the producer's id %q", when, got, id)
			}
		case <-ctx.Done():
			t.Fatal(missing)
		}
	}
	media("before the resume", "no media before the resume")

	sp.freeze()
	for _, c := range []struct {
		name string
		ch   chan client.Resume
		cl   *client.Client
	}{{"subscriber", subResumed, sub}} {
		select {
		case r := <-c.ch:
			if r.Fresh {
				t.Fatalf("%s joined afresh: %+v", c.name, r)
			}
			if j, _ := c.cl.Session(); j.Participant.ID != c.cl.Join.Participant.ID || !j.Resumed {
				t.Fatalf("%s resumed as %s (resumed %v), was %s", c.name, j.Participant.ID, j.Resumed, c.cl.Join.Participant.ID)
			}
		case <-c.cl.Done():
			t.Fatalf("%s: the session ended: %v", c.name, c.cl.Err())
		case <-ctx.Done():
			t.Fatalf("%s never resumed", c.name)
		}
	}
	media("after the resume", "no media after the resume: the subscription or the producer was not restored")
}
