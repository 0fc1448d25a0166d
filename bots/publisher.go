package bots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cascade-sfu/cascade/bots/media"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
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
// goroutines stop with mediaCtx.
func (r *run) publish(ctx, mediaCtx context.Context, name, url, room string) (*client.Client, error) {
	tok, err := r.token(room, name, true, false)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(ctx, url, client.Options{Token: tok, NoAutoSubscribe: true, LoopbackOnly: r.o.LoopbackOnly})
	if err != nil {
		return nil, fmt.Errorf("%s: join %s: %w", name, url, err)
	}
	type src struct {
		track *webrtc.TrackLocalStaticRTP
		log   *sendLog
		loop  func(context.Context, *webrtc.TrackLocalStaticRTP, *sendLog)
	}
	var srcs []src
	if r.o.Video {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", name)
		if err != nil {
			c.Abort()
			return nil, err
		}
		srcs = append(srcs, src{t, newSendLog(videoStep), loopVideo})
	}
	if r.o.Audio {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", name)
		if err != nil {
			c.Abort()
			return nil, err
		}
		srcs = append(srcs, src{t, newSendLog(audioStep), loopAudio})
	}
	tracks := make([]webrtc.TrackLocal, len(srcs))
	for i, s := range srcs {
		tracks[i] = s.track
	}
	res, err := c.Publish(ctx, tracks...)
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("%s: publish: %w", name, err)
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
	return c, nil
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

// loopVideo sends the VP8 clip in a loop at 30 frames per second, paced by frame count.
func loopVideo(ctx context.Context, track *webrtc.TrackLocalStaticRTP, log *sendLog) {
	pk := rtp.NewPacketizer(mtu, 96, 0, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	start := time.Now()
	for frame := 0; ; {
		rd, _, err := ivfreader.NewWith(bytes.NewReader(media.VideoIVF))
		if err != nil {
			return
		}
		for {
			payload, _, err := rd.ParseNextFrame()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			if !pace(ctx, start, frame, time.Second/videoFPS) {
				return
			}
			frame++
			pkts := pk.Packetize(payload, videoStep)
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
