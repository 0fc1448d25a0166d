package node_test

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
)

// bweLayers are the layers of the estimation tests' simulcast publisher: packets per 20 ms
// frame and payload bytes per packet: about 160 kbit/s, 500 kbit/s and 1.3 Mbit/s.
var bweLayers = [3]struct{ packets, size int }{{1, 400}, {1, 1250}, {3, 1100}}

// publishLayers publishes the three rid layers of newSimPublisher with bweLayers' rates (a
// keyframe per layer every 15 frames, staggered). Each packet's payload carries its layer at
// offset 15.
func publishLayers(t *testing.T, n *node.Node, room string) {
	t.Helper()
	s := newSimPublisher(t, false)
	p, err := n.Join(room, "pub", node.Grant{Publish: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(vp8pub.Offer(t, s.pc), true)
	if err != nil {
		t.Fatal(err)
	}
	mid, midID, ridID, enc := s.negotiated(t, answer)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(simFrame)
		defer tick.Stop()
		t0 := time.Now()
		seq := []uint16{100, 20000, 65500}
		buf := make([]byte, 1500)
		for k := 0; ; k++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			for l, tr := range s.tracks {
				key := k%simKeyEvery == l*simKeyEvery/len(s.tracks)
				pic := uint16(k) & 0x7fff
				for i := 0; i < bweLayers[l].packets; i++ {
					payload := buf[:bweLayers[l].size]
					copy(payload, []byte{0x80, 0xc0, 0x80 | byte(pic>>8), byte(pic), uint8(k)})
					if i == 0 {
						payload[0] = 0x90 // start of the frame
						w, h := simSizes[l][0], simSizes[l][1]
						copy(payload[5:], []byte{0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0})
						if key {
							copy(payload[5:], []byte{0x50, 0x42, 0, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)})
						}
					}
					payload[15] = byte(l)
					h := rtp.Header{Version: 2, SequenceNumber: seq[l], Timestamp: 1000 + uint32(k)*simTicks, Marker: i == bweLayers[l].packets-1}
					seq[l]++
					_ = h.SetExtension(midID, []byte(mid))
					_ = h.SetExtension(ridID, []byte(simRids[l]))
					_ = tr.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
				}
			}
			if k%5 == 0 {
				at := t0.Add(time.Duration(k) * simFrame)
				var pkts []rtcp.Packet
				for l := range s.tracks {
					pkts = append(pkts, &rtcp.SenderReport{SSRC: uint32(enc[l].SSRC), NTPTime: toNTP(at), RTPTime: 1000 + uint32(k)*simTicks})
				}
				_ = s.pc.WriteRTCP(pkts)
			}
		}
	}()
	t.Cleanup(func() { close(s.stop); <-s.done })
	liveProducer(t, p)
}

// layerWatch records the layer of the media packets a subscriber receives.
type layerWatch struct {
	layer  atomic.Int32
	media  atomic.Int64 // media payload bytes
	last   atomic.Int64 // unix ns of the last media packet
	maxGap atomic.Int64 // the longest time without media since resetGap
}

func (w *layerWatch) onPacket(p *rtp.Packet) {
	if len(p.Payload) > 15 {
		w.layer.Store(int32(p.Payload[15]))
		w.media.Add(int64(len(p.Payload)))
		now := time.Now().UnixNano()
		if gap := now - w.last.Swap(now); gap > w.maxGap.Load() {
			w.maxGap.Store(gap)
		}
	}
}

func (w *layerWatch) resetGap() { w.last.Store(time.Now().UnixNano()); w.maxGap.Store(0) }

