package bots_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
)

// TestBotsSimulcast: a simulcast publisher bot and two subscribers on one node, on loopback
// (no cap): every subscriber receives the video, and the report has its layers over time,
// second by second, in JSON and in the summary; the layer the node announced last (layerChanged)
// is the layer of the last keyframe the subscriber received. (Which layer depends on the node's
// estimate: the shaping test checks that.)
func TestBotsSimulcast(t *testing.T) {
	url := startNode(t, false)
	rep, err := bots.Run(context.Background(), bots.Options{URLs: []string{url}, Room: "sim", Publishers: 1, Subscribers: 2,
		Duration: 8 * time.Second, Rate: 50, Video: true, Audio: true, Simulcast: true, Keys: keys, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !rep.Simulcast || rep.TracksReceived != 4 {
		t.Fatalf("run not ok: joined %d tracks %d of %d, problems %v, errors %v", rep.Joined, rep.TracksReceived, rep.TracksExpected, rep.Problems(), rep.Errors)
	}
	var sum strings.Builder
	rep.WriteSummary(&sum)
	for _, b := range rep.Bots {
		if len(b.Video) != 1 || len(b.Media) == 0 {
			t.Fatalf("%s: %d video records, %d media seconds", b.Name, len(b.Video), len(b.Media))
		}
		v := b.Video[0]
		node, media := -1, -1
		for _, c := range v.Changes {
			if c.Source == "node" {
				node = c.Layer
			} else {
				media = c.Layer
			}
		}
		if node < 0 || node != media {
			t.Errorf("%s: the node announced layer %d last, the last keyframe received is of layer %d: %+v", b.Name, node, media, v.Changes)
		}
		var pkts int64
		for _, s := range v.Seconds {
			pkts += s.Packets
		}
		var all int64
		for _, m := range b.Media {
			all += m.Packets
		}
		if all != b.Packets || pkts == 0 || pkts >= all {
			t.Errorf("%s: %d packets in the media seconds, %d of them video, %d in all", b.Name, all, pkts, b.Packets)
		}
		if !strings.Contains(sum.String(), "layers "+b.Name) {
			t.Errorf("the summary shows no layers for %s:\n%s", b.Name, sum.String())
		}
	}
	t.Logf("\n%s", sum.String())
}
