package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// Simulcast layers and a subscriber's choice among them (issue 15). A simulcast producer has up
// to proto.MaxLayers layers, lowest quality first (the order of the offer's a=simulcast send
// list, simulcast.go); each of its packets carries the number of its layer (packet.layer). A
// consumer forwards exactly one layer at a time, its target's, switching at a keyframe of the
// new layer through the keyframe-gated switch (switch.go). The target is the highest layer
// that fits both the subscriber's preference (LayerPref) and the subscriber's bandwidth
// estimate (the allocator, which calls SetTarget); without an allocator, the highest layer
// the preference allows among the layers that flow.
//
// For an allocator (bwe) and for dynacast, the API is: Producer.Layers (rid, bitrate, active,
// size of each layer), Consumer.MaxLayer (the highest layer the subscriber's preference
// allows, whether or not it flows: what the subscriber would take with bandwidth to spare),
// Consumer.SetTarget (the allocator's choice; from its first call the node stops choosing
// for that consumer) and Consumer.Layer (the layer it forwards now). Dynacast must derive the
// layers a producer's subscribers need from MaxLayer (or from an allocator's wishes), not from
// the targets: without an allocator a target follows the layers that flow, and a layer paused
// at the publisher or gated on a relay pipe (relay.Pipes.SetLayers) never flows.

// LayerPref is the largest layer a subscriber wants of one producer (PROTOCOL.md
// "setPreferredLayer"): Layer (-1: no limit by number), MaxWidth/MaxHeight (0: no limit).
type LayerPref struct {
	Layer     int
	MaxWidth  int
	MaxHeight int
}

// NoLayerPref is the preference of a consumer that expressed none: the top layer.
var NoLayerPref = LayerPref{Layer: -1}

// layerPrefs are a participant's preferences by producer id, kept also for producers it does
// not consume (yet). Its own lock: consumers are made under the participant's mu.
type layerPrefs struct {
	mu sync.Mutex
	m  map[string]LayerPref
}

func (l *layerPrefs) get(id string) LayerPref {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.m[id]; ok {
		return p
	}
	return NoLayerPref
}

func (l *layerPrefs) set(id string, p LayerPref) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]LayerPref)
	}
	l.m[id] = p
}

// SetPreferredLayer sets the subscriber's preference for one producer; it applies to its
// consumer of the producer now or from its subscription on. ErrNotFound: no such producer in
// the room.
func (p *Participant) SetPreferredLayer(producerID string, pref LayerPref) error {
	if p.room.producer(producerID) == nil {
		return ErrNotFound
	}
	if pref.Layer < 0 {
		pref.Layer = -1
	}
	p.prefs.set(producerID, pref)
	p.mu.Lock()
	c := p.consumers[producerID]
	p.mu.Unlock()
	if c != nil {
		c.setPref(pref)
	}
	return nil
}

// layerSet is a producer's simulcast layers. rids is fixed before the producer's first packet;
// the rest is written at ingest (per producer packet, never per consumer) and read by
// Layers, the consumers' choice and keyframe requests.
type layerSet struct {
	rids   []string
	caches [proto.MaxLayers]*packetcache.Cache // [0] is the producer's cache
	stats  [proto.MaxLayers]layerStats
	tracks [proto.MaxLayers]atomic.Pointer[webrtc.TrackRemote] // a local producer's, for keyframe requests
	lastKF [proto.MaxLayers]atomic.Int64                       // [0] unused: the producer's lastKF
	sr     [proto.MaxLayers]atomic.Pointer[srClock]            // the layers' last sender reports

	// The tracks of a local simulcast producer (simulcast.go): the first one makes it live.
	mu    sync.Mutex
	feed  *Producer     // the producer the tracks feed (the adopted one after a resume)
	gen   uint32        // and their generation
	live  int           // tracks reading
	start bool          // a first track came
	ready chan struct{} // closed once it chose feed and gen
}

