package signal_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestNoGoroutineLeak: a node that served publishers, subscribers, data and WHIP leaves no
// goroutine behind once it and its clients are closed.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("session", func(t *testing.T) {
		e := newEnv(t, 2, 2)
		pub := e.join("r", "pub", true, true)
		res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			waitPackets(t, e.join("r", fmt.Sprint("s", i), false, true), res.Producers[0].ID)
		}
		e.join("r", "vanisher", false, true).Abort()
	})
	t.Run("cluster", func(t *testing.T) {
		envs := newCluster(t, 3, 1)
		_, res := publishVideo(t, envs[0], "r", "pub", false)
		for i, e := range envs[1:] {
			waitPackets(t, e.join("r", fmt.Sprint("s", i), false, true), res.Producers[0].ID)
		}
		envs[2].leave() // a node leaving in the middle
	})
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if after = runtime.NumGoroutine(); after <= before+2 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:n])
}
