package bots

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"
)

// Percentiles summarises a distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentiles of a sample set (it sorts samples in place).
func percentiles(samples []float64) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	sort.Float64s(samples)
	at := func(q float64) float64 {
		i := int(q*float64(len(samples))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(samples) {
			i = len(samples) - 1
		}
		return samples[i]
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: samples[len(samples)-1]}
}

// Report is the result of a run, written with --json (the fields of the issue come first).
type Report struct {
	Publishers      int         `json:"publishers"`
	Subscribers     int         `json:"subscribers"`
	Joined          int         `json:"joined"`
	Failed          int         `json:"failed"`
	JoinMs          Percentiles `json:"join_ms"`
	LatencyMs       Percentiles `json:"latency_ms"`
	LossPct         float64     `json:"loss_pct"`
	RecvKbps        float64     `json:"recv_kbps"` // mean per subscriber
	PacketsReceived int64       `json:"packets_received"`
	Errors          []string    `json:"errors"`

	// RunID is the run's id, part of every bot's name (two runs in one room do not collide).
	RunID string `json:"run_id"`
	// StartUnixMs is when the run started (second 0 of every series), Unix milliseconds.
	StartUnixMs int64 `json:"start_unix_ms"`
	// Simulcast: the publishers sent simulcast layers, and each subscriber's Video and Media
	// show what it received second by second (layers.go).
	Simulcast   bool    `json:"simulcast,omitempty"`
	Rooms       int     `json:"rooms"`
	DurationSec float64 `json:"duration_s"`
	// TracksExpected sums, over the subscribers, the tracks published in their room;
	// TracksReceived the tracks they received by the end of the run.
	TracksExpected int   `json:"tracks_expected"`
	TracksReceived int   `json:"tracks_received"`
	PacketsLost    int64 `json:"packets_lost"`
	// NoMedia counts joined subscribers that received no packet at all.
	NoMedia int `json:"no_media"`
	// MissingTracks names every joined subscriber that had not received a packet of every
	// track published in its room by the end of the join phase, with its node.
	MissingTracks []string `json:"missing_tracks"`
	// Redirected counts the subscribers served by another node than the one they were sent
	// to (the node redirected the join).
	Redirected int `json:"redirected"`

	// Stalls count the episodes in which a subscriber lacked media from a live producer for
	// longer than StallGap (1 s), over all subscribers; StalledSubscribers had at least one.
	Stalls             int `json:"stalls"`
	StalledSubscribers int `json:"stalled_subscribers"`
	// LongestStallMs is the longest such episode.
	LongestStallMs float64 `json:"longest_stall_ms"`
	// StalledPct is the share of subscriber-seconds (from a subscriber's first packet, or its
	// join if it never received any, to the end) spent without media from a live producer.
	StalledPct float64 `json:"stalled_pct"`
	// MaxStallMs is the --max-stall threshold (0: off); OverMaxStall names every episode
	// longer than it, with the subscriber, its node and when.
	MaxStallMs   float64  `json:"max_stall_ms"`
	OverMaxStall []string `json:"over_max_stall"`

	// Resumes counts the subscribers' session moves (their node lost or draining) in
	// ResumedSubscribers; FreshJoins those refused and joined afresh. RecoveryMs is, over the
	// resumes, the time from the loss's detection to the first packet after it.
	// NotRecovered names every subscriber that never received media again after a loss (its
	// session lost, a resume without media, a silence that lasted to the end): each fails the
	// run.
	Resumes            int         `json:"resumes"`
	ResumedSubscribers int         `json:"resumed_subscribers"`
	FreshJoins         int         `json:"fresh_joins"`
	RecoveryMs         Percentiles `json:"recovery_ms"`
	NotRecovered       []string    `json:"not_recovered"`
	// OfferFailed names every subscriber whose receive transport could not apply an offer of
	// its node, and why: its media from then on is in doubt, so each fails the run.
	OfferFailed []string `json:"offer_failed,omitempty"`

	// Nodes breaks the subscribers' results down by the node (URL) that served them.
	Nodes []NodeResult `json:"nodes"`

	// Series for the picture: one point per second of the run.
	Timeline []Second `json:"timeline"`
	// Per-subscriber results.
	Bots []BotResult `json:"bots"`
}

