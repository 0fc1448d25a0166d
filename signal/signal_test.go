package signal_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

func TestPublishSubscribe(t *testing.T) {
	e := newEnv(t, 2, 100)
	pub := e.join("r1", "alice", true, true)
	video := newSource(t, webrtc.MimeTypeVP8, "v", "s")
	audio := newSource(t, webrtc.MimeTypeOpus, "a", "s")
	res, err := pub.Publish(context.Background(), video.track, audio.track)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Producers) != 2 {
		t.Fatalf("publish returned %d producers, want 2", len(res.Producers))
	}
	sub := e.join("r1", "bob", false, true)
	checkFor(t, 10*time.Second, func() error {
		for _, p := range res.Producers {
			if n := sub.received(p.ID); n < 10 {
				return fmt.Errorf("producer %s (%s): %d packets", p.ID, p.Kind, n)
			}
		}
		return nil
	})
}

// TestH264AndSenderReports: H264 is forwarded like VP8, and subscribers get RTCP sender reports
// made from the consumers' counters.
func TestH264AndSenderReports(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub := e.join("r", "pub", true, false)
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeH264, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	sub := e.join("r", "sub", false, true)
	waitPackets(t, sub, res.Producers[0].ID)
	if p := e.node.Room("r").Producers(); len(p) != 1 || !strings.EqualFold(p[0].Codec, webrtc.MimeTypeH264) {
		t.Fatalf("producers %+v", p)
	}
	checkFor(t, 5*time.Second, func() error {
		if sub.srs.Load() == 0 {
			return fmt.Errorf("no sender report")
		}
		return nil
	})
}

func waitPackets(t *testing.T, p *peer, ids ...string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		for _, id := range ids {
			if n := p.received(id); n < 10 {
				return fmt.Errorf("producer %s: %d packets", id, n)
			}
		}
		return nil
	})
}

func producerIDs(res proto.PublishResult) []string {
	var ids []string
	for _, p := range res.Producers {
		ids = append(ids, p.ID)
	}
	return ids
}

func TestLateJoinerLeaveAndRenegotiation(t *testing.T) {
	e := newEnv(t, 2, 100)
	early := e.join("r", "early", false, true)
	pub := e.join("r", "pub", true, true)
	checkFor(t, 5*time.Second, func() error {
		if !early.hasNote("participantJoined", "pub") {
			return fmt.Errorf("early did not hear of pub")
		}
		return nil
	})
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, early, producerIDs(res)...)

	// Renegotiation: a second track on the same send transport reaches the subscriber.
	res2, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeOpus, "a", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Producers) != 2 {
		t.Fatalf("after renegotiation: %d producers, want 2", len(res2.Producers))
	}
	waitPackets(t, early, producerIDs(res2)...)

	// A late joiner gets both.
	late := e.join("r", "late", false, true)
	if len(late.Join.Producers) != 2 || len(late.Join.Participants) != 3 {
		t.Fatalf("late join saw %d producers, %d participants", len(late.Join.Producers), len(late.Join.Participants))
	}
	waitPackets(t, late, producerIDs(res2)...)

	// Leaving ends the producers for everyone.
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		for _, p := range []*peer{early, late} {
			if !p.hasNote("participantLeft", pub.Join.Participant.ID) || !p.hasNote("producerRemoved", res2.Producers[0].ID) {
				return fmt.Errorf("leave not seen")
			}
		}
		if s := e.node.Stats(); s.Consumers != 0 || s.Producers != 0 {
			return fmt.Errorf("after leave: %d consumers, %d producers", s.Consumers, s.Producers)
		}
		return nil
	})
}