// layerStats measures one layer.
type layerStats struct {
	bytes atomic.Uint64 // payload and headers
	last  atomic.Int64  // unix nanos of the last packet
	size  atomic.Uint32 // width<<16 | height of the last keyframe

	mu         sync.Mutex // Layers only
	prev, curr rateSample
}

type rateSample struct {
	at    int64
	bytes uint64
}

// activeFor is how recently a layer must have had a packet to be active.
const activeFor = time.Second

// setRids gives the producer its layers (before its first packet).
func (p *Producer) setRids(rids []string) {
	if len(rids) > proto.MaxLayers {
		rids = rids[:proto.MaxLayers]
	}
	p.layers.rids = rids
	p.layers.caches[0] = p.cache
	for i := 1; i < len(rids); i++ {
		p.layers.caches[i] = newCache(p.kind)
	}
}

// layered tells whether the producer has simulcast layers.
func (p *Producer) layered() bool { return len(p.layers.rids) > 0 }

// numLayers is how many layers the producer has (1 without simulcast).
func (p *Producer) numLayers() int {
	if n := len(p.layers.rids); n > 0 {
		return n
	}
	return 1
}

// cacheOf is the packet cache of one layer.
func (p *Producer) cacheOf(layer uint8) *packetcache.Cache {
	if layer == 0 || int(layer) >= len(p.layers.rids) {
		return p.cache
	}
	return p.layers.caches[layer]
}

// layerOf is the layer number of a rid (0 for none or an unknown one; ok false then).
func (p *Producer) layerOf(rid string) (uint8, bool) {
	for i, r := range p.layers.rids {
		if r == rid {
			return uint8(i), true
		}
	}
	return 0, rid == ""
}

// measure counts a packet of a layered producer (ingest, once per packet) and reads the size
// of its keyframes.
func (p *Producer) measure(pkt *packet, k payloadKind) {
	st := &p.layers.stats[pkt.layer]
	st.bytes.Add(uint64(pkt.size))
	st.last.Store(time.Now().UnixNano())
	var w, h int
	ok := false
	switch {
	case k == payloadVP8 && pkt.vp8.key:
		w, h, ok = vp8Size(pkt.payload[pkt.vp8.size:])
	case k == payloadH264:
		w, h, ok = h264Size(pkt.payload)
	}
	if ok {
		st.size.Store(uint32(w)<<16 | uint32(h)&0xffff)
	}
}

// active tells whether layer l had a packet within activeFor of now.
func (p *Producer) active(l int, now int64) bool {
	return now-p.layers.stats[l].last.Load() < int64(activeFor)
}

// sizeOf is the size of layer l's last keyframe (0, 0: not known).
func (p *Producer) sizeOf(l int) (w, h int) {
	s := p.layers.stats[l].size.Load()
	return int(s >> 16), int(s & 0xffff)
}

// Layers describes the producer's simulcast layers, lowest first (nil: not simulcast).
// Bitrate is measured over the last one to two seconds between calls (the first call after a
// quiet spell averages over it).
func (p *Producer) Layers() []proto.Layer {
	if !p.layered() {
		return nil
	}
	now := time.Now().UnixNano()
	out := make([]proto.Layer, len(p.layers.rids))
	for i, rid := range p.layers.rids {
		st := &p.layers.stats[i]
		w, h := p.sizeOf(i)
		out[i] = proto.Layer{Rid: rid, Width: w, Height: h, Active: p.active(i, now), Bitrate: st.rate(now)}
	}
	return out
}

// rate is the layer's bitrate in bit/s between the older of two samples (at least a second
// apart once there are two) and now.
func (st *layerStats) rate(now int64) int {
	b := st.bytes.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.curr.at == 0 {
		st.prev, st.curr = rateSample{now, b}, rateSample{now, b}
		return 0
	}
	if now-st.curr.at >= int64(time.Second) {
		st.prev, st.curr = st.curr, rateSample{now, b}
	}
	d := now - st.prev.at
	if d <= 0 {
		return 0
	}
	return int(float64(b-st.prev.bytes) * 8 * float64(time.Second) / float64(d))
}

