package signal_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// metric reads one sample of the node's /metrics, e.g. `cascade_nack_retransmits_total`.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	for _, line := range strings.Split(scrape(e.t, e.http.URL+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return f
		}
	}
	e.t.Fatalf("no metric %s", name)
	return 0
}

// TestKeyframeRequestsCollapse: a burst of PLIs from many subscribers reaches the publisher as
// one keyframe request per interval.
func TestKeyframeRequestsCollapse(t *testing.T) {
	e := newEnv(t, 2, 3)
	pub, res := publishVideo(t, e, "r", "pub", false)
	id := res.Producers[0].ID
	var subs []*peer
	for i := 0; i < 6; i++ {
		s := e.join("r", fmt.Sprint("sub", i), false, true)
		waitPackets(t, s, id)
		subs = append(subs, s)
	}
	time.Sleep(600 * time.Millisecond) // past the interval of the subscribers' own first requests
	sentBefore := e.metric(`cascade_keyframe_requests_total{result="sent"}`)
	plisBefore := pub.plis.Load()
	sendPLIs(t, subs, id, 5)
	checkFor(t, 5*time.Second, func() error {
		if got := pub.plis.Load() - plisBefore; got < 1 {
			return fmt.Errorf("publisher got %d keyframe requests", got)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if sent := e.metric(`cascade_keyframe_requests_total{result="sent"}`) - sentBefore; sent != 1 {
		t.Fatalf("30 PLIs within the interval sent %v keyframe requests upstream, want 1", sent)
	}
	if got := pub.plis.Load() - plisBefore; got != 1 {
		t.Fatalf("publisher received %d PLIs, want 1", got)
	}
	if c := e.metric(`cascade_keyframe_requests_total{result="collapsed"}`); c < 29 {
		t.Fatalf("collapsed %v, want >= 29", c)
	}
}

// TestNACKAnsweredFromCache: a subscriber's NACK is answered from the producer's packet cache.
func TestNACKAnsweredFromCache(t *testing.T) {
	e := newEnv(t, 1, 100)
	_, res := publishVideo(t, e, "r", "pub", false)
	id := res.Producers[0].ID
	sub := e.join("r", "sub", false, true)
	waitPackets(t, sub, id)
	sub.mu.Lock()
	ssrc, last := sub.ssrc[id], sub.lastSeq[id]
	sub.mu.Unlock()
	if err := sub.Recv().WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc,
		Nacks: []rtcp.NackPair{{PacketID: last - 5, LostPackets: 0b11}}}}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if n := e.metric("cascade_nack_retransmits_total"); n != 3 {
			return fmt.Errorf("%v retransmissions, want 3", n)
		}
		return nil
	})
}
