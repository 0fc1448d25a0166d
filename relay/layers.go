package relay

import "github.com/cascade-sfu/cascade/node"

// Dynacast across the relay tree (node/dynacast.go): an edge tells the parent of each pipe in
// which layers of the producer it needs (its consumers' and its own children's), and the parent's
// relay sink towards it carries only those. The demand travels as a PipeRequest naming the pipe
// (producer and SSRC) with Demand set, authenticated like every relay control message; a
// demand that names no pipe of its sender changes nothing, and the worst a member node can
// demand is every layer, which is what a pipe carries before any demand.

// LayerDemand sends this node's demand for the layers of a producer piped here to the pipe's
// parent (node.LayerDemand). It never blocks on the network.
func (ps *Pipes) LayerDemand(p *node.Producer, layers uint8) {
	ps.mu.Lock()
	in := ps.in[p.ID()]
	ps.mu.Unlock()
	if in == nil || ps.sig == nil || layers == 0 {
		return
	}
	ps.sig.Layers(in.parent, PipeRequest{Room: p.Room().Name(), Producer: p.ID(), From: ps.o.Self, SSRC: in.ssrc, Demand: layers})
}

// ServeLayers applies a child's demand to the relay sink towards it: the pipe its request names
// (by SSRC, so a demand that overtook a new pipe request leaves the new pipe alone): the relay
// sinks of the layers demanded are open, the others gated (node.Consumer.Gate: a gated sink
// costs the fan-out nothing per packet). A layer opened is asked for a keyframe, which the
// child's consumers wait for.
func (ps *Pipes) ServeLayers(req PipeRequest) {
	ps.mu.Lock()
	o := ps.out[outKey{req.From, req.Producer}]
	ps.mu.Unlock()
	if o == nil || o.ssrc != req.SSRC || req.Demand == 0 {
		ps.StrayDemands.Add(1) // a pipe that just ended, or a demand of nothing: no effect
		return
	}
	o.setLayers(demanded(req.Demand))
}

// demanded is the mask of the layers a child's demand names (0, or only bits past
// node.AllLayers: every layer, what a pipe carries before any demand).
func demanded(layers uint8) uint32 {
	if layers &= node.AllLayers; layers == 0 {
		layers = node.AllLayers
	}
	return uint32(layers)
}

// PipeLayers is the mask of the layers of producer this node relays to child (false: no such
// pipe).
func (ps *Pipes) PipeLayers(child, producer string) (uint8, bool) {
	ps.mu.Lock()
	o := ps.out[outKey{child, producer}]
	ps.mu.Unlock()
	if o == nil {
		return 0, false
	}
	var m uint8
	for l, c := range o.sinks {
		if !c.Gated() {
			m |= 1 << l
		}
	}
	return m, true
}
