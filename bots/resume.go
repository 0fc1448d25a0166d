package bots

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
)

// Resumes and silences: what a subscriber saw of its node's loss (or of its publisher's). A
// bot resumes its session by default (client.Options.Resume); the report counts, per
// subscriber, the losses of media, the resumes, and the time from the loss's detection to the
// first packet after it, and fails a subscriber that never received media again.

// SilenceMin is the shortest silence of a subscriber (no packet on any track), or of one of
// its tracks, that the report lists: far above the packet interval (20 ms audio, 33 ms video),
// far below a stall.
const SilenceMin = 100 * time.Millisecond

// reader is one track read loop: when it started and its first packet (unix nanos).
type reader struct {
	started int64
	first   atomic.Int64
}

// ResumeResult is one move of a subscriber's session to another node.
type ResumeResult struct {
	// LostAtMs is when the bot found its node gone (or was told to migrate), ResumedAtMs when
	// the new node accepted it, FirstPacketAtMs when its first packet after that arrived (0:
	// none by the end of the run); Unix milliseconds.
	LostAtMs        int64 `json:"lost_at_ms"`
	ResumedAtMs     int64 `json:"resumed_at_ms"`
	FirstPacketAtMs int64 `json:"first_packet_at_ms"`
	// RecoveryMs runs from LostAtMs to FirstPacketAtMs (0 when no packet came).
	RecoveryMs float64 `json:"recovery_ms"`
	Attempts   int     `json:"attempts"`
	URL        string  `json:"url"`
	Fresh      bool    `json:"fresh,omitempty"`
	Migrated   bool    `json:"migrated,omitempty"`
	Reason     string  `json:"reason,omitempty"`
}

// Silence is a time during which a subscriber received nothing on any track for longer than
// SilenceMin (Unix milliseconds; ToMs is the end of the run when Recovered is false).
type Silence struct {
	FromMs    int64 `json:"from_ms"`
	ToMs      int64 `json:"to_ms"`
	Recovered bool  `json:"recovered"`
}

func (s *subscriber) onResume(r client.Resume) {
	s.mu.Lock()
	s.resumes = append(s.resumes, r)
	s.mu.Unlock()
}

// onPublisherResume records a publisher's resume as a run error when it had to join afresh
// (its producers then have new ids: its subscribers lose them), and tells OnPublisherResume.
func (r *run) onPublisherResume(name string) func(client.Resume) {
	return func(res client.Resume) {
		if res.Fresh {
			r.addError(fmt.Errorf("%s: resume refused, joined afresh as a new participant on %s", name, res.URL))
		}
		if r.o.OnPublisherResume != nil {
			r.o.OnPublisherResume(name, res)
		}
	}
}

// resumeResults are the subscriber's resumes with the first packet after each: the earliest
// of the read loops that started after the loss. s.mu is held.
func (s *subscriber) resumeResults() []ResumeResult {
	out := make([]ResumeResult, 0, len(s.resumes))
	for _, r := range s.resumes {
		lost := r.LostAt.UnixNano()
		var first int64
		for _, rd := range s.readers {
			if f := rd.first.Load(); rd.started >= lost && f != 0 && (first == 0 || f < first) {
				first = f
			}
		}
		rr := ResumeResult{LostAtMs: r.LostAt.UnixMilli(), ResumedAtMs: r.ResumedAt.UnixMilli(), Attempts: r.Attempts,
			URL: r.URL, Fresh: r.Fresh, Migrated: r.Migrated}
		if r.Err != nil {
			rr.Reason = r.Err.Error()
		}
		if first != 0 {
			rr.FirstPacketAtMs = first / 1e6
			rr.RecoveryMs = float64(first-lost) / 1e6
		}
		out = append(out, rr)
	}
	return out
}

// sessionLost tells why the subscriber's session ended before the run did (its node went and
// it could not resume, or resume was off), "" if it did not.
func (s *subscriber) sessionLost() string {
	if s.c == nil {
		return ""
	}
	select {
	case <-s.c.Done():
	default:
		return ""
	}
	if err := s.c.Err(); err != nil && !errors.Is(err, client.ErrClosed) {
		return err.Error()
	}
	return ""
}

// silences lists g's gaps longer than SilenceMin up to end, the trailing one included.
func silences(g *trackGaps, end int64) []Silence {
	var out []Silence
	for _, x := range g.gaps {
		out = append(out, Silence{FromMs: x.from / 1e6, ToMs: x.to / 1e6, Recovered: true})
	}
	if last := g.last; last != 0 && time.Duration(end-last) > SilenceMin {
		out = append(out, Silence{FromMs: last / 1e6, ToMs: end / 1e6})
	}
	return out
}

// addResumes adds the subscriber's resumes and losses to its result and the report: b's
// resumes, the recovery times, and a subscriber that never received media again is named in
// NotRecovered. s.mu is held.
func (rep *Report) addResumes(s *subscriber, b *BotResult, end int64, recoveries *[]float64) {
	b.Resumes = s.resumeResults()
	b.Silences = silences(&s.silence, end)
	for _, t := range s.tracks {
		b.TrackGaps = append(b.TrackGaps, silences(&t.brief, end)...)
	}
	lost := s.sessionLost()
	b.MediaLosses = len(b.Resumes)
	if lost != "" {
		b.MediaLosses++
		b.SessionLost = lost
		rep.NotRecovered = append(rep.NotRecovered, fmt.Sprintf("%s on %s: session lost, not resumed (%s)", s.name, s.url, lost))
	}
	if n := len(b.Resumes); n > 0 {
		rep.ResumedSubscribers++
		b.URL = b.Resumes[n-1].URL // the node serving it at the end
	}
	for _, r := range b.Resumes {
		rep.Resumes++
		if r.Fresh {
			rep.FreshJoins++
		}
		if r.FirstPacketAtMs == 0 {
			if lost == "" {
				rep.NotRecovered = append(rep.NotRecovered, fmt.Sprintf("%s: resumed on %s but received no media after", s.name, r.URL))
			}
			continue
		}
		*recoveries = append(*recoveries, r.RecoveryMs)
	}
}
