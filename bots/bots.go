// Package bots runs load-test bots: real WebRTC clients (the project's Go signaling client,
// with DTLS, SRTP and ICE) that publish looped VP8 and Opus clips and subscribe, measuring join
// time, one-way latency, loss and bitrate.
package bots

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/time/rate"
)

type run struct {
	o     Options
	start time.Time
	logs  sendLogs
	wg    sync.WaitGroup // media loops

	mu     sync.Mutex
	errors []string
	subs   []*subscriber
	pubs   int
	// published counts the tracks the publishers of each room published: what each of its
	// subscribers must receive.
	published map[string]int
}

func (r *run) token(room, identity string, publish, subscribe bool) (string, error) {
	return r.o.Keys.Mint(auth.Grant{Room: room, Identity: identity, Publish: publish, Subscribe: subscribe}, r.o.Duration+time.Hour)
}

func (r *run) addError(err error) {
	r.mu.Lock()
	r.errors = append(r.errors, err.Error())
	r.mu.Unlock()
}

// Run runs the bots until the load has held for Duration (or ctx ends) and reports.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Rooms <= 0 {
		o.Rooms = 1
	}
	if o.Publishers < 0 || o.Subscribers <= 0 {
		return nil, ErrNoBots
	}
	if len(o.URLs) == 0 {
		return nil, errors.New("no node URL")
	}
	if o.Publishers > 0 && !o.Video && !o.Audio {
		return nil, errors.New("publishers send nothing: enable video or audio")
	}
	urls := make([]string, len(o.URLs))
	for i, u := range o.URLs {
		var err error
		if urls[i], err = proto.WebSocketURL(u); err != nil {
			return nil, err
		}
	}
	o.URLs = urls
	if o.PublishURL == "" {
		o.PublishURL = o.URLs[0]
	}
	var err error
	if o.PublishURL, err = proto.WebSocketURL(o.PublishURL); err != nil {
		return nil, err
	}
	if o.Rate <= 0 {
		o.Rate = 20
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 15 * time.Second
	}
	if o.RunID == "" {
		o.RunID = newRunID()
	}
	if !validRunID(o.RunID) {
		return nil, fmt.Errorf("%w: %q", ErrBadRunID, o.RunID)
	}
	r := &run{o: o, start: time.Now(), published: make(map[string]int)}
	mediaCtx, stopMedia := context.WithCancel(context.Background())
	defer stopMedia()

	total := o.Rooms * (o.Publishers + o.Subscribers)
	bar := r.progress(total)
	limiter := rate.NewLimiter(rate.Limit(o.Rate), 1)
	var clients []*client.Client
	var cmu sync.Mutex
	var joins sync.WaitGroup
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go r.showProgress(bar, total, stopProgress, progressDone)

	rooms := make([]string, o.Rooms)
	for i := range rooms {
		rooms[i] = o.Room
		if o.Rooms > 1 {
			rooms[i] = fmt.Sprintf("%s-%d", o.Room, i)
		}
	}
	// Publishers first, each room, then subscribers round-robin over the URLs.
	for _, room := range rooms {
		for i := 0; i < o.Publishers; i++ {
			if limiter.Wait(ctx) != nil {
				break
			}
			name := pubName(room, o.RunID, i)
			jctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
			c, tracks, err := r.publish(jctx, mediaCtx, name, o.PublishURL, room)
			cancel()
			if err != nil {
				r.addError(err)
				continue
			}
			r.mu.Lock()
			r.pubs++
			r.published[room] += tracks
			r.mu.Unlock()
			clients = append(clients, c)
		}
	}
	n := 0
	for _, room := range rooms {
		for i := 0; i < o.Subscribers; i++ {
			if limiter.Wait(ctx) != nil {
				break
			}
			url, region := o.URLs[n%len(o.URLs)], o.region(n)
			n++
			name := subName(room, o.RunID, i)
			joins.Add(1)
			go func() {
				defer joins.Done()
				jctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
				defer cancel()
				s := r.subscribe(jctx, name, url, region, room)
				r.mu.Lock()
				r.subs = append(r.subs, s)
				r.mu.Unlock()
				if s.c != nil {
					cmu.Lock()
					clients = append(clients, s.c)
					cmu.Unlock()
				}
			}()
		}
	}
	joins.Wait()
	// The load is full once every subscriber receives every track of its room (ICE and DTLS
	// done, and the producers known on its node); a subscriber that does not within
	// JoinTimeout is reported as such.
	r.awaitMedia(ctx, o.JoinTimeout)
	r.endJoinPhase()
	// Hold the load, unless nothing could join at all.
	if r.anyJoined() {
		select {
		case <-ctx.Done():
		case <-time.After(o.Duration):
		}
	}
	end := time.Now()
	close(stopProgress)
	<-progressDone
	rep := r.report(end)
	// Leave: subscribers first, then publishers.
	var wg sync.WaitGroup
	for i := len(clients) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(c *client.Client) {
			defer wg.Done()
			_ = c.Close()
		}(clients[i])
	}
	wg.Wait()
	stopMedia()
	r.wg.Wait()
	return rep, nil
}