// pipeLayers are the layers the consumers of one pipe forward or switch to: the producer posts
// a simulcast packet to a worker only if one of them takes its layer. It is recomputed on the
// control path (a consumer added or removed, a target changed, a switch made), one at a time.
type pipeLayers struct {
	mu   sync.Mutex
	mask atomic.Uint32 // bit l: some consumer takes layer l
}

func (w *pipeLayers) update(pp *pipe) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m uint32
	if cs := pp.consumers.Load(); cs != nil {
		for _, c := range *cs {
			if t := c.lay.target.Load(); t >= 0 {
				m |= 1 << t
			}
			if l := c.lay.cur.Load(); l >= 0 {
				m |= 1 << l
			}
		}
	}
	w.mask.Store(m)
}

// consumerLayers is a consumer's choice of layer. target and cur are read by other goroutines;
// cur is written by the worker at each switch.
type consumerLayers struct {
	target    atomic.Int32
	cur       atomic.Int32
	allocated atomic.Bool // an allocator sets the target (SetTarget)
	pinned    bool        // a relay sink of one layer: its target never changes
	pref      atomic.Pointer[LayerPref]
}

// initLayers gives a new consumer its subscriber's preference and its first target.
func (c *Consumer) initLayers() {
	pref := NoLayerPref
	if c.sub != nil {
		pref = c.sub.prefs.get(c.producer.id)
	}
	c.lay.pref.Store(&pref)
	if c.producer.layered() {
		// No layer yet: the first packet of the target layer starts the consumer (and tells
		// the subscriber its layer). Its keyframe is asked for when the consumer is bound:
		// the consumer is made under its subscriber's lock, where no request is written.
		c.sw.layer = noLayer
		c.lay.cur.Store(-1)
		c.lay.target.Store(int32(c.autoTarget(c.MaxLayer())))
	}
}

// noLayer is the switcher's layer before a layered consumer's first packet.
const noLayer = 0xff

// setPref changes the subscriber's preference.
func (c *Consumer) setPref(pref LayerPref) {
	c.lay.pref.Store(&pref)
	c.refreshTarget()
}

// MaxLayer is the highest layer the subscriber's preference allows: by number, and by size
// against the layers' sizes (under a size limit, a layer whose size is not known yet does not
// fit: a thumbnail never starts on a layer that may be large); the lowest layer when none
// fits. It does not depend on which layers flow.
func (c *Consumer) MaxLayer() int {
	p := c.producer
	n := p.numLayers()
	if n == 1 {
		return 0
	}
	pref := NoLayerPref
	if x := c.lay.pref.Load(); x != nil {
		pref = *x
	}
	best := 0
	for l := 0; l < n; l++ {
		if c.fits(pref, l) {
			best = l
		}
	}
	return best
}

func (c *Consumer) fits(pref LayerPref, l int) bool {
	if pref.Layer >= 0 && l > pref.Layer {
		return false
	}
	w, h := c.producer.sizeOf(l)
	return (pref.MaxWidth <= 0 || (w > 0 && w <= pref.MaxWidth)) && (pref.MaxHeight <= 0 || (h > 0 && h <= pref.MaxHeight))
}

// autoTarget is the target without an allocator: the highest layer up to MaxLayer that flows;
// else the lowest that flows; else MaxLayer.
func (c *Consumer) autoTarget(max int) int {
	p := c.producer
	now := time.Now().UnixNano()
	lowest := -1
	for l := max; l >= 0; l-- {
		if p.active(l, now) {
			return l
		}
	}
	for l := max + 1; l < p.numLayers(); l++ {
		if p.active(l, now) {
			lowest = l
			break
		}
	}
	if lowest >= 0 {
		return lowest
	}
	return max
}

