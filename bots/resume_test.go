package bots

import (
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
)

// TestReportResumes: a subscriber whose node went and that resumed is counted with the time
// from the loss to its first packet on the new node, taken from the read loops that started
// after the loss (not the old ones); one that resumed but never received media again fails the
// run and is named; the silences list when nothing arrived on any track.
func TestReportResumes(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	end := at(10)
	r := reportRun(start)
	healed := receiving(r, "sub-r-x-0", "ws://a/ws", "ws://a/ws", end, "v", "a")
	dead := receiving(r, "sub-r-x-1", "ws://b/ws", "ws://b/ws", end, "v", "a")
	r.subs = []*subscriber{healed, dead}
	r.endJoinPhase()

	// Both lost their node at 4 s (found gone at 4.5 s) and resumed at 4.7 s. The first
	// received again from 5.2 s on two new read loops; the second never did.
	for _, s := range r.subs {
		for _, ts := range s.tracks {
			ts.gaps = trackGaps{}
			feed(&ts.gaps, at(1).UnixNano(), at(4).UnixNano(), sec/50)
		}
		s.silence = trackGaps{}
		feed(&s.silence, at(1).UnixNano(), at(4).UnixNano(), sec/50)
		old := &reader{started: at(1).UnixNano()}
		old.first.Store(at(1).UnixNano())
		s.readers = append(s.readers, old)
		s.resumes = append(s.resumes, client.Resume{LostAt: at(4.5), ResumedAt: at(4.7), Attempts: 2, URL: "ws://c/ws"})
	}
	for _, ts := range healed.tracks {
		feed(&ts.gaps, at(5.2).UnixNano(), end.UnixNano(), sec/50)
	}
	feed(&healed.silence, at(5.2).UnixNano(), end.UnixNano(), sec/50)
	for _, first := range []float64{5.3, 5.2} {
		rd := &reader{started: at(5.1).UnixNano()}
		rd.first.Store(at(first).UnixNano())
		healed.readers = append(healed.readers, rd)
	}

	rep := r.report(end)
	if rep.OK() {
		t.Fatal("a run with a subscriber that never received media again reported ok")
	}
	if rep.Resumes != 2 || rep.ResumedSubscribers != 2 {
		t.Fatalf("resumes %d in %d subscribers, want 2 in 2", rep.Resumes, rep.ResumedSubscribers)
	}
	if got := rep.RecoveryMs; got.P50 < 699 || got.P50 > 701 || got.Max != got.P50 {
		t.Fatalf("recovery %+v, want 700 ms (4.5 s found gone, 5.2 s first packet)", got)
	}
	if len(rep.NotRecovered) != 1 || !strings.Contains(rep.NotRecovered[0], "sub-r-x-1: resumed on ws://c/ws but received no media after") {
		t.Fatalf("not recovered %q", rep.NotRecovered)
	}
	b := rep.Bots[0]
	if b.MediaLosses != 1 || len(b.Resumes) != 1 || b.Resumes[0].FirstPacketAtMs != at(5.2).UnixMilli() || b.URL != "ws://c/ws" || b.Resumes[0].Attempts != 2 {
		t.Fatalf("healed bot %+v", b)
	}
	if len(b.Silences) != 1 || !b.Silences[0].Recovered || b.Silences[0].ToMs != at(5.2).UnixMilli() {
		t.Fatalf("healed bot's silences %+v, want one from 4 s to 5.2 s", b.Silences)
	}
	if s := rep.Bots[1].Silences; len(s) != 1 || s[0].Recovered {
		t.Fatalf("dead bot's silences %+v, want one to the end", s)
	}
	var sum strings.Builder
	rep.WriteSummary(&sum)
	if !strings.Contains(sum.String(), "2 in 2 subscribers") || !strings.Contains(sum.String(), "1 never received media again") {
		t.Fatalf("summary:\n%s", sum.String())
	}
}
