package bots

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
)

// reportRun is a run of one room whose publisher published video and audio (producers "v" and
// "a"), started at start.
func reportRun(start time.Time) *run {
	r := &run{o: Options{URLs: []string{"ws://a/ws", "ws://b/ws"}, Publishers: 1, Subscribers: 2, Rooms: 1,
		Video: true, Audio: true}, start: start, pubs: 1, published: map[string]int{"r": 2}}
	r.logs.add("v", newSendLog(videoStep))
	r.logs.add("a", newSendLog(audioStep))
	return r
}

// receiving is a joined subscriber of room r, sent to asked and served by url, that received
// packets of the tracks named, from 1 s into the run to end.
func receiving(r *run, name, asked, url string, end time.Time, tracks ...string) *subscriber {
	s := &subscriber{name: name, room: "r", asked: asked, url: url, run: r, start: r.start, joinedAt: r.start,
		expect: r.published["r"], tracks: map[string]*trackStats{}}
	s.joined.Store(true)
	from := r.start.Add(time.Second).UnixNano()
	s.firstAt.Store(from)
	for _, id := range tracks {
		ts := &trackStats{}
		for t := from; t < end.UnixNano(); t += sec / 50 {
			ts.packets++
			ts.gaps.packet(t)
		}
		s.tracks[id] = ts
	}
	return s
}

// TestReportMissingTrack: a subscriber that received one of the room's two tracks by the end
// of the join phase fails the run and is named, with its node, in Problems; a track of another
// run's publisher does not stand in for a missing one; a full subscriber is fine.
func TestReportMissingTrack(t *testing.T) {
	start := time.Unix(1000, 0)
	end := start.Add(5 * time.Second)
	r := reportRun(start)
	full := receiving(r, "sub-r-x-0", "ws://a/ws", "ws://a/ws", end, "v", "a")
	// Video only, and the audio of a producer of another run in the room.
	short := receiving(r, "sub-r-x-1", "ws://b/ws", "ws://b/ws", end, "v", "other-run-audio")
	r.subs = []*subscriber{full, short}
	r.endJoinPhase()

	rep := r.report(end)
	if rep.OK() {
		t.Fatal("a run with a subscriber lacking a track reported ok")
	}
	if len(rep.MissingTracks) != 1 || rep.MissingTracks[0] != "sub-r-x-1 on ws://b/ws: received 1 of 2 tracks" {
		t.Fatalf("missing tracks %q", rep.MissingTracks)
	}
	if p := strings.Join(rep.Problems(), "\n"); !strings.Contains(p, "1 subscribers lacked a track") ||
		!strings.Contains(p, "sub-r-x-1 on ws://b/ws: received 1 of 2 tracks") {
		t.Fatalf("problems %q", p)
	}
	if rep.TracksExpected != 4 || rep.Bots[1].TracksExpected != 2 {
		t.Fatalf("tracks expected %d, bot %+v", rep.TracksExpected, rep.Bots[1])
	}

	// The missing track arrives after the join phase: still a failure, and the report says so.
	short.mu.Lock()
	short.tracks["a"] = &trackStats{packets: 10}
	short.mu.Unlock()
	rep = r.report(end)
	if rep.OK() || len(rep.MissingTracks) != 1 || !strings.HasSuffix(rep.MissingTracks[0], "(2 by the end of the run)") {
		t.Fatalf("late track: ok %v, missing %q", rep.OK(), rep.MissingTracks)
	}

	// Both with every track by the end of the join phase: ok.
	r.endJoinPhase()
	if rep = r.report(end); !rep.OK() || len(rep.MissingTracks) != 0 {
		t.Fatalf("every track: ok %v, missing %q, problems %q", rep.OK(), rep.MissingTracks, rep.Problems())
	}
}