// Second is one second of the run, aggregated over all subscribers.
type Second struct {
	T         float64     `json:"t"` // seconds since the start
	Joined    int         `json:"joined"`
	RecvKbps  float64     `json:"recv_kbps"` // total over subscribers
	Packets   int64       `json:"packets"`   // received by all subscribers
	LatencyMs Percentiles `json:"latency_ms"`
	// Stalled is how many subscribers were in a stall during this second.
	Stalled int `json:"stalled"`
}

// NodeResult is the subscribers of one node.
type NodeResult struct {
	URL         string      `json:"url"`
	Subscribers int         `json:"subscribers"`
	JoinMs      Percentiles `json:"join_ms"`
	LatencyMs   Percentiles `json:"latency_ms"`
	LossPct     float64     `json:"loss_pct"`
	Stalls      int         `json:"stalls"`
	// StalledSubscribers had at least one stall; StalledPct is as in Report.
	StalledSubscribers int     `json:"stalled_subscribers"`
	StalledPct         float64 `json:"stalled_pct"`
}

// BotResult is one subscriber's view.
type BotResult struct {
	Name string `json:"name"`
	// URL is the node that served the subscriber; AskedURL the one it was sent to (they differ
	// when the node redirected the join).
	URL      string  `json:"url"`
	AskedURL string  `json:"asked_url"`
	Room     string  `json:"room"`
	Joined   bool    `json:"joined"`
	JoinMs   float64 `json:"join_ms"`
	// Tracks is how many tracks it received by the end of the run, of TracksExpected (those
	// published in its room).
	Tracks         int         `json:"tracks"`
	TracksExpected int         `json:"tracks_expected"`
	Packets        int64       `json:"packets"`
	Lost           int64       `json:"lost"`
	RecvKbps       float64     `json:"recv_kbps"`
	LatencyMs      Percentiles `json:"latency_ms"`
	// LongestGapMs is the longest time between two packets of one track, or from the last
	// packet to the end of the run.
	LongestGapMs float64 `json:"longest_gap_ms"`
	// StalledMs is the time spent in Stalls.
	StalledMs float64 `json:"stalled_ms"`
	Stalls    []Stall `json:"stalls,omitempty"`
	// MediaLosses counts the times the subscriber lost its node (resumed or not); Resumes
	// are its session's moves; Silences its times without any packet (longer than
	// SilenceMin); SessionLost why its session ended before the run, if it did.
	MediaLosses int            `json:"media_losses"`
	Resumes     []ResumeResult `json:"resumes,omitempty"`
	Silences    []Silence      `json:"silences,omitempty"`
	// TrackGaps are the times one of its tracks received nothing for longer than SilenceMin
	// (video frozen while audio plays is one), over all its tracks.
	TrackGaps   []Silence `json:"track_gaps,omitempty"`
	SessionLost string    `json:"session_lost,omitempty"`
	Error       string    `json:"error,omitempty"`
	// Video is, with Simulcast, each received video producer's layer over time; Media all its
	// tracks together, second by second.
	Video []VideoResult `json:"video,omitempty"`
	Media []MediaSecond `json:"media,omitempty"`
}

// OK tells whether the run succeeded: every bot joined, every subscriber received every track
// of its room by the end of the join phase, no subscriber stalled for longer than the run's
// MaxStall, and every subscriber that lost its media received it again.
func (r *Report) OK() bool {
	return r.Failed == 0 && r.NoMedia == 0 && r.Joined == r.Publishers+r.Subscribers && len(r.MissingTracks) == 0 &&
		len(r.OverMaxStall) == 0 && len(r.NotRecovered) == 0 && len(r.OfferFailed) == 0
}

// Problems says in one line per kind what made the run fail (empty when OK).
func (r *Report) Problems() []string {
	var out []string
	if r.Failed > 0 || r.Joined != r.Publishers+r.Subscribers {
		out = append(out, fmt.Sprintf("%d of %d bots failed to join", r.Publishers+r.Subscribers-r.Joined, r.Publishers+r.Subscribers))
	}
	if r.NoMedia > 0 {
		out = append(out, fmt.Sprintf("%d subscribers received no media", r.NoMedia))
	}
	if n := len(r.MissingTracks); n > 0 {
		out = append(out, fmt.Sprintf("%d subscribers lacked a track at the end of the join phase:", n))
		out = appendNamed(out, r.MissingTracks)
	}
	if n := len(r.OverMaxStall); n > 0 {
		out = append(out, fmt.Sprintf("%d stalls longer than --max-stall %s:", n, time.Duration(r.MaxStallMs*float64(time.Millisecond))))
		out = appendNamed(out, r.OverMaxStall)
	}
	if n := len(r.NotRecovered); n > 0 {
		out = append(out, fmt.Sprintf("%d subscribers never received media again:", n))
		out = appendNamed(out, r.NotRecovered)
	}
	if n := len(r.OfferFailed); n > 0 {
		out = append(out, fmt.Sprintf("%d subscribers failed to apply an offer:", n))
		out = appendNamed(out, r.OfferFailed)
	}
	return out
}