func TestUnsubscribeMuteUnpublish(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub, res := publishVideo(t, e, "r", "pub", true)
	id := res.Producers[0].ID
	sub, err := e.dial("r", "sub", false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // no auto-subscribe: nothing may arrive
	if n := sub.received(id); n != 0 {
		t.Fatalf("received %d packets without subscribing", n)
	}
	// A subscriber learns of a producer from producerAdded, sent once the track's media arrived
	// (the publisher has the id earlier, from its publish answer).
	checkFor(t, 5*time.Second, func() error {
		for _, p := range sub.Join.Producers {
			if p.ID == id {
				return nil
			}
		}
		if !sub.hasNote("producerAdded", id) {
			return fmt.Errorf("no producerAdded for %s", id)
		}
		return nil
	})
	ctx := context.Background()
	if err := sub.Request(ctx, "subscribe", map[string]string{"producer": id}, nil); err != nil {
		t.Fatal(err)
	}
	waitPackets(t, sub, id)

	// Mute stops forwarding; unmute resumes it.
	if err := pub.Request(ctx, "mute", map[string]any{"producer": id, "muted": true}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if !sub.hasNote("producerMuted", `"muted":true`) {
			return fmt.Errorf("no producerMuted")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	before := sub.received(id)
	time.Sleep(300 * time.Millisecond)
	if after := sub.received(id); after > before+1 {
		t.Fatalf("muted producer still forwarded: %d -> %d", before, after)
	}
	if err := pub.Request(ctx, "mute", map[string]any{"producer": id, "muted": false}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if n := sub.received(id); n < before+10 {
			return fmt.Errorf("after unmute: %d packets", n)
		}
		return nil
	})

	if err := sub.Request(ctx, "unsubscribe", map[string]string{"producer": id}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if c := e.node.Stats().Consumers; c != 0 {
			return fmt.Errorf("%d consumers after unsubscribe", c)
		}
		return nil
	})
	if err := pub.Request(ctx, "unpublish", map[string]string{"producer": id}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if !sub.hasNote("producerRemoved", id) {
			return fmt.Errorf("no producerRemoved")
		}
		return nil
	})
}

func TestChatAndData(t *testing.T) {
	e := newEnv(t, 2, 100)
	a := e.join("r", "a", true, true)
	b := e.join("r", "b", false, true)
	ctx := context.Background()
	if err := a.SendMessage(ctx, map[string]string{"text": "hello"}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if !b.hasNote("message", `"text":"hello"`) || !a.hasNote("message", `"identity":"a"`) {
			return fmt.Errorf("chat not delivered")
		}
		return nil
	})
	// Data: a's data producer (data channel on its send transport) reaches b's data consumer.
	if _, err := a.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if !a.DataOpen() {
			return fmt.Errorf("data channel not open")
		}
		if err := a.SendData([]byte("ping")); err != nil {
			return err
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, d := range b.data {
			if string(d) == "ping" {
				return nil
			}
		}
		return fmt.Errorf("data not delivered")
	})
}

// TestRoomSpreadsOverWorkers: with a threshold of 3 consumers per worker, one publisher's
// subscribers land on both workers, and every one of them receives.
func TestRoomSpreadsOverWorkers(t *testing.T) {
	e := newEnv(t, 2, 3)
	_, res := publishVideo(t, e, "big", "pub", false)
	checkFor(t, 5*time.Second, func() error {
		if len(e.node.Room("big").Producers()) != 1 {
			return fmt.Errorf("producer not live")
		}
		return nil
	})
	var subs []*peer
	for i := 0; i < 8; i++ {
		subs = append(subs, e.join("big", fmt.Sprintf("sub%d", i), false, true))
	}
	for _, s := range subs {
		waitPackets(t, s, res.Producers[0].ID)
	}
	routers := e.node.Room("big").Routers()
	if len(routers) < 2 || routers[0] == 0 || routers[1] == 0 {
		t.Fatalf("room not spread over both workers: consumers per worker %v", routers)
	}
	st := e.node.Stats()
	for _, w := range st.Workers {
		if w.Packets == 0 {
			t.Fatalf("worker %d forwarded nothing: %+v", w.Index, st.Workers)
		}
	}
	// The per-worker metrics show it too.
	body := scrape(t, e.http.URL+"/metrics")
	for _, want := range []string{`cascade_consumers{worker="0"}`, `cascade_consumers{worker="1"}`, `cascade_forwarded_packets_total{worker="1"}`} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// scrape GETs url with an admin token (/metrics ignores it; /cluster and /stats need it).
func scrape(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPublicIPAdvertised: --public-ip replaces the host address in the node's ICE candidates
// (127.0.0.2 here: a loopback address, so the test still sends nothing off the machine).
func TestPublicIPAdvertised(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1, PublicIP: "127.0.0.2"}, nil)
	p := e.join("r", "x", false, true)
	checkFor(t, 5*time.Second, func() error {
		if !p.hasNote("trickle", " 127.0.0.2 ") {
			return fmt.Errorf("no trickled candidate with the public address")
		}
		if p.hasNote("trickle", " 127.0.0.1 ") {
			return fmt.Errorf("the host address leaked into a candidate")
		}
		return nil
	})
}
