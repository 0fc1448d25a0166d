package client_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestProducerLeavesMediaStays: a subscriber receives a stable producer while other publishers
// come and go, each fast enough that some of its packets are still in flight when the
// subscriber applies the offer that removes it. The subscriber must see every leave as a
// clean renegotiation: no track other than the producers' (a removed consumer's late packets
// once made pion guess a media section by payload type and add a transceiver of its own, an
// extra track of no id), no transceiver outside the negotiation, and the stable producer's
// media flowing to the end.
func TestProducerLeavesMediaStays(t *testing.T) {
	n := testNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	stable, stop := publishVideo(ctx, t, n, "stable", 20*time.Millisecond)
	defer stop()

	var mu sync.Mutex
	ids := map[string]bool{}  // the producers published in the room
	seen := map[string]bool{} // the track ids the subscriber got
	var stray []string
	var stablePackets atomic.Int64
	arrived := make(chan string, 64)
	mu.Lock()
	ids[stable] = true
	mu.Unlock()
	so := client.Options{Token: n.Token("churn", "viewer"), LoopbackOnly: true, Lean: true,
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			id := tr.ID()
			mu.Lock()
			seen[id] = true
			if !ids[id] {
				stray = append(stray, id+" (ssrc "+itoa(uint32(tr.SSRC()))+")")
			}
			mu.Unlock()
			select {
			case arrived <- id:
			default:
			}
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				if id == stable {
					stablePackets.Add(1)
				}
			}
		}}
	sub, err := client.Dial(ctx, n.URL, so)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitTrack(ctx, t, arrived, stable)

	const rounds = 12
	for i := 0; i < rounds; i++ {
		// A fast sender: every 2 ms, so the leave races packets on the wire.
		id, stopChurn := publishVideo(ctx, t, n, "churn-"+itoa(uint32(i)), 2*time.Millisecond)
		mu.Lock()
		ids[id] = true
		mu.Unlock()
		waitTrack(ctx, t, arrived, id)
		stopChurn() // the publisher leaves while its packets still flow
		before := stablePackets.Load()
		deadline := time.Now().Add(10 * time.Second)
		for stablePackets.Load() < before+10 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the stable producer's media stopped after a producer left (%d packets)", i, before)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stray) > 0 {
		t.Errorf("tracks of no producer: %v", stray)
	}
	for _, tr := range sub.Recv().GetTransceivers() {
		if tr.Mid() == "" {
			t.Errorf("a %s transceiver outside the negotiation (no mid, %s)", tr.Kind(), tr.Direction())
		}
	}
}

// waitTrack waits for a track of producer id to arrive.
func waitTrack(ctx context.Context, t *testing.T, arrived <-chan string, id string) {
	t.Helper()
	for {
		select {
		case got := <-arrived:
			if got == id {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no track of %s", id)
		}
	}
}

// publishVideo joins a publisher and sends a synthetic VP8 stream every interval; stop closes
// it (the publisher leaves the room).
func publishVideo(ctx context.Context, t *testing.T, n *exampleNode, identity string, interval time.Duration) (string, func()) {
	t.Helper()
	pub, err := client.Dial(ctx, n.URL, client.Options{Token: n.Token("churn", identity), LoopbackOnly: true, Lean: true, NoAutoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", identity)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pub.Publish(ctx, video)
	if err != nil || len(res.Producers) != 1 {
		t.Fatalf("publish: %v %+v", err, res)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		payload := make([]byte, 400)
		payload[0] = 0x10 // VP8: start of a partition, a keyframe
		for seq := uint16(1); ; seq++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
		}
	}()
	var once sync.Once
	return res.Producers[0].ID, func() {
		once.Do(func() {
			_ = pub.Close()
			close(quit)
			<-done
		})
	}
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
