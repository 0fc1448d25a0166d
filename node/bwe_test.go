package node_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// shapedSubscriber subscribes identity to room with a real pion client (default interceptors:
// it sends transport-cc feedback, NACKs and receiver reports, as a browser does) whose path from
// the node runs through s. It counts the bytes its track delivers, and hands each packet to
// onPacket (if not nil).
func shapedSubscriber(t *testing.T, n *node.Node, room, identity string, s *shaper, onPacket func(*rtp.Packet)) (*node.Participant, *atomic.Int64) {
	t.Helper()
	pc := recvonlyVideo(t)
	var got atomic.Int64
	var wg sync.WaitGroup
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		defer wg.Done()
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			k, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			got.Add(int64(k))
			if onPacket != nil && pkt.Unmarshal(buf[:k]) == nil {
				onPacket(&pkt)
			}
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	p, err := n.Join(room, identity, node.Grant{Subscribe: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer := subscribeWhenLive(t, p, withoutCandidates(vp8pub.Offer(t, pc)))
	if !strings.Contains(answer, sdp.TransportCCURI) {
		t.Fatalf("the node's answer does not negotiate transport-cc:\n%s", answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: throughShaper(t, answer, s)}); err != nil {
		t.Fatal(err)
	}
	return p, &got
}

// estimateHistogram is the count and sum of cascade_subscriber_estimate_bps.
func estimateHistogram(t *testing.T, g prometheus.Gatherer) (uint64, float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "cascade_subscriber_estimate_bps" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no cascade_subscriber_estimate_bps")
	return 0, 0
}

// TestEstimateFollowsCap: a real pion subscriber behind a rate-limiting proxy with a queue
// (loopback) receives a ~1.9 Mbit/s VP8 stream. Uncapped, its estimate climbs above 1.5 Mbit/s;
// capped at 600 kbit/s (50 ms of queue), the estimate comes down to the cap (between 300 and
// 900 kbit/s) within 5 s and stays there; when the cap lifts it climbs above 1.5 Mbit/s again
// within 10 s. The node's histogram of estimates holds the subscriber. With --bwe=false the
// node stamps nothing and estimates nothing.
func TestEstimateFollowsCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pub := publishFrames(t, n, clientAPI(t))
	s := newShaper(t, n.WorkerAddr(0).(*net.UDPAddr))
	sub, got := shapedSubscriber(t, n, "r", "capped", s, nil)
	above := func(within time.Duration, bps int64) {
		t.Helper()
		checkFor(t, within, func() error {
			if e := sub.Estimate(); e < bps {
				return fmt.Errorf("estimate %d bit/s, want at least %d (received %d bytes, %d frames published)", e, bps, got.Load(), pub.frames.Load())
			}
			return nil
		})
	}
	start := time.Now()
	above(20*time.Second, 1_500_000)
	t.Logf("uncapped: estimate %d bit/s after %v", sub.Estimate(), time.Since(start).Round(100*time.Millisecond))
	if c, sum := estimateHistogram(t, reg); c != 1 || sum < 1_500_000 {
		t.Errorf("estimate histogram: %d samples, sum %.0f; want the one subscriber's estimate", c, sum)
	}

	const capRate = 600_000
	s.rate.Store(capRate)
	start = time.Now()
	checkFor(t, 5*time.Second, func() error {
		if e := sub.Estimate(); e > 900_000 {
			return fmt.Errorf("estimate %d bit/s under a %d bit/s cap", e, capRate)
		}
		return nil
	})
	t.Logf("capped: estimate %d bit/s after %v", sub.Estimate(), time.Since(start).Round(100*time.Millisecond))
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if e := sub.Estimate(); e < 300_000 || e > 900_000 {
			t.Fatalf("estimate %d bit/s under a %d bit/s cap, want 300-900 kbit/s", e, capRate)
		}
	}

	s.rate.Store(0)
	start = time.Now()
	above(10*time.Second, 1_500_000)
	t.Logf("lifted: estimate %d bit/s after %v; the shaper dropped %d datagrams", sub.Estimate(), time.Since(start).Round(100*time.Millisecond), s.dropped.Load())
}

// TestNoBWE: with estimation off the node stamps nothing (the subscriber sends no
// transport-cc feedback the node would use) and reports no estimate, and media flows as before.
func TestNoBWE(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: reg, NoBWE: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	publishFrames(t, n, clientAPI(t))
	s := newShaper(t, n.WorkerAddr(0).(*net.UDPAddr))
	sub, got := shapedSubscriber(t, n, "r", "plain", s, nil)
	checkFor(t, 10*time.Second, func() error {
		if got.Load() < 200_000 {
			return fmt.Errorf("received %d bytes", got.Load())
		}
		return nil
	})
	if e := sub.Estimate(); e != 0 {
		t.Errorf("estimate %d with estimation off", e)
	}
	if c, _ := estimateHistogram(t, reg); c != 0 {
		t.Errorf("estimate histogram has %d samples with estimation off", c)
	}
}
