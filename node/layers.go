package node

import (
	"github.com/cascade-sfu/cascade/signal/proto"
)

// Simulcast layers and a subscriber's choice among them (issue 15). A simulcast producer has up
// to proto.MaxLayers layers, lowest quality first; each of its packets carries the number of its
// layer. A consumer forwards exactly one layer at a time, its target's, switching at a keyframe
// of the new layer through the keyframe-gated switch (switch.go). The target is the highest
// layer that fits both the subscriber's preference (LayerPref) and the subscriber's bandwidth
// estimate (the allocator, bwe*.go); audio is served first.

// LayerPref is the largest layer a subscriber wants of one producer (PROTOCOL.md
// "setPreferredLayer"): Layer (-1: no limit by number), MaxWidth/MaxHeight (0: no limit).
type LayerPref struct {
	Layer     int
	MaxWidth  int
	MaxHeight int
}

// NoLayerPref is the preference of a consumer that expressed none: the top layer.
var NoLayerPref = LayerPref{Layer: -1}

// SetPreferredLayer sets the subscriber's preference for one producer; it applies to its
// consumer of the producer now or from its subscription on. ErrNotFound: no such producer in
// the room. Stub: the simulcast helper implements it.
func (p *Participant) SetPreferredLayer(producerID string, pref LayerPref) error {
	if p.room.producer(producerID) == nil {
		return ErrNotFound
	}
	return nil
}

// Layers describes the producer's simulcast layers, lowest first (nil: not simulcast).
// Stub: the simulcast helper implements it.
func (p *Producer) Layers() []proto.Layer { return nil }

// SetTarget sets the layer the consumer should forward; the worker switches to it at its next
// keyframe (requested), and keeps forwarding the current layer until then. Stub.
func (c *Consumer) SetTarget(layer int) {}

// Layer is the layer the consumer forwards now (0 for a producer without layers). Stub.
func (c *Consumer) Layer() int { return 0 }

// MaxLayer is the highest layer the subscriber's preference allows of the consumer's producer
// (the allocator, bwe*.go, gives it at most this one). Stub: the top layer.
func (c *Consumer) MaxLayer() int { return len(c.producer.Layers()) - 1 }
