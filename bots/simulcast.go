package bots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/bots/media"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// A simulcast publisher (Options.Simulcast) sends the clip's three layers (media.Layers) as one
// video track, frame by frame in step: every layer's frame of one tick has the same RTP
// timestamp, as a browser's encodings of one captured frame have, so the latency log serves
// whatever layer a subscriber receives. A keyframe request names its layer by SSRC; a layer
// the node says nobody wants (layersWanted, dynacast) is not sent until wanted again, and then
// resumes at a keyframe.

// videoControl is what the node asks of a publisher's video: keyframes, and with simulcast which
// layers to send.
type videoControl struct {
	layers   atomic.Pointer[[]*client.SimulcastLayer] // nil: not simulcast
	producer atomic.Pointer[string]
	keyframe [proto.MaxLayers]atomic.Bool // requested, per layer (0 without simulcast)
	paused   [proto.MaxLayers]atomic.Bool // layersWanted said false
}

// onRTCP records the keyframe requests (PLI, FIR) among pkts.
func (v *videoControl) onRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			v.request(p.MediaSSRC)
		case *rtcp.FullIntraRequest:
			for _, e := range p.FIR {
				v.request(e.SSRC)
			}
		}
	}
}

// request asks for a keyframe of the layer sent on ssrc (every layer when none is: the
// request is for a track without layers, or names no SSRC the publisher knows).
func (v *videoControl) request(ssrc uint32) {
	if ls := v.layers.Load(); ls != nil {
		for i, l := range *ls {
			if l.SSRC() == ssrc {
				v.keyframe[i].Store(true)
				return
			}
		}
	}
	for i := range v.keyframe {
		v.keyframe[i].Store(true)
	}
}

// onLayersWanted pauses and resumes layers as the node asks (dynacast).
func (v *videoControl) onLayersWanted(d proto.LayersWantedData) {
	ls, id := v.layers.Load(), v.producer.Load()
	if ls == nil || id == nil || *id != d.Producer {
		return
	}
	for i, l := range *ls {
		want, named := d.Layers[l.RID()]
		if !named {
			continue
		}
		if was := v.paused[i].Swap(!want); was && want {
			v.keyframe[i].Store(true) // a resumed layer starts decodable
		}
	}
}

// publishSimulcast publishes the simulcast video track of publisher name on c and starts its
// loop (until mediaCtx ends).
func (r *run) publishSimulcast(ctx, mediaCtx context.Context, c *client.Client, name string, vc *videoControl) error {
	clips := media.Layers()
	frames := make([][]clipFrame, len(clips))
	layers := make([]*client.SimulcastLayer, len(clips))
	for i, l := range clips {
		var err error
		if frames[i], err = ivfFrames(l.IVF); err != nil {
			return fmt.Errorf("layer %s: %w", l.Rid, err)
		}
		if layers[i], err = client.NewSimulcastLayer(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", name, l.Rid); err != nil {
			return err
		}
	}
	vc.layers.Store(&layers)
	res, err := c.PublishSimulcast(ctx, layers...)
	if err != nil {
		return fmt.Errorf("%s: publish simulcast: %w", name, err)
	}
	log := newSendLog(videoStep)
	for _, p := range res.Producers {
		if p.Kind == webrtc.RTPCodecTypeVideo.String() {
			id := p.ID
			vc.producer.Store(&id)
			r.logs.add(p.ID, log)
		}
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		loopSimulcast(mediaCtx, layers, frames, log, vc)
	}()
	return nil
}

// loopSimulcast sends the layers' clips in a loop at 30 frames per second, all layers of one
// tick with the same timestamp; each layer jumps to its next keyframe when one is requested.
func loopSimulcast(ctx context.Context, layers []*client.SimulcastLayer, frames [][]clipFrame, log *sendLog, vc *videoControl) {
	pks := make([]rtp.Packetizer, len(layers))
	for i := range layers {
		pks[i] = rtp.NewPacketizer(mtu, 96, 0, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	}
	pos := make([]int, len(layers))
	ts := rand.Uint32() //nolint:gosec // an RTP timestamp base
	start := time.Now()
	for frame := 0; ; frame, ts = frame+1, ts+videoStep {
		if !pace(ctx, start, frame, time.Second/videoFPS) {
			return
		}
		log.sent(ts, time.Now())
		for i, l := range layers {
			f := frames[i]
			if vc.paused[i].Load() {
				pos[i] = (pos[i] + 1) % len(f)
				continue
			}
			if vc.keyframe[i].Swap(false) {
				pos[i] = nextKeyframe(f, pos[i])
			}
			for _, p := range pks[i].Packetize(f[pos[i]].data, videoStep) {
				p.Timestamp = ts
				if err := l.WriteRTP(p); err != nil {
					return
				}
			}
			pos[i] = (pos[i] + 1) % len(f)
		}
	}
}

// ivfFrames reads a VP8 clip's frames.
func ivfFrames(ivf []byte) ([]clipFrame, error) {
	rd, _, err := ivfreader.NewWith(bytes.NewReader(ivf))
	if err != nil {
		return nil, err
	}
	var frames []clipFrame
	for {
		payload, _, err := rd.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		// VP8 frame tag (RFC 6386 9.1): bit 0 of the first byte is 0 for a keyframe.
		frames = append(frames, clipFrame{data: payload, key: len(payload) > 0 && payload[0]&1 == 0})
	}
	if len(frames) == 0 || !frames[0].key {
		return nil, errors.New("video clip: empty or not starting with a keyframe")
	}
	return frames, nil
}