// TestReportServingNode: a redirected subscriber is reported, and counted per node, under the
// node that served it, with the node it was sent to kept beside.
func TestReportServingNode(t *testing.T) {
	start := time.Unix(1000, 0)
	end := start.Add(5 * time.Second)
	r := reportRun(start)
	r.subs = []*subscriber{
		receiving(r, "sub-r-x-0", "ws://a/ws", "ws://a/ws", end, "v", "a"),
		receiving(r, "sub-r-x-1", "ws://b/ws", "ws://c/ws", end, "v", "a"), // b redirected it to c
	}
	r.endJoinPhase()
	rep := r.report(end)
	if b := rep.Bots[1]; b.URL != "ws://c/ws" || b.AskedURL != "ws://b/ws" {
		t.Fatalf("redirected bot: url %q asked %q", b.URL, b.AskedURL)
	}
	if rep.Redirected != 1 {
		t.Fatalf("%d redirected, want 1", rep.Redirected)
	}
	if len(rep.Nodes) != 2 || rep.Nodes[0].URL != "ws://a/ws" || rep.Nodes[1].URL != "ws://c/ws" || rep.Nodes[1].Subscribers != 1 {
		t.Fatalf("nodes %+v, want a and c with one subscriber each", rep.Nodes)
	}
}

// TestReportForeignProducerLeft: the track of another run's publisher goes silent when that
// publisher leaves the room: no stall. Silent while still in the room, it is one.
func TestReportForeignProducerLeft(t *testing.T) {
	start := time.Unix(1000, 0)
	end := start.Add(10 * time.Second)
	r := reportRun(start)
	r.o.MaxStall, r.o.Subscribers = 2*time.Second, 1
	s := receiving(r, "sub-r-x-0", "ws://a/ws", "ws://a/ws", end, "v", "a")
	other := &trackStats{}
	feed(&other.gaps, start.Add(time.Second).UnixNano(), start.Add(4*time.Second).UnixNano(), sec/50)
	other.packets = 150
	s.tracks["other-run-video"] = other
	r.subs = []*subscriber{s}
	r.endJoinPhase()
	if rep := r.report(end); rep.OK() || rep.Stalls != 1 {
		t.Fatalf("another run's producer silent for 6 s while in the room: ok %v, %d stalls", rep.OK(), rep.Stalls)
	}
	other.removed = start.Add(4 * time.Second).UnixNano()
	if rep := r.report(end); !rep.OK() || rep.Stalls != 0 {
		t.Fatalf("another run's producer left: ok %v, %d stalls %q", rep.OK(), rep.Stalls, rep.OverMaxStall)
	}
}

// TestBotNames: the bots' names carry the run id; a run id that could not be part of a name is
// refused.
func TestBotNames(t *testing.T) {
	if got := subName("r", "lg1", 3); got != "sub-r-lg1-3" {
		t.Errorf("subscriber name %q", got)
	}
	if got := pubName("r", "lg1", 0); got != "pub-r-lg1-0" {
		t.Errorf("publisher name %q", got)
	}
	a, b := newRunID(), newRunID()
	if a == b || !validRunID(a) {
		t.Errorf("random run ids %q, %q", a, b)
	}
	for _, id := range []string{"", "a b", "a/b", strings.Repeat("x", 33)} {
		if validRunID(id) {
			t.Errorf("run id %q accepted", id)
		}
	}
}

// TestReportOfferFailed: a subscriber whose receive transport could not apply an offer fails
// the run, named with its node and the client's error, though its media looked fine.
func TestReportOfferFailed(t *testing.T) {
	start := time.Unix(1000, 0)
	end := start.Add(5 * time.Second)
	r := reportRun(start)
	s := receiving(r, "sub-r-x-0", "ws://a/ws", "ws://a/ws", end, "v", "a")
	r.subs = []*subscriber{s}
	r.endJoinPhase()
	s.onNotification(client.NoteOfferFailed, json.RawMessage(`"receive transport: bad offer"`))
	rep := r.report(end)
	if rep.OK() || len(rep.OfferFailed) != 1 || !strings.HasPrefix(rep.OfferFailed[0], "sub-r-x-0 on ws://a/ws: t=") ||
		!strings.HasSuffix(rep.OfferFailed[0], "receive transport: bad offer") {
		t.Fatalf("ok %v, offer failed %q", rep.OK(), rep.OfferFailed)
	}
	if p := strings.Join(rep.Problems(), "\n"); !strings.Contains(p, "1 subscribers failed to apply an offer") {
		t.Fatalf("problems %q", p)
	}
}