// appendNamed appends the first 20 of named to out, indented, and how many more there are.
func appendNamed(out, named []string) []string {
	for i, s := range named {
		if i == 20 {
			return append(out, fmt.Sprintf("  ... %d more (see the JSON report)", len(named)-20))
		}
		out = append(out, "  "+s)
	}
	return out
}

// WriteJSON writes the report to a file.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteSummary prints the summary table.
func (r *Report) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprint(v...)) }
	ms := func(p Percentiles) string {
		return fmt.Sprintf("p50 %.2f  p95 %.2f  p99 %.2f  max %.2f", p.P50, p.P95, p.P99, p.Max)
	}
	row("bots", fmt.Sprintf("%d publishers, %d subscribers in %d room(s), %s, run %s", r.Publishers, r.Subscribers, r.Rooms,
		time.Duration(r.DurationSec*float64(time.Second)).Round(time.Second), r.RunID))
	row("joined", fmt.Sprintf("%d (failed %d)", r.Joined, r.Failed))
	row("join ms", ms(r.JoinMs))
	row("latency ms", ms(r.LatencyMs))
	row("tracks", fmt.Sprintf("%d of %d expected", r.TracksReceived, r.TracksExpected))
	for i, m := range r.MissingTracks {
		if i == 10 {
			row("", fmt.Sprintf("... %d more subscribers lacking a track", len(r.MissingTracks)-10))
			break
		}
		row("missing", m)
	}
	if r.Redirected > 0 {
		row("redirected", fmt.Sprintf("%d subscribers served by another node than the one they were sent to", r.Redirected))
	}
	row("packets", fmt.Sprintf("%d received, %d lost (%.3f%%)", r.PacketsReceived, r.PacketsLost, r.LossPct))
	row("recv kbps", fmt.Sprintf("%.0f per subscriber", r.RecvKbps))
	if r.NoMedia > 0 {
		row("no media", r.NoMedia)
	}
	row("stalls", fmt.Sprintf("%d in %d subscribers, longest %.1f s, %.2f%% of subscriber-seconds without media",
		r.Stalls, r.StalledSubscribers, r.LongestStallMs/1000, r.StalledPct))
	if r.Resumes > 0 || len(r.NotRecovered) > 0 {
		row("resumes", fmt.Sprintf("%d in %d subscribers (%d joined afresh), loss to first packet ms %s, %d never received media again",
			r.Resumes, r.ResumedSubscribers, r.FreshJoins, ms(r.RecoveryMs), len(r.NotRecovered)))
	}
	for _, l := range r.layerRows() {
		row(l[0], l[1])
	}
	if len(r.Nodes) > 1 {
		for _, n := range r.Nodes {
			row("  "+n.URL, fmt.Sprintf("%d subscribers, latency p50 %.2f p99 %.2f ms, join p50 %.1f ms, loss %.3f%%, stalls %d in %d subscribers (%.2f%% without media)",
				n.Subscribers, n.LatencyMs.P50, n.LatencyMs.P99, n.JoinMs.P50, n.LossPct, n.Stalls, n.StalledSubscribers, n.StalledPct))
		}
	}
	for i, s := range r.NotRecovered {
		if i == 10 {
			row("", fmt.Sprintf("... %d more subscribers without media again", len(r.NotRecovered)-10))
			break
		}
		row("lost", s)
	}
	for i, s := range r.OverMaxStall {
		if i == 10 {
			row("", fmt.Sprintf("... %d more stalls over --max-stall", len(r.OverMaxStall)-10))
			break
		}
		row("stall", s)
	}
	for i, e := range r.Errors {
		if i == 10 {
			row("", fmt.Sprintf("... %d more errors", len(r.Errors)-10))
			break
		}
		row("error", e)
	}
	_ = tw.Flush()
}