// TestAllocatorFollowsCap is the shaping scenario of issue 15 on loopback: a three-layer
// simulcast producer (about 160 kbit/s, 500 kbit/s, 1.3 Mbit/s), one subscriber behind a
// rate-limiting proxy with 50 ms of queue, one uncapped. Uncapped, both reach the top layer.
// Capped at 600 kbit/s, the capped one is on the middle layer within 3 s and after 6 s (the
// layer that fits, not the lowest: a dip to it is logged), never goes a second without media,
// uses at least half of the cap (more than the lowest layer carries), and loses under 2 % of
// its media packets
// over the next 6 s (probes included) while the uncapped one stays on the top layer; when the
// cap lifts, it is back on the top layer within 10 s.
func TestAllocatorFollowsCap(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	publishLayers(t, n, "r")
	node0 := n.WorkerAddr(0).(*net.UDPAddr)
	capS, freeS := newShaper(t, node0), newShaper(t, node0)
	var capW, freeW layerWatch
	capped, _ := shapedSubscriber(t, n, "r", "capped", capS, capW.onPacket)
	free, _ := shapedSubscriber(t, n, "r", "free", freeS, freeW.onPacket)
	onLayer := func(w *layerWatch, who string, l int32, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		checkFor(t, within, func() error {
			if got := w.layer.Load(); got != l {
				return fmt.Errorf("%s subscriber on layer %d, want %d (estimate %d)", who, got, l, capped.Estimate())
			}
			return nil
		})
		return time.Since(start)
	}
	// A new subscriber starts on the layer its initial estimate allows and probes up.
	start := time.Now()
	checkFor(t, 20*time.Second, func() error {
		for _, s := range []struct {
			w *layerWatch
			p *node.Participant
		}{{&capW, capped}, {&freeW, free}} {
			if l, e := s.w.layer.Load(), s.p.Estimate(); l != 2 || e < 1_600_000 {
				return fmt.Errorf("%s on layer %d, estimate %d; want the top layer and at least 1.6 Mbit/s", s.p.ID(), l, e)
			}
		}
		return nil
	})
	t.Logf("both subscribers on the top layer after %v (estimates %d, %d)", time.Since(start).Round(10*time.Millisecond), capped.Estimate(), free.Estimate())

	const capRate = 600_000
	capW.resetGap()
	capS.rate.Store(capRate)
	took := onLayer(&capW, "capped", 1, 3*time.Second)
	t.Logf("capped at %d bit/s: on the middle layer after %v (estimate %d)", capRate, took.Round(10*time.Millisecond), capped.Estimate())
	m0, b0 := capS.mediaCounts(), capW.media.Load()
	start = time.Now()
	var onLowest time.Duration
	for end := start.Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if l := capW.layer.Load(); l == 0 {
			onLowest += 100 * time.Millisecond
		}
		if l := freeW.layer.Load(); l != 2 {
			t.Errorf("uncapped subscriber left the top layer for %d (estimate %d)", l, free.Estimate())
			break
		}
	}
	used := float64(capW.media.Load()-b0) * 8 / time.Since(start).Seconds()
	loss := capS.mediaLoss(m0)
	stall := time.Duration(capW.maxGap.Load())
	t.Logf("capped: longest time without media %v; %.0f bit/s of media payload received (%.0f %% of the cap), %.2f %% of media packets lost, estimate %d",
		stall.Round(time.Millisecond), used, 100*used/capRate, 100*loss, capped.Estimate())
	if stall > time.Second {
		t.Errorf("the capped subscriber went %v without media", stall)
	}
	if onLowest > 0 {
		t.Logf("the capped subscriber was on the lowest layer for about %v", onLowest)
	}
	if l := capW.layer.Load(); l != 1 {
		t.Errorf("capped subscriber on layer %d after 6 s of the cap, want the middle one", l)
	}
	if used < capRate/2 {
		t.Errorf("capped subscriber received %.0f bit/s of media, want at least half the cap", used)
	}
	if loss >= 0.02 {
		t.Errorf("capped subscriber lost %.2f %% of its media packets, want under 2 %%", 100*loss)
	}

	capS.rate.Store(0)
	took = onLayer(&capW, "capped", 2, 10*time.Second)
	t.Logf("cap lifted: back on the top layer after %v (estimate %d)", took.Round(10*time.Millisecond), capped.Estimate())
}
