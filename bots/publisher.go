package bots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/bots/media"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

const (
	videoFPS     = 30
	videoStep    = 90000 / videoFPS // RTP ticks per frame
	audioStep    = 960              // 20 ms at 48 kHz
	mtu          = 1200
	audioPageDur = 20 * time.Millisecond
)

// publish joins a publisher bot (bounded by ctx) and starts looping the clips; the media
// goroutines stop with mediaCtx. It returns the client and how many tracks it published.
func (r *run) publish(ctx, mediaCtx context.Context, name, url, room string) (*client.Client, int, error) {
	tok, err := r.token(room, name, true, false)
	if err != nil {
		return nil, 0, err
	}
	// A keyframe request (PLI or FIR) from the node makes the video loop send the clip's next
	// keyframe at once, as a real encoder would, so a subscriber that joins, resumes or switches
	// decodes without waiting for the clip's own keyframe.
	// With simulcast, the request names its layer (simulcast.go).
	vc := &videoControl{}
	c, err := client.Dial(ctx, url, client.Options{Token: tok, NoAutoSubscribe: true, LoopbackOnly: r.o.LoopbackOnly,
		NoRedirect: r.o.NoRedirect, Region: r.o.region(0), OnPublisherRTCP: vc.onRTCP, OnLayersWanted: vc.onLayersWanted, NetworkTypes: r.o.Networks,
		Resume: !r.o.NoResume, ResumeURLs: r.o.URLs, OnResume: r.onPublisherResume(name)})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: join %s: %w", name, url, err)
	}
	type src struct {
		track *webrtc.TrackLocalStaticRTP
		log   *sendLog
		loop  func(context.Context, *webrtc.TrackLocalStaticRTP, *sendLog)
	}
	video := func(ctx context.Context, t *webrtc.TrackLocalStaticRTP, l *sendLog) {
		loopVideo(ctx, t, l, &vc.keyframe[0])
	}
	var srcs []src
	if r.o.Video && !r.o.Simulcast {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", name)
		if err != nil {
			c.Abort()
			return nil, 0, err
		}
		srcs = append(srcs, src{t, newSendLog(videoStep), video})
	}
	if r.o.Audio {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", name)
		if err != nil {
			c.Abort()
			return nil, 0, err
		}
		srcs = append(srcs, src{t, newSendLog(audioStep), loopAudio})
	}
	tracks := make([]webrtc.TrackLocal, len(srcs))
	for i, s := range srcs {
		tracks[i] = s.track
	}
	var res proto.PublishResult
	if len(tracks) > 0 {
		if res, err = c.Publish(ctx, tracks...); err != nil {
			c.Abort()
			return nil, 0, fmt.Errorf("%s: publish: %w", name, err)
		}
	}
	for _, s := range srcs {
		for _, p := range res.Producers {
			if p.Kind == s.track.Kind().String() {
				r.logs.add(p.ID, s.log)
			}
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			s.loop(mediaCtx, s.track, s.log)
		}()
	}
	if r.o.Video && r.o.Simulcast {
		if err := r.publishSimulcast(ctx, mediaCtx, c, name, vc); err != nil {
			c.Abort()
			return nil, 0, err
		}
		return c, len(srcs) + 1, nil
	}
	return c, len(srcs), nil
}

// pace sleeps until the i-th tick of period after start; it reports false when ctx ends.
func pace(ctx context.Context, start time.Time, i int, period time.Duration) bool {
	d := time.Until(start.Add(time.Duration(i) * period))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// clipFrame is one VP8 frame of the clip.
type clipFrame struct {
	data []byte
	key  bool
}

// videoClip reads the VP8 clip's frames.
func videoClip() ([]clipFrame, error) { return ivfFrames(media.VideoIVF) }

// nextKeyframe is the index of the first keyframe at or after i, wrapping around the loop.
func nextKeyframe(frames []clipFrame, i int) int {
	for n := range frames {
		if j := (i + n) % len(frames); frames[j].key {
			return j
		}
	}
	return 0
}

// loopVideo sends the VP8 clip in a loop at 30 frames per second, paced by frame count. When
// keyframe is set, the next frame sent is the clip's next keyframe.
func loopVideo(ctx context.Context, track *webrtc.TrackLocalStaticRTP, log *sendLog, keyframe *atomic.Bool) {
	frames, err := videoClip()
	if err != nil {
		return
	}
	pk := rtp.NewPacketizer(mtu, 96, 0, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	start := time.Now()
	for frame, i := 0, 0; ; frame, i = frame+1, (i+1)%len(frames) {
		if !pace(ctx, start, frame, time.Second/videoFPS) {
			return
		}
		if keyframe.Swap(false) {
			i = nextKeyframe(frames, i)
		}
		pkts := pk.Packetize(frames[i].data, videoStep)
		if len(pkts) == 0 {
			continue
		}
		log.sent(pkts[0].Timestamp, time.Now())
		for _, p := range pkts {
			if err := track.WriteRTP(p); err != nil {
				return
			}
		}
	}
}

// loopAudio sends the Opus clip in a loop, one page (20 ms) per packet.
func loopAudio(ctx context.Context, track *webrtc.TrackLocalStaticRTP, log *sendLog) {
	pk := rtp.NewPacketizer(mtu, 111, 0, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	start := time.Now()
	for page := 0; ; {
		rd, _, err := oggreader.NewWith(bytes.NewReader(media.AudioOgg))
		if err != nil {
			return
		}
		for {
			data, _, err := rd.ParseNextPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			if bytes.HasPrefix(data, []byte("OpusHead")) || bytes.HasPrefix(data, []byte("OpusTags")) {
				continue
			}
			if !pace(ctx, start, page, audioPageDur) {
				return
			}
			page++
			for _, p := range pk.Packetize(data, audioStep) {
				log.sent(p.Timestamp, time.Now())
				if err := track.WriteRTP(p); err != nil {
					return
				}
			}
		}
	}
}
