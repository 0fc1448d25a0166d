package bots

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// subscriber is one receiving bot and what it measured.
type subscriber struct {
	name, room string
	// asked is the node the subscriber was sent to; url the node that serves it (after a
	// redirect, the node it was redirected to).
	asked, url string
	run        *run
	c          *client.Client
	// expect is how many tracks the run's publishers published in the room (all before it
	// joined); atJoin how many of them it had received by the end of the join phase.
	expect, atJoin int

	start    time.Time    // join request sent
	joinedAt time.Time    // join answered (set before joined)
	firstAt  atomic.Int64 // unix nanos of the first media packet (0: none yet)
	joined   atomic.Bool
	err      atomic.Pointer[string]

	mu     sync.Mutex
	tracks map[string]*trackStats // by producer id
	// readers are the track read loops started, resumes the session's moves (resume.go).
	readers []*reader
	resumes []client.Resume
	// silence is the subscriber's media as a whole: its gaps are when no track delivered.
	silence trackGaps
	// offerErrs are the offers its receive transport could not apply (client.NoteOfferFailed).
	offerErrs []string
}

// trackStats is one received producer's stream; its read loops write it (under the
// subscriber's mu). A resumed session receives the producer again on a new track (a
// migration: for a moment on two): each read loop numbers its own packets (a seqRun).
type trackStats struct {
	packets  int64
	bytes    int64
	runs     []*seqRun
	latency  []latencySample
	bytesSec []int64 // bytes received in each second of the run
	pktsSec  []int64 // packets received in each second of the run
	lostSec  []int64 // packets missing by sequence number, counted in the second of the next packet
	padSec   []int64 // bytes of padding-only packets (the node's bandwidth probes), of bytesSec
	// video is the layer record of a video track with Options.Simulcast (layers.go), else nil.
	video *videoLog
	gaps  trackGaps
	brief trackGaps // its gaps longer than SilenceMin
	// removed is when the node said the track's producer left the room (unix nanos, 0: not):
	// the end of a producer of another run, whose sending this run cannot see.
	removed int64
}

type latencySample struct {
	sec uint16
	ms  float32
}

func (r *run) subscribe(ctx context.Context, name, url, region, room string) *subscriber {
	r.mu.Lock()
	expect := r.published[room]
	r.mu.Unlock()
	s := &subscriber{name: name, asked: url, url: url, room: room, run: r, expect: expect, tracks: make(map[string]*trackStats)}
	tok, err := r.token(room, name, false, true)
	if err != nil {
		s.fail(err)
		return s
	}
	s.start = time.Now()
	c, err := client.Dial(ctx, url, client.Options{Token: tok, LoopbackOnly: r.o.LoopbackOnly, Lean: true, NoRedirect: r.o.NoRedirect, Region: region,
		OnTrack: s.onTrack, OnNotification: s.onNotification, OnLayerChanged: s.onLayerChanged, NetworkTypes: r.o.subscriberNetworks(),
		ICETransportPolicy: r.o.subscriberPolicy(), Resume: !r.o.NoResume, ResumeURLs: r.o.URLs, OnResume: s.onResume})
	if err != nil {
		s.fail(fmt.Errorf("%s: join %s: %w", name, url, err))
		return s
	}
	s.c = c
	s.url = c.URL
	s.joinedAt = time.Now()
	s.joined.Store(true)
	return s
}

// subscriberPolicy is the subscribers' ICE transport policy: relay with SubscriberRelay.
func (o Options) subscriberPolicy() webrtc.ICETransportPolicy {
	if o.SubscriberRelay {
		return webrtc.ICETransportPolicyRelay
	}
	return webrtc.ICETransportPolicyAll
}

// received is how many tracks of the run's publishers have delivered at least one packet
// (tracks of another run's publishers in the room do not count).
func (s *subscriber) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, t := range s.tracks {
		if t.packets > 0 && s.run.logs.get(id) != nil {
			n++
		}
	}
	return n
}

