package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Simulcast (PROTOCOL.md, "Simulcast, bandwidth and speakers"): one video track sent as up to
// proto.MaxLayers RTP streams, one per rid, in one media section (RFC 8853). pion declares the
// rids in the offer but writes no mid or rid header extension, and the node learns which stream
// is which layer only from them (the SSRCs of a simulcast section are not in the SDP): each
// SimulcastLayer stamps both on every packet it writes, as browsers do.

// ErrSimulcastLayers is returned by PublishSimulcast for no layers, more than proto.MaxLayers,
// or layers that do not share one track (the same id, stream id and kind, distinct rids).
var ErrSimulcastLayers = errors.New("simulcast: want 1 to 3 layers of one track, each with its own rid")

// SimulcastLayer is one layer (rid) of a simulcast track: a TrackLocalStaticRTP that adds the
// negotiated mid and rid header extensions to each packet written with WriteRTP.
type SimulcastLayer struct {
	*webrtc.TrackLocalStaticRTP
	tr    atomic.Pointer[webrtc.RTPTransceiver] // set before the send transport binds the layer
	bound atomic.Pointer[layerBinding]
}

// layerBinding is what a layer learnt when the send transport bound it.
type layerBinding struct {
	midID, ridID uint8
	mid          []byte
	ssrc         uint32
}

// NewSimulcastLayer makes layer rid of the video track id in stream streamID. Every layer of one
// track has the same id and streamID.
func NewSimulcastLayer(codec webrtc.RTPCodecCapability, id, streamID, rid string) (*SimulcastLayer, error) {
	if rid == "" {
		return nil, ErrSimulcastLayers
	}
	t, err := webrtc.NewTrackLocalStaticRTP(codec, id, streamID, webrtc.WithRTPStreamID(rid))
	if err != nil {
		return nil, err
	}
	return &SimulcastLayer{TrackLocalStaticRTP: t}, nil
}

// Bind is called by the send transport when it starts sending (webrtc.TrackLocal): the layer
// records the negotiated extension ids, its media section's mid and its SSRC.
func (l *SimulcastLayer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := l.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	b := &layerBinding{ssrc: uint32(ctx.SSRC())}
	if tr := l.tr.Load(); tr != nil {
		b.mid = []byte(tr.Mid())
	}
	for _, e := range ctx.HeaderExtensions() {
		switch e.URI {
		case sdp.SDESMidURI:
			b.midID = uint8(e.ID) //nolint:gosec // one-byte extension ids are 1..14
		case sdp.SDESRTPStreamIDURI:
			b.ridID = uint8(e.ID) //nolint:gosec
		}
	}
	l.bound.Store(b)
	return codec, nil
}

// WriteRTP sends p on the layer's stream, with the mid and rid header extensions added to p.
func (l *SimulcastLayer) WriteRTP(p *rtp.Packet) error {
	if b := l.bound.Load(); b != nil {
		if b.midID != 0 && len(b.mid) > 0 {
			if err := p.Header.SetExtension(b.midID, b.mid); err != nil {
				return err
			}
		}
		if b.ridID != 0 {
			if err := p.Header.SetExtension(b.ridID, []byte(l.RID())); err != nil {
				return err
			}
		}
	}
	return l.TrackLocalStaticRTP.WriteRTP(p)
}

// SSRC is the layer's SSRC once the send transport bound it (0 before): a keyframe request
// (PLI, FIR) from the node names the layer it wants by it.
func (l *SimulcastLayer) SSRC() uint32 {
	if b := l.bound.Load(); b != nil {
		return b.ssrc
	}
	return 0
}

// checkLayers checks that layers can be one simulcast track.
func checkLayers(layers []*SimulcastLayer) error {
	if len(layers) == 0 || len(layers) > proto.MaxLayers {
		return ErrSimulcastLayers
	}
	seen := map[string]bool{}
	for _, l := range layers {
		if l == nil || seen[l.RID()] || l.ID() != layers[0].ID() || l.StreamID() != layers[0].StreamID() || l.Kind() != webrtc.RTPCodecTypeVideo {
			return ErrSimulcastLayers
		}
		seen[l.RID()] = true
	}
	return nil
}

// PublishSimulcast publishes one video track as simulcast layers, lowest quality first (the
// order of the producer's layers), and negotiates the send transport as Publish does. The
// caller writes each layer's packets with its WriteRTP. With Options.Resume a resumed session
// publishes the layers again under the same producer id.
func (c *Client) PublishSimulcast(ctx context.Context, layers ...*SimulcastLayer) (proto.PublishResult, error) {
	if err := checkLayers(layers); err != nil {
		return proto.PublishResult{}, err
	}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	l := c.current()
	if l == nil {
		return proto.PublishResult{}, ErrClosed
	}
	pt := pubTrack{track: layers[0], layers: layers}
	res, mids, err := l.publish(ctx, []pubTrack{pt}, nil)
	if err != nil {
		return res, err
	}
	c.published = true
	pt.id = producerOf(res, mids[0])
	c.pubs = append(c.pubs, pt)
	return res, nil
}

// addTransceiver adds t to pc, sendonly: one encoding, or one per layer of a simulcast track.
func addTransceiver(pc *webrtc.PeerConnection, t pubTrack) (*webrtc.RTPTransceiver, error) {
	tr, err := pc.AddTransceiverFromTrack(t.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	for i, layer := range t.layers {
		layer.tr.Store(tr)
		if i == 0 {
			continue // the transceiver's own track
		}
		if err := tr.Sender().AddEncoding(layer); err != nil {
			return nil, fmt.Errorf("simulcast layer %s: %w", layer.RID(), err)
		}
	}
	return tr, nil
}

// SetPreferredLayer asks the node for at most pref of a producer (setPreferredLayer): a layer
// number (nil: no limit by number) and the size of the view showing it (0: no limit).
func (c *Client) SetPreferredLayer(ctx context.Context, producer string, layer *int, maxWidth, maxHeight int) error {
	return c.Request(ctx, proto.MethodSetPreferredLayer, proto.PreferredLayerData{Producer: producer, Layer: layer,
		MaxWidth: maxWidth, MaxHeight: maxHeight}, nil)
}

// onMediaNote calls the media callbacks of Options for a notification, if it is one of theirs.
func (c *Client) onMediaNote(method string, raw json.RawMessage) {
	switch method {
	case proto.MethodLayerChanged:
		var d proto.LayerChangedData
		if c.o.OnLayerChanged != nil && json.Unmarshal(raw, &d) == nil {
			c.o.OnLayerChanged(d)
		}
	case proto.MethodLayersWanted:
		var d proto.LayersWantedData
		if c.o.OnLayersWanted != nil && json.Unmarshal(raw, &d) == nil {
			c.o.OnLayersWanted(d)
		}
	case proto.MethodActiveSpeakers:
		var d proto.ActiveSpeakersData
		if c.o.OnActiveSpeakers != nil && json.Unmarshal(raw, &d) == nil {
			c.o.OnActiveSpeakers(d)
		}
	}
}