// refreshTarget re-chooses the target after a change of preference or of the layers that flow
// (once a second, from the worker's report tick). Under an allocator it only lowers the
// target to MaxLayer.
func (c *Consumer) refreshTarget() {
	if !c.producer.layered() || c.lay.pinned {
		return
	}
	max := c.MaxLayer()
	if c.lay.allocated.Load() {
		if int(c.lay.target.Load()) > max {
			c.retarget(max)
		}
		return
	}
	c.retarget(c.autoTarget(max))
}

// SetTarget sets the layer the consumer should forward (an allocator's choice; capped at
// MaxLayer); the worker switches to it at its next keyframe (requested) and keeps forwarding
// the current layer until then. From the first call on, the node no longer chooses the target
// of this consumer itself.
func (c *Consumer) SetTarget(layer int) {
	if !c.producer.layered() || c.lay.pinned {
		return
	}
	c.lay.allocated.Store(true)
	if max := c.MaxLayer(); layer > max {
		layer = max
	}
	if layer < 0 {
		layer = 0
	}
	c.retarget(layer)
}

func (c *Consumer) retarget(layer int) {
	old := c.lay.target.Swap(int32(layer))
	if int(old) == layer {
		return
	}
	if pp := c.pipe; pp != nil {
		pp.want.update(pp) // before the keyframe is asked for: its packets must reach the worker
	}
	if int(c.lay.cur.Load()) != layer {
		c.producer.requestKeyframe(layer)
	}
}

// Target is the layer the consumer switches to (or forwards, once switched).
func (c *Consumer) Target() int { return int(c.lay.target.Load()) }

// Layer is the layer the consumer forwards now (0 for a producer without layers, -1 before a
// simulcast consumer's first packet).
func (c *Consumer) Layer() int { return int(c.lay.cur.Load()) }

// layerChanged runs on the worker after the consumer started forwarding a layer: the
// subscriber is told, and the switch counted.
func (c *Consumer) layerChanged(layer uint8, switched bool) {
	old := c.lay.cur.Swap(int32(layer))
	p := c.producer
	if !p.layered() {
		return
	}
	if pp := c.pipe; pp != nil && old != int32(layer) {
		pp.want.update(pp) // the layer left may no longer be wanted on this worker
	}
	if c.sub == nil {
		return
	}
	if switched && p.node != nil {
		p.node.metrics.layers.switches.Add(1)
	}
	c.sub.listener.Notify(proto.MethodLayerChanged, proto.LayerChangedData{Producer: p.id, Layer: int(layer), Rid: p.layers.rids[layer]})
}

// ridsOf lists the rids of a remote producer's layers.
func ridsOf(layers []proto.Layer) []string {
	var rids []string
	for _, l := range layers {
		rids = append(rids, l.Rid)
	}
	return rids
}

// NumLayers is how many simulcast layers the producer has (1 without simulcast).
func (p *Producer) NumLayers() int { return p.numLayers() }

// pin makes a relay sink forward one layer of a simulcast producer, never switching layers.
func (c *Consumer) pin(layer int) {
	if !c.producer.layered() {
		return
	}
	c.lay.pinned = true
	c.lay.target.Store(int32(layer))
	c.lay.cur.Store(int32(layer))
	c.sw.layer = noLayer
}

// Gate opens or closes a relay sink (a layer of a pipe: dynacast carries only the layers
// demanded downstream). A closed sink forwards, reports and retransmits nothing; it costs
// the fan-out what an unbound consumer costs. Opened again, it goes on from its last sequence
// number at a keyframe (requested).
func (c *Consumer) Gate(open bool) {
	c.gateMu.Lock()
	if open == (c.gated == nil) {
		c.gateMu.Unlock()
		return
	}
	if !open {
		c.gated = c.bind.Swap(nil) // nil if unbound meanwhile: then it stays open
		c.gateMu.Unlock()
		return
	}
	c.resync.Store(true)
	c.bind.Store(c.gated)
	c.gated = nil
	c.gateMu.Unlock()
	c.requestKeyframe() // no I/O under the lock
}
