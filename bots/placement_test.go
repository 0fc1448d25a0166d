package bots_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// redirectTo is the placement of a node that sends every join to another node.
type redirectTo struct{ id, url string }

func (p redirectTo) Place(string, string, ...string) (string, string, bool)    { return p.id, p.url, true }
func (redirectTo) Alternatives(string, string, int, ...string) []proto.NodeURL { return nil }
func (redirectTo) Available(string) bool                                       { return true }

// startPlacedNode starts a node whose joins go through placement pl (nil: none) and returns
// it and its signaling URL.
func startPlacedNode(t *testing.T, pl signal.Placement) (*node.Node, string) {
	t.Helper()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := signal.NewServer(n, signal.Options{Keys: keys, Placement: pl})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		n.Close()
	})
	u, err := proto.WebSocketURL(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return n, u
}

// TestBotsRedirect: node a redirects every join to node b. By default the bots follow, and the
// report puts each subscriber, and the per-node figures, on b, the node that served it; with
// NoRedirect every bot stays on a.
func TestBotsRedirect(t *testing.T) {
	_, b := startPlacedNode(t, nil)
	_, a := startPlacedNode(t, redirectTo{id: "b", url: b})
	const subs = 3
	o := bots.Options{URLs: []string{a}, Room: "r", Publishers: 1, Subscribers: subs,
		Duration: time.Second, Rate: 50, Video: true, Audio: true, Keys: keys, LoopbackOnly: true}

	for _, c := range []struct {
		name       string
		noRedirect bool
		servedBy   string // every bot's node
		redirected int
	}{{"follow", false, b, subs}, {"no-redirect", true, a, 0}} {
		t.Run(c.name, func(t *testing.T) {
			o := o
			o.PublishURL, o.NoRedirect = c.servedBy, c.noRedirect
			rep, err := bots.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("run not ok: %q, errors %v", rep.Problems(), rep.Errors)
			}
			for _, bot := range rep.Bots {
				if bot.URL != c.servedBy || bot.AskedURL != a {
					t.Errorf("%s: url %q asked %q, want served by %q, sent to %q", bot.Name, bot.URL, bot.AskedURL, c.servedBy, a)
				}
			}
			if rep.Redirected != c.redirected {
				t.Errorf("%d redirected, want %d", rep.Redirected, c.redirected)
			}
			if len(rep.Nodes) != 1 || rep.Nodes[0].URL != c.servedBy || rep.Nodes[0].Subscribers != subs {
				t.Errorf("nodes %+v, want every subscriber on %s", rep.Nodes, c.servedBy)
			}
		})
	}
}

// TestBotsTwoRunsOneRoom: two runs in one room at once (two load machines) keep their bots:
// the names differ by run id, every bot of both runs joins and receives its run's tracks, and
// the shorter run's publisher leaving is no stall for the longer run, whose subscribers
// received its tracks too.
func TestBotsTwoRunsOneRoom(t *testing.T) {
	_, u := startPlacedNode(t, nil)
	o := bots.Options{URLs: []string{u}, Room: "r", Publishers: 1, Subscribers: 2, Rate: 50, Video: true, Audio: true,
		Keys: keys, LoopbackOnly: true, MaxStall: 2 * time.Second}
	long, short := o, o
	long.Duration, short.Duration = 5*time.Second, time.Second
	reps := make([]*bots.Report, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, o := range []bots.Options{long, short} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = bots.Run(context.Background(), o)
		}()
	}
	wg.Wait()
	var names []string
	for i, rep := range reps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !rep.OK() {
			t.Errorf("run %d (%s) not ok: %q, errors %v", i, rep.RunID, rep.Problems(), rep.Errors)
			logBots(t, rep)
		}
		for _, b := range rep.Bots {
			if !strings.Contains(b.Name, "-"+rep.RunID+"-") {
				t.Errorf("run %s: bot %s", rep.RunID, b.Name)
			}
			if slices.Contains(names, b.Name) {
				t.Errorf("both runs have a bot %s", b.Name)
			}
			names = append(names, b.Name)
		}
	}
	// The long run's subscribers received the short run's publisher's tracks as well.
	lacking := false
	for _, b := range reps[0].Bots {
		if b.Tracks != 4 {
			t.Errorf("%s of the long run: %d tracks, want its run's 2 and the other's 2", b.Name, b.Tracks)
			lacking = true
		}
	}
	if lacking && reps[0].OK() { // else logged above
		logBots(t, reps[0])
	}
}

// logBots logs what a failed run's subscribers saw, relative to the run's start: when each
// lost its media (all tracks, or one), resumed, and got it back; enough to tell a starved test
// process (every subscriber silent at once, recovered) from one subscriber's dead transport.
func logBots(t *testing.T, rep *bots.Report) {
	t.Helper()
	at := func(ms int64) float64 { return float64(ms-rep.StartUnixMs) / 1000 }
	for _, b := range rep.Bots {
		line := fmt.Sprintf("%s: %d tracks, %d packets, join %.0f ms", b.Name, b.Tracks, b.Packets, b.JoinMs)
		for _, s := range b.Silences {
			line += fmt.Sprintf("; silent %.1f-%.1f s (recovered %v)", at(s.FromMs), at(s.ToMs), s.Recovered)
		}
		line += fmt.Sprintf("; %d silences of one track", len(b.TrackGaps))
		for _, r := range b.Resumes {
			line += fmt.Sprintf("; lost at %.1f s, resumed at %.1f s", at(r.LostAtMs), at(r.ResumedAtMs))
			if r.FirstPacketAtMs != 0 {
				line += fmt.Sprintf(", media at %.1f s", at(r.FirstPacketAtMs))
			}
			if r.Reason != "" {
				line += " (" + r.Reason + ")"
			}
		}
		t.Log(line)
	}
	t.Logf("run %s lasted %.1f s", rep.RunID, rep.DurationSec)
}