// onNotification records when a received track's producer left the room, and the offers the
// receive transport could not apply.
func (s *subscriber) onNotification(method string, data json.RawMessage) {
	if method == client.NoteOfferFailed {
		var msg string
		_ = json.Unmarshal(data, &msg)
		s.mu.Lock()
		s.offerErrs = append(s.offerErrs, fmt.Sprintf("t=%.1f s: %s", time.Since(s.run.start).Seconds(), msg))
		s.mu.Unlock()
		return
	}
	if method != proto.MethodProducerRemoved {
		return
	}
	var d proto.ProducerRemoved
	if json.Unmarshal(data, &d) != nil {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	if t := s.tracks[d.ID]; t != nil && t.removed == 0 {
		t.removed = now
	}
	s.mu.Unlock()
}

// onLayerChanged records the layer the node says the subscriber now receives of a producer.
func (s *subscriber) onLayerChanged(d proto.LayerChangedData) {
	if !s.run.o.Simulcast {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tracks[d.Producer]
	if ts == nil { // the notification before the track's first packet
		ts = &trackStats{}
		s.tracks[d.Producer] = ts
	}
	if ts.video == nil {
		ts.video = newVideoLog()
	}
	ts.video.notified(now, runSecond(s.run.start, now), d)
}

func (s *subscriber) fail(err error) {
	msg := err.Error()
	s.err.Store(&msg)
}

func (s *subscriber) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	// A track's id is its producer's: after a resume the producer's new track goes on
	// counting in the same stats.
	rd := &reader{started: time.Now().UnixNano()}
	sr := &seqRun{}
	s.mu.Lock()
	ts := s.tracks[tr.ID()]
	if ts == nil {
		ts = &trackStats{}
		s.tracks[tr.ID()] = ts
	}
	ts.runs = append(ts.runs, sr)
	s.readers = append(s.readers, rd)
	if s.run.o.Simulcast && tr.Kind() == webrtc.RTPCodecTypeVideo && ts.video == nil {
		ts.video = newVideoLog()
	}
	s.mu.Unlock()
	runStart := s.run.start
	var log *sendLog
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if n < 12 {
			continue
		}
		seq := uint16(buf[2])<<8 | uint16(buf[3])
		rtpTS := uint32(buf[4])<<24 | uint32(buf[5])<<16 | uint32(buf[6])<<8 | uint32(buf[7])
		s.firstAt.CompareAndSwap(0, now.UnixNano())
		rd.first.CompareAndSwap(0, now.UnixNano())
		if log == nil {
			log = s.run.logs.get(tr.ID())
		}
		sec := int(now.Sub(runStart) / time.Second)
		s.mu.Lock()
		ts.packets++
		ts.bytes += int64(n)
		ts.gaps.packet(now.UnixNano())
		ts.brief.packetAfter(now.UnixNano(), SilenceMin)
		s.silence.packetAfter(now.UnixNano(), SilenceMin)
		sr.packets++
		started, prevMax := sr.started, sr.maxSeq
		ext := sr.extend(seq)
		if ext > sr.maxSeq {
			sr.maxSeq = ext
		}
		var lost int64 // by this packet's sequence number: missing before it, or one late (-1)
		if started {
			lost = max(ext-prevMax-1, -1)
		}
		for len(ts.bytesSec) <= sec {
			ts.bytesSec = append(ts.bytesSec, 0)
			ts.pktsSec = append(ts.pktsSec, 0)
			ts.lostSec = append(ts.lostSec, 0)
			ts.padSec = append(ts.padSec, 0)
		}
		ts.bytesSec[sec] += int64(n)
		ts.pktsSec[sec]++
		ts.lostSec[sec] += lost
		if buf[0]&0x20 != 0 && paddingOnly(buf[:n]) {
			ts.padSec[sec] += int64(n)
		}
		if ts.video != nil {
			ts.video.packet(now.UnixNano(), sec, buf[:n], lost)
		}
		if log != nil {
			if at, ok := log.when(rtpTS); ok {
				ts.latency = append(ts.latency, latencySample{sec: uint16(sec), ms: float32(now.UnixNano()-at) / 1e6})
			}
		}
		s.mu.Unlock()
	}
}

// seqRun is the sequence numbers of one track read loop.
type seqRun struct {
	packets  int64
	firstSeq int64 // extended
	maxSeq   int64 // extended
	seqBase  uint16
	started  bool
}

// extend turns a 16-bit sequence number into a monotonic one relative to the first packet.
func (t *seqRun) extend(seq uint16) int64 {
	if !t.started {
		t.started = true
		t.seqBase = seq
		t.firstSeq, t.maxSeq = 0, 0
		return 0
	}
	// Nearest extended value to maxSeq with these low 16 bits.
	ref := t.maxSeq + int64(t.seqBase)
	cand := (ref &^ 0xffff) | int64(seq)
	switch {
	case cand-ref > 1<<15:
		cand -= 1 << 16
	case ref-cand > 1<<15:
		cand += 1 << 16
	}
	return cand - int64(t.seqBase)
}

// lost is how many packets never arrived between the first and the highest sequence number
// of each read loop (what a resume's silence misses is in the stalls, not here).
func (t *trackStats) lost() int64 {
	var n int64
	for _, r := range t.runs {
		if r.started {
			if l := r.maxSeq - r.firstSeq + 1 - r.packets; l > 0 {
				n += l
			}
		}
	}
	return n
}

// subscriberNetworks are the subscribers' candidate networks: SubscriberNetworks, else Networks.
func (o Options) subscriberNetworks() []webrtc.NetworkType {
	if o.SubscriberNetworks != nil {
		return o.SubscriberNetworks
	}
	return o.Networks
}