// awaitMedia waits until every subscriber that joined has received a packet of every track
// published in its room, for at most timeout.
func (r *run) awaitMedia(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		waiting := 0
		for _, s := range r.subs {
			if s.joined.Load() && (s.firstAt.Load() == 0 || s.received() < s.expect) {
				waiting++
			}
		}
		r.mu.Unlock()
		if waiting == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-t.C:
		}
	}
}

// endJoinPhase records, for each subscriber, how many tracks it has received by the end of the
// join phase: the report fails a subscriber that lacks one.
func (r *run) endJoinPhase() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subs {
		s.atJoin = s.received()
	}
}

// anyJoined tells whether at least one publisher and one subscriber joined.
func (r *run) anyJoined() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pubs == 0 && r.o.Publishers > 0 {
		return false
	}
	for _, s := range r.subs {
		if s.joined.Load() {
			return true
		}
	}
	return false
}

func (r *run) progress(total int) *progressbar.ProgressBar {
	if r.o.Progress == nil {
		return nil
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(r.o.Progress),
		progressbar.OptionSetDescription("joining"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// showProgress refreshes the progress display twice a second until stop is closed.
func (r *run) showProgress(bar *progressbar.ProgressBar, total int, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if bar == nil {
		<-stop
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var lastBytes int64
	last := time.Now()
	for {
		select {
		case <-stop:
			_ = bar.Finish()
			return
		case now := <-t.C:
			snap := r.snapshot()
			kbps := float64(snap.bytes-lastBytes) * 8 / 1000 / now.Sub(last).Seconds()
			lastBytes, last = snap.bytes, now
			_ = bar.Set(snap.joined)
			bar.Describe(fmt.Sprintf("joined %d/%d failed %d | recv %.1f Mbps | latency p50 %.1f ms p99 %.1f ms | loss %.2f%% | stalled %d",
				snap.joined, total, snap.failed, kbps/1000, snap.lat.P50, snap.lat.P99, snap.lossPct, snap.stalled))
		}
	}
}

type snapshot struct {
	joined, failed int
	stalled        int // subscribers with a track silent for over StallGap now
	bytes          int64
	lat            Percentiles
	lossPct        float64
}

// snapshot aggregates the live state for the progress display (latency of the last second).
func (r *run) snapshot() snapshot {
	r.mu.Lock()
	subs := append([]*subscriber(nil), r.subs...)
	s := snapshot{joined: r.pubs, failed: len(r.errors)}
	r.mu.Unlock()
	now := time.Now().UnixNano()
	sec := uint16(r.second(now)) - 1
	var lats []float64
	var recv, lost int64
	for _, sub := range subs {
		if sub.joined.Load() {
			s.joined++
		} else {
			s.failed++
		}
		sub.mu.Lock()
		silent := false
		for id, t := range sub.tracks {
			gone := t.removed != 0 && r.logs.get(id) == nil // another run's producer that left
			silent = silent || !gone && t.gaps.silentFor(now) > StallGap
			s.bytes += t.bytes
			recv += t.packets
			lost += t.lost()
			for i := len(t.latency) - 1; i >= 0 && t.latency[i].sec >= sec; i-- {
				if t.latency[i].sec == sec {
					lats = append(lats, float64(t.latency[i].ms))
				}
			}
		}
		sub.mu.Unlock()
		if silent {
			s.stalled++
		}
	}
	s.lat = percentiles(lats)
	if recv+lost > 0 {
		s.lossPct = 100 * float64(lost) / float64(recv+lost)
	}
	return s
}

// report aggregates the measurements at the end of the run.
func (r *run) report(end time.Time) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.o
	rep := &Report{RunID: o.RunID, StartUnixMs: r.start.UnixMilli(), Simulcast: o.Simulcast, Publishers: o.Rooms * o.Publishers, Subscribers: o.Rooms * o.Subscribers, Rooms: o.Rooms,
		DurationSec: end.Sub(r.start).Seconds(), Errors: append([]string{}, r.errors...)}
	rep.Joined = r.pubs
	rep.Failed = rep.Publishers - r.pubs
	var joins, lats, recoveries []float64
	type nodeAcc struct {
		subs, stalls, stalledSubs int
		joins, lats               []float64
		recv, lost                int64
		observed, stalled         time.Duration
	}
	byURL := map[string]*nodeAcc{}
	seconds := int(end.Sub(r.start)/time.Second) + 1
	perSec := make([][]float64, seconds)
	bytesSec := make([]int64, seconds)
	pktsSec := make([]int64, seconds)
	joinedAt := make([]int, seconds)
	stalledSec := make([]int, seconds)
	endN := end.UnixNano()
	var observed, stalled time.Duration
	rep.MaxStallMs = float64(o.MaxStall) / 1e6
	var recvKbps float64
	for _, s := range r.subs {
		rep.TracksExpected += s.expect
		b := BotResult{Name: s.name, URL: s.url, AskedURL: s.asked, Room: s.room, Joined: s.joined.Load(), TracksExpected: s.expect}
		if e := s.err.Load(); e != nil {
			b.Error = *e
			rep.Errors = append(rep.Errors, *e)
		}
		if !b.Joined {
			rep.Failed++
			rep.Bots = append(rep.Bots, b)
			continue
		}
		rep.Joined++
		if s.url != s.asked {
			rep.Redirected++
		}
		first := s.firstAt.Load()
		if first == 0 {
			rep.NoMedia++
			rep.Errors = append(rep.Errors, s.name+": joined but received no media")
		} else {
			b.JoinMs = float64(first-s.start.UnixNano()) / 1e6
			joins = append(joins, b.JoinMs)
			if sec := int(time.Unix(0, first).Sub(r.start) / time.Second); sec >= 0 && sec < seconds {
				joinedAt[sec]++
			}
		}
		var botLats []float64
		var bytes int64
		var gaps []span
		s.mu.Lock()
		b.Tracks = len(s.tracks)
		received := 0
		for id, t := range s.tracks {
			log := r.logs.get(id)
			if t.packets > 0 && log != nil {
				received++
			}
			b.LongestGapMs = max(b.LongestGapMs, float64(max(t.gaps.maxGap, t.gaps.silentFor(endN)))/1e6)
			live := log.live(endN)
			if log == nil && t.removed != 0 {
				// Another run's producer: live, as far as this run can tell, until it left.
				live.to = min(live.to, t.removed)
			}
			gaps = append(gaps, t.gaps.stalls(endN, live)...)
			b.Packets += t.packets
			b.Lost += t.lost()
			bytes += t.bytes
			for i, n := range t.bytesSec {
				if i < seconds {
					bytesSec[i] += n
					pktsSec[i] += t.pktsSec[i]
				}
			}
			for _, l := range t.latency {
				botLats = append(botLats, float64(l.ms))
				if int(l.sec) < seconds {
					perSec[l.sec] = append(perSec[l.sec], float64(l.ms))
				}
			}
		}
		// A subscriber must have every track of its room by the end of the join phase: a
		// missing one has no packets, hence no gaps, and no stall could show it.
		if s.atJoin < s.expect {
			m := fmt.Sprintf("%s on %s: received %d of %d tracks", s.name, s.url, s.atJoin, s.expect)
			if received > s.atJoin {
				m += fmt.Sprintf(" by the end of the join phase (%d by the end of the run)", received)
			}
			rep.MissingTracks = append(rep.MissingTracks, m)
		}
		rep.addResumes(s, &b, endN, &recoveries)
		for _, e := range s.offerErrs {
			rep.OfferFailed = append(rep.OfferFailed, fmt.Sprintf("%s on %s: %s", s.name, s.url, e))
		}
		if o.Simulcast {
			b.Video, b.Media = s.layerResults(seconds)
		}
		s.mu.Unlock()
		// Stalls: the union of the tracks' silences while their producers were live.
		episodes := mergeSpans(gaps)
		b.Stalls = stallReport(episodes, r.start, endN)
		if n := len(b.Stalls); n > 0 && !b.Stalls[n-1].Recovered && b.SessionLost == "" {
			rep.NotRecovered = append(rep.NotRecovered, b.Stalls[n-1].describe(s.name, s.url))
		}
		var botObserved, botStalled time.Duration
		if first != 0 {
			botObserved = time.Duration(endN - first)
		} else {
			botObserved = end.Sub(s.joinedAt) // never received anything: all of it without media
			botStalled = botObserved
		}
		lastSec := -1 // a second is counted once per subscriber
		for i, e := range episodes {
			botStalled += e.len()
			from, to := r.second(e.from), r.second(e.to-1)
			for sec := max(from, lastSec+1); sec <= to && sec < seconds; sec++ {
				stalledSec[sec]++
				lastSec = sec
			}
			if o.MaxStall > 0 && e.len() > o.MaxStall {
				rep.OverMaxStall = append(rep.OverMaxStall, b.Stalls[i].describe(s.name, s.url))
			}
		}
		b.StalledMs = float64(botStalled) / 1e6
		if len(episodes) > 0 {
			rep.StalledSubscribers++
		}
		rep.Stalls += len(episodes)
		for _, st := range b.Stalls {
			rep.LongestStallMs = max(rep.LongestStallMs, st.DurationMs)
		}
		observed += botObserved
		stalled += botStalled
		rep.TracksReceived += b.Tracks
		rep.PacketsReceived += b.Packets
		rep.PacketsLost += b.Lost
		if first != 0 {
			if d := end.Sub(time.Unix(0, first)).Seconds(); d > 0 {
				b.RecvKbps = float64(bytes) * 8 / 1000 / d
			}
		}
		recvKbps += b.RecvKbps
		na := byURL[s.url]
		if na == nil {
			na = &nodeAcc{}
			byURL[s.url] = na
		}
		na.subs++
		na.lats = append(na.lats, botLats...)
		if b.JoinMs > 0 {
			na.joins = append(na.joins, b.JoinMs)
		}
		na.recv += b.Packets
		na.lost += b.Lost
		na.stalls += len(episodes)
		if len(episodes) > 0 {
			na.stalledSubs++
		}
		na.observed += botObserved
		na.stalled += botStalled
		lats = append(lats, botLats...)
		b.LatencyMs = percentiles(botLats)
		rep.Bots = append(rep.Bots, b)
	}
	// The nodes in the order of the --url list, then those the bots were redirected to.
	urls := slices.Clone(o.URLs)
	var others []string
	for u := range byURL {
		if !slices.Contains(urls, u) {
			others = append(others, u)
		}
	}
	sort.Strings(others)
	for _, u := range append(urls, others...) {
		if na := byURL[u]; na != nil {
			nr := NodeResult{URL: u, Subscribers: na.subs, JoinMs: percentiles(na.joins), LatencyMs: percentiles(na.lats),
				Stalls: na.stalls, StalledSubscribers: na.stalledSubs, StalledPct: pct(na.stalled, na.observed)}
			if na.recv+na.lost > 0 {
				nr.LossPct = 100 * float64(na.lost) / float64(na.recv+na.lost)
			}
			rep.Nodes = append(rep.Nodes, nr)
		}
	}
	rep.StalledPct = pct(stalled, observed)
	rep.JoinMs = percentiles(joins)
	rep.RecoveryMs = percentiles(recoveries)
	rep.LatencyMs = percentiles(lats)
	if rep.Joined-r.pubs > 0 {
		rep.RecvKbps = recvKbps / float64(rep.Joined-r.pubs)
	}
	if rep.PacketsReceived+rep.PacketsLost > 0 {
		rep.LossPct = 100 * float64(rep.PacketsLost) / float64(rep.PacketsReceived+rep.PacketsLost)
	}
	joined := 0
	for i := 0; i < seconds; i++ {
		joined += joinedAt[i]
		rep.Timeline = append(rep.Timeline, Second{T: float64(i), Joined: joined,
			RecvKbps: float64(bytesSec[i]) * 8 / 1000, Packets: pktsSec[i], LatencyMs: percentiles(perSec[i]),
			Stalled: stalledSec[i]})
	}
	return rep
}

// second is the second of the run that unix nanos t falls in.
func (r *run) second(t int64) int { return int(time.Duration(t-r.start.UnixNano()) / time.Second) }

// pct is part as a percentage of whole (0 when whole is 0).
func pct(part, whole time.Duration) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}
