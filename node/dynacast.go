package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Dynacast (issue 15, PROTOCOL.md "Dynacast"): a simulcast layer that no consumer on any node
// needs is paused at the publisher, and relay pipes carry only the layers demanded downstream.
//
// What a producer needs is read from its consumers, one place for both sources of demand: a
// subscriber's consumer needs the layer it forwards, the one it switches to (its target) and
// the highest its preference allows (Consumer.MaxLayer); a relay sink (one per layer of a
// pipe) needs its layer while the child node it feeds demands it (relay.Pipes.ServeLayers
// gates the others, Consumer.Gate; every layer flows until the child said). One goroutine per
// node (the dynacast loop) reads the demand of every video producer every DynacastTick:
//   - of a remote producer piped here, it emits LayerDemand when the demand changed (and every
//     DemandRefresh, so a lost message heals): the relay tells the parent of the pipe, whose
//     relay sink towards this node then carries only those layers, and whose own demand grows
//     or shrinks with it, up to the origin;
//   - of a local simulcast producer, it tells the publisher layersWanted when the set changes:
//     a layer needed again is resumed at once (its encoder restarts with a keyframe, which the
//     waiting consumers switch at), a layer unneeded for DynacastPause is paused (so a viewer
//     switching between layers does not make the encoder flap). The lowest layer is never
//     paused: a new viewer starts at once, and the layers' sizes stay known.
//
// The per-packet path pays nothing: a gated relay sink is an unbound consumer to the fan-out,
// and a subscriber's consumer forwards one layer anyway.

// Dynacast timing.
const (
	// DynacastTick is how often the dynacast loop reads the demand: the delay of a resume.
	DynacastTick = 100 * time.Millisecond
	// DynacastPause is how long a layer stays unneeded before its publisher is told to pause it.
	DynacastPause = 3 * time.Second
	// DemandRefresh is how often an edge repeats an unchanged demand to its parent.
	DemandRefresh = 5 * time.Second
)

// AllLayers is the layer mask of every layer (bit i: layer i).
const AllLayers uint8 = 1<<proto.MaxLayers - 1

// LayerDemand: the layers of a remote producer needed here (by this node's consumers and by
// the nodes it relays the producer to) changed, or are due for a refresh. The relay tells the
// parent of the producer's pipe (relay.Pipes.LayerDemand). Layers is a mask, bit i: layer i.
type LayerDemand struct {
	Producer *Producer
	Layers   uint8
}

func (LayerDemand) isEvent() {}

// layerState is a producer's dynacast state, owned by the dynacast loop.
type layerState struct {
	started bool
	told    uint8                      // origin: the layers the publisher was last asked for
	need    [proto.MaxLayers]time.Time // origin: when each layer was last needed
	sent    uint8                      // edge: the demand last emitted
	sentAt  time.Time
}

// dynacast is the node's dynacast loop and its counters.
type dynacast struct {
	pause  time.Duration
	states map[*Producer]*layerState // owned by the loop
	stop   chan struct{}
	wg     sync.WaitGroup

	wantedSent atomic.Uint64 // layersWanted notifications sent
	paused     atomic.Int64  // layers of local producers their publishers were asked to pause
	demands    atomic.Uint64 // LayerDemand events emitted
}

// startDynacast registers the dynacast metrics and starts the node's dynacast loop;
// stopDynacast stops it.
func (n *Node) startDynacast(reg prometheus.Registerer) error {
	d := &dynacast{pause: DynacastPause, states: make(map[*Producer]*layerState), stop: make(chan struct{})}
	if err := reg.Register(d); err != nil {
		return fmt.Errorf("register dynacast metrics: %w", err)
	}
	n.dyn = d
	d.wg.Add(1)
	go n.dynacastLoop()
	return nil
}

var (
	descLayersPaused = prometheus.NewDesc("cascade_layers_paused", "Simulcast layers of the producers published "+
		"here that their publishers were asked to pause (dynacast: no consumer on any node needs them).", nil, nil)
	descLayersWanted = prometheus.NewDesc("cascade_layers_wanted_total", "layersWanted notifications sent to "+
		"publishers here (dynacast).", nil, nil)
	descLayerDemands = prometheus.NewDesc("cascade_layer_demands_total", "Demands for layers of remote producers "+
		"sent towards their origins (dynacast).", nil, nil)
)

// Describe implements prometheus.Collector.
func (d *dynacast) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLayersPaused
	ch <- descLayersWanted
	ch <- descLayerDemands
}

// Collect implements prometheus.Collector.
func (d *dynacast) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descLayersPaused, prometheus.GaugeValue, float64(d.paused.Load()))
	ch <- prometheus.MustNewConstMetric(descLayersWanted, prometheus.CounterValue, float64(d.wantedSent.Load()))
	ch <- prometheus.MustNewConstMetric(descLayerDemands, prometheus.CounterValue, float64(d.demands.Load()))
}

func (n *Node) stopDynacast() {
	if n.dyn == nil {
		return
	}
	select {
	case <-n.dyn.stop:
	default:
		close(n.dyn.stop)
	}
	n.dyn.wg.Wait()
}

func (n *Node) dynacastLoop() {
	defer n.dyn.wg.Done()
	everyTick(n.dyn.stop, DynacastTick, n.dynacastPass)
}

