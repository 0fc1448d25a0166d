package signal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
