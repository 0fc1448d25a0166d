package bots

import (
	"fmt"
	"slices"
	"time"
)

// StallGap is how long a subscriber may go without media from a live producer before the
// silence is a stall. Audio sends every 20 ms and video every 33 ms, so a second of nothing is
// never ordinary jitter.
const StallGap = time.Second

// span is an interval of the run in unix nanoseconds.
type span struct{ from, to int64 }

func (s span) len() time.Duration { return time.Duration(s.to - s.from) }

// Stall is one episode during which a subscriber lacked media from at least one live producer
// for longer than StallGap.
type Stall struct {
	// StartS is when the last packet before the gap arrived, in seconds since the run started.
	StartS float64 `json:"start_s"`
	// DurationMs runs from the gap's start to the first packet after it (Recovered) or to the
	// end of the run (not recovered).
	DurationMs float64 `json:"duration_ms"`
	Recovered  bool    `json:"recovered"`
}

// trackGaps is what one received track knows about its silences: the gaps longer than
// StallGap between two packets, and the longest gap of any length. Only the track's reader
// writes it, under the subscriber's mutex.
type trackGaps struct {
	last   int64 // unix nanos of the latest packet (0: none yet)
	gaps   []span
	maxGap time.Duration
}

// packet records a packet's arrival at now (unix nanos).
func (g *trackGaps) packet(now int64) { g.packetAfter(now, StallGap) }

// packetAfter is packet keeping the gaps longer than least.
func (g *trackGaps) packetAfter(now int64, least time.Duration) {
	if g.last != 0 {
		d := time.Duration(now - g.last)
		g.maxGap = max(g.maxGap, d)
		if d > least {
			g.gaps = append(g.gaps, span{g.last, now})
		}
	}
	g.last = max(g.last, now)
}

// silentFor tells how long the track has gone without a packet at now.
func (g *trackGaps) silentFor(now int64) time.Duration {
	if g.last == 0 {
		return 0
	}
	return time.Duration(now - g.last)
}

// stalls returns the track's gaps up to end, the trailing silence included, clipped to when
// the producer was live (sending) and kept only when still longer than StallGap. A gap that
// reaches end is unrecovered: its to is end.
func (g *trackGaps) stalls(end int64, live span) []span {
	gaps := g.gaps
	if g.last != 0 && end-g.last > int64(StallGap) {
		gaps = append(gaps[:len(gaps):len(gaps)], span{g.last, end})
	}
	var out []span
	for _, s := range gaps {
		c := span{max(s.from, live.from), min(s.to, live.to)}
		if c.len() > StallGap {
			out = append(out, c)
		}
	}
	return out
}

// mergeSpans returns the union of spans as sorted, disjoint spans: a subscriber's stall
// episodes from the stalls of its tracks (video frozen while audio plays is a stall too).
func mergeSpans(spans []span) []span {
	if len(spans) == 0 {
		return nil
	}
	s := slices.Clone(spans)
	slices.SortFunc(s, func(a, b span) int { return int(a.from - b.from) })
	out := []span{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if x.from <= last.to {
			last.to = max(last.to, x.to)
			continue
		}
		out = append(out, x)
	}
	return out
}

// stallReport turns a subscriber's episodes into report entries: recovered unless an episode
// reaches end.
func stallReport(episodes []span, start time.Time, end int64) []Stall {
	out := make([]Stall, 0, len(episodes))
	for _, e := range episodes {
		out = append(out, Stall{
			StartS:     float64(e.from-start.UnixNano()) / 1e9,
			DurationMs: float64(e.len()) / 1e6,
			Recovered:  e.to < end,
		})
	}
	return out
}

// describe says which subscriber stalled, where and when, for the over --max-stall list.
func (s Stall) describe(bot, url string) string {
	how := "recovered"
	if !s.Recovered {
		how = "not recovered by the end of the run"
	}
	return fmt.Sprintf("%s on %s: no media for %.1f s from t=%.1f s (%s)", bot, url, s.DurationMs/1000, s.StartS, how)
}