// dynacastPass reads the demand of every video producer once.
func (n *Node) dynacastPass(now time.Time) {
	d := n.dyn
	live := make(map[*Producer]bool, len(d.states))
	var paused int64
	for _, r := range n.Rooms() {
		for _, p := range r.liveProducers() {
			if p.kind != webrtc.RTPCodecTypeVideo {
				continue
			}
			live[p] = true
			st := d.states[p]
			if st == nil {
				st = &layerState{}
				d.states[p] = st
			}
			if p.Origin() == "" {
				n.originLayers(p, st, now)
				if st.started {
					paused += int64(layerCount(len(p.layers.rids)) - countBits(st.told))
				}
				continue
			}
			*st = layerState{sent: st.sent, sentAt: st.sentAt} // moved away: start afresh if it returns
			n.edgeDemand(p, st, now)
		}
	}
	for p := range d.states {
		if !live[p] {
			delete(d.states, p)
		}
	}
	d.paused.Store(paused)
}

// edgeDemand emits a remote producer's demand when it changed or is due for a refresh.
func (n *Node) edgeDemand(p *Producer, st *layerState, now time.Time) {
	if !p.Wanted() {
		st.sent = 0
		return
	}
	need := p.DemandedLayers()
	if need == 0 || (need == st.sent && now.Sub(st.sentAt) < DemandRefresh) {
		return
	}
	st.sent, st.sentAt = need, now
	n.dyn.demands.Add(1)
	n.emit(LayerDemand{Producer: p, Layers: need})
}

// Untold is a Listener that cannot pass notifications on to its client (a WHIP session has no
// signaling channel): dynacast asks such a publisher nothing, and counts none of its layers as
// paused (it keeps sending every layer).
type Untold interface {
	Untold()
}

// originLayers tells a local simulcast producer's publisher which layers to send, when that
// changes.
func (n *Node) originLayers(p *Producer, st *layerState, now time.Time) {
	rids := p.layers.rids // fixed before the producer is live
	if len(rids) < 2 {
		return
	}
	if pub := p.source().participant; pub != nil {
		if _, ok := pub.listener.(Untold); ok {
			return
		}
	}
	rids = rids[:layerCount(len(rids))]
	old := st.told
	want, changed := st.next(p.DemandedLayers(), len(rids), now, n.dyn.pause)
	if !changed {
		return
	}
	data := proto.LayersWantedData{Producer: p.id, Layers: make(map[string]bool, len(rids))}
	for i, rid := range rids {
		data.Layers[rid] = want&(1<<i) != 0
	}
	if pub := p.source().participant; pub != nil {
		n.dyn.wantedSent.Add(1)
		pub.listener.Notify(proto.MethodLayersWanted, data)
	}
	p.requestKeyframes(want &^ old) // the encoder restarts a layer with one anyway
}

// next is the debounce: given the layers needed now (need) of a producer with n layers, the
// layers to ask the publisher for, and whether that differs from what it was last told. A
// needed layer is wanted at once; an unneeded one stays wanted until it has been unneeded for
// pause. The lowest layer is always wanted. The first call counts every layer as just needed
// (the publisher sends them all) and reports a change, so the publisher is told in any case (a
// producer that moved here may come from a node that paused some).
func (st *layerState) next(need uint8, n int, now time.Time, pause time.Duration) (want uint8, changed bool) {
	all := uint8(1)<<n - 1
	need = need&all | 1
	first := !st.started
	if first {
		st.started = true
		for i := range st.need {
			st.need[i] = now
		}
	}
	for i := 0; i < n; i++ {
		bit := uint8(1) << i
		if need&bit != 0 {
			st.need[i] = now
		}
		if now.Sub(st.need[i]) < pause {
			want |= bit
		}
	}
	want |= need
	if want == st.told && !first {
		return want, false
	}
	st.told = want
	return want, true
}

// DemandedLayers is the mask of the producer's layers its consumers need here: a subscriber's
// consumer its current and target layer, a relay sink what its child demanded (every layer
// until it said).
func (p *Producer) DemandedLayers() uint8 {
	var m uint8
	for _, c := range p.consumers() {
		m |= c.demand()
	}
	return m
}

// demand is the mask of the layers the consumer needs: of a relay sink, its layer while its
// child demands it (its gate is open); of a subscriber's, the layer it forwards,
// the one it switches to, and the highest its preference allows (what it would take with
// bandwidth to spare: the target alone would pause a layer for good once the target, which
// follows the layers that flow, went below it), and a paused layer its estimate would fit
// (pausedlayer.go).
func (c *Consumer) demand() uint8 {
	if c.paused.Load() {
		return 0
	}
	if c.sub == nil { // a relay sink, of one layer: demanded while its gate is open
		if c.Gated() {
			return 0
		}
		return layerBit(c.Layer())
	}
	return layerBit(c.Layer()) | layerBit(c.Target()) | layerBit(c.MaxLayer()) | uint8(c.bw.wants.Load())
}

// requestKeyframes asks for a keyframe of each layer in mask (throttled per layer).
func (p *Producer) requestKeyframes(mask uint8) {
	for l := 0; mask != 0; l, mask = l+1, mask>>1 {
		if mask&1 != 0 {
			p.requestKeyframe(l)
		}
	}
}

// Gated tells whether a relay sink is closed (Gate): its layer is not demanded downstream.
func (c *Consumer) Gated() bool {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	return c.gated != nil
}

func layerBit(l int) uint8 {
	if l < 0 || l >= proto.MaxLayers {
		return 0
	}
	return 1 << l
}

func layerCount(n int) int { return min(n, proto.MaxLayers) }

func countBits(m uint8) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
