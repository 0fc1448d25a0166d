package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// packet is one received RTP packet shared by the workers that forward it. It returns to its
// pool when the last worker releases it.
type packet struct {
	refs    atomic.Int32
	pool    *sync.Pool
	header  rtp.Header
	payload []byte // slice of buf
	size    int    // bytes on the wire
	gen     uint32 // the producer's source it came from (Producer.Generation)
	layer   uint8  // its simulcast layer (0 without simulcast; layers.go)
	vp8     vp8Desc
	buf     [packetcache.MaxPacket]byte
}

func (p *packet) release() {
	if p.refs.Add(-1) == 0 {
		p.pool.Put(p)
	}
}

// pipe carries a producer's packets to the consumers of one worker (the producer's home worker,
// or another worker of the same room: an in-process pipe).
type pipe struct {
	worker    *Worker
	consumers atomic.Pointer[[]*Consumer]  // copy on write
	last      [2][proto.MaxLayers]lastDesc // the last packet of each layer of two generations (fan-out only)
	want      pipeLayers                   // the layers its consumers take (simulcast; layers.go)
}

// ProducerInfo describes a producer to clients (PROTOCOL.md, "Producer").
type ProducerInfo struct {
	ID          string `json:"id"`
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
	Mid         string `json:"mid,omitempty"` // the media section on the publisher's send transport
	Codec       string `json:"codec,omitempty"`
	Muted       bool   `json:"muted"`
	// Origin is the node the publisher is connected to ("" on that node itself).
	Origin    string `json:"origin,omitempty"`
	ClockRate uint32 `json:"clockRate,omitempty"`
	Channels  uint16 `json:"channels,omitempty"`
	Fmtp      string `json:"fmtp,omitempty"`
	// Epoch is the publishing session's epoch (ParticipantInfo.Epoch) when the producer was
	// announced: a stale copy's announcement (lower epoch) never moves a producer back.
	Epoch uint64 `json:"epoch,omitempty"`
	// Layers are a simulcast producer's layers, lowest first (nil: one layer; layers.go).
	Layers []proto.Layer `json:"layers,omitempty"`
}

// A Producer is a track a client publishes. Its read loop stores every packet in the packet
// cache (for NACKs) and posts it to each worker that has consumers of it.
type Producer struct {
	id         string
	kind       webrtc.RTPCodecType
	node       *Node
	room       *Room
	owner      string                      // the publishing participant's id
	src        atomic.Pointer[source]      // where its packets come from; replaced when it moves
	gen        atomic.Uint32               // the number of the current source (Generation)
	epoch      atomic.Uint64               // the publishing session's epoch (ProducerInfo.Epoch)
	adopt      bool                        // PublishAs: adopt the room's producer of this id, if any
	pkind      atomic.Uint32               // payloadKind of its codec, for the ingest
	upstream   atomic.Pointer[upstreamRef] // a remote producer's feedback path (set by the cluster layer)
	codecCap   webrtc.RTPCodecCapability
	home       *Worker
	cache      *packetcache.Cache
	pool       sync.Pool
	kfInterval time.Duration

	// Set once the track arrives.
	track atomic.Pointer[webrtc.TrackRemote]
	naive *webrtc.TrackLocalStaticRTP // Options.Naive: the textbook broadcast track

	mu     sync.Mutex
	pipes  []*pipe
	count  int // consumers
	closed bool

	pipesView atomic.Pointer[[]*pipe]
	muted     atomic.Bool
	// muteMu orders the publisher's mute requests and the room API's: serverMuted (the room API
	// muted the producer) is checked and muted changed as one step.
	muteMu      sync.Mutex
	serverMuted bool
	lastKF      atomic.Int64  // unix nanos of the last keyframe request sent upstream
	media       atomic.Uint64 // payload bytes fanned out: the consumers' retransmission budgets refill from it

	layers layerSet // simulcast layers (layers.go); none: one layer
}

func newProducer(id, mid string, kind webrtc.RTPCodecType, p *Participant, home *Worker, pc *webrtc.PeerConnection, kf time.Duration) *Producer {
	pr := &Producer{id: id, kind: kind, node: p.node, room: p.room, owner: p.id, home: home,
		kfInterval: kf, cache: newCache(kind)}
	pr.src.Store(&source{participant: p, pc: pc, mid: mid})
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	return pr
}

// ID is the producer's id.
func (p *Producer) ID() string { return p.id }

// Info describes the producer.
func (p *Producer) Info() ProducerInfo {
	s := p.source()
	info := ProducerInfo{ID: p.id, Mid: s.mid, Participant: p.owner, Kind: p.kind.String(), Muted: p.muted.Load(),
		Origin: s.origin, ClockRate: p.codec().ClockRate, Channels: p.codec().Channels, Fmtp: p.codec().SDPFmtpLine,
		Epoch: p.epoch.Load(), Layers: p.Layers()}
	info.Codec = p.codec().MimeType
	return info
}

func (p *Producer) codec() webrtc.RTPCodecCapability {
	if t := p.track.Load(); t != nil {
		return t.Codec().RTPCodecCapability
	}
	return p.codecCap
}

// readLoop runs on pion's OnTrack goroutine until the track ends (the send transport drains
// the receiver's RTCP meanwhile); its packets are of source generation gen and simulcast layer
// layer.
func (p *Producer) readLoop(track *webrtc.TrackRemote, gen uint32, layer uint8) {
	if p.naive != nil {
		p.naiveLoop(track)
		return
	}
	for {
		pkt := p.pool.Get().(*packet)
		n, _, err := track.Read(pkt.buf[:])
		if err != nil {
			p.pool.Put(pkt)
			return
		}
		p.ingest(pkt, n, gen, layer)
	}
}

// Inject feeds one RTP packet of a remote producer (from a relay link) into the fan-out, as
// the read loop does for a local one, as a packet of the current source. It copies raw.
func (p *Producer) Inject(raw []byte) { p.InjectFrom(p.gen.Load(), raw) }

// ingest parses the packet in pkt.buf[:n] (of source generation gen, simulcast layer layer),
// caches it and posts it to every worker that has consumers of the producer. It owns pkt.
func (p *Producer) ingest(pkt *packet, n int, gen uint32, layer uint8) {
	hl, err := pkt.header.Unmarshal(pkt.buf[:n])
	if err != nil || pkt.header.Padding || hl > n || int(layer) >= p.numLayers() {
		// Padding-only packets carry no media; the rare padded media packet is dropped too.
		p.pool.Put(pkt)
		return
	}
	pkt.payload = pkt.buf[hl:n]
	pkt.size = n
	pkt.gen = gen
	pkt.layer = layer
	k := payloadKind(p.pkind.Load())
	if k == payloadVP8 {
		pkt.vp8 = parseVP8(pkt.payload) // once per packet, for the consumers' switches
	}
	if gen == p.gen.Load() {
		// Only the current source's packets: the sequence numbers of two sources collide.
		p.cacheOf(layer).Store(pkt.header.SequenceNumber, pkt.buf[:n])
	}
	if p.layered() {
		p.measure(pkt, k)
	}
	pipes := p.pipesView.Load()
	if pipes == nil || p.muted.Load() {
		p.pool.Put(pkt)
		return
	}
	p.media.Add(uint64(len(pkt.payload))) // once per packet, not per consumer
	pkt.refs.Store(int32(len(*pipes)) + 1)
	bit := uint32(1) << layer
	for _, pp := range *pipes {
		if (len(p.layers.rids) > 0 && pp.want.mask.Load()&bit == 0) || !pp.worker.post(job{pipe: pp, pkt: pkt}) {
			pkt.release() // a layer no consumer on that worker takes, or a full queue
		}
	}
	pkt.release()
}

// naiveLoop is the textbook pion broadcast (Options.Naive): every packet is written to one
// TrackLocalStaticRTP bound to every subscriber's PeerConnection.
func (p *Producer) naiveLoop(track *webrtc.TrackRemote) {
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		if !p.muted.Load() {
			_ = p.naive.WriteRTP(pkt)
		}
	}
}

// newCache sizes a producer's packet cache: about 3 s of 720p video, 1 s of audio.
func newCache(kind webrtc.RTPCodecType) *packetcache.Cache {
	if kind == webrtc.RTPCodecTypeAudio {
		return packetcache.New(64)
	}
	return packetcache.New(512)
}

// addConsumer attaches c to the pipe of its worker, creating the pipe on first use. A remote
// producer's first consumer asks the cluster layer to pipe it here.
func (p *Producer) addConsumer(c *Consumer) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	first := p.count == 0
	p.count++
	p.mu.Unlock()
	if first && p.Origin() != "" {
		p.node.emit(Demand{Producer: p, Wanted: true})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var pp *pipe
	for _, x := range p.pipes {
		if x.worker == c.worker {
			pp = x
		}
	}
	if pp == nil {
		pp = &pipe{worker: c.worker}
		p.pipes = append(p.pipes, pp)
		view := append([]*pipe(nil), p.pipes...)
		p.pipesView.Store(&view)
	}
	c.pipe = pp // before the consumer is published to the fan-out
	var cs []*Consumer
	if c.sub == nil {
		// A relay sink goes first: the next node's whole fan-out waits for this packet.
		cs = append(cs, c)
	}
	if old := pp.consumers.Load(); old != nil {
		cs = append(cs, *old...)
	}
	if c.sub != nil {
		cs = append(cs, c)
	}
	pp.consumers.Store(&cs)
	pp.want.update(pp)
	return true
}

// removeConsumer detaches c; a pipe left without consumers is removed (unpiped), and a remote
// producer left without consumers is unpiped from this node.
func (p *Producer) removeConsumer(c *Consumer) {
	if p.detach(c) && p.Origin() != "" {
		p.node.emit(Demand{Producer: p, Wanted: false})
	}
}

// detach removes c from its pipe; it reports whether that was the producer's last consumer.
func (p *Producer) detach(c *Consumer) (last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pp := range p.pipes {
		if pp.worker != c.worker {
			continue
		}
		var cs []*Consumer
		found := false
		if old := pp.consumers.Load(); old != nil {
			for _, x := range *old {
				if x != c {
					cs = append(cs, x)
				} else {
					found = true
				}
			}
		}
		if !found {
			return false
		}
		p.count--
		if len(cs) > 0 {
			pp.consumers.Store(&cs)
			pp.want.update(pp)
			return p.count == 0
		}
		pp.consumers.Store(nil)
		p.pipes = append(p.pipes[:i:i], p.pipes[i+1:]...)
		view := append([]*pipe(nil), p.pipes...)
		p.pipesView.Store(&view)
		return p.count == 0
	}
	return false
}

// consumers lists every consumer of the producer.
func (p *Producer) consumers() []*Consumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []*Consumer
	for _, pp := range p.pipes {
		if cs := pp.consumers.Load(); cs != nil {
			all = append(all, *cs...)
		}
	}
	return all
}

// workers is how many workers the producer is piped to.
func (p *Producer) workers() int {
	if v := p.pipesView.Load(); v != nil {
		return len(*v)
	}
	return 0
}

// RequestKeyframe asks the publisher for a keyframe of each layer; requests within the
// keyframe interval of the last one sent for a layer collapse into it (simulcast.go).
func (p *Producer) RequestKeyframe() {
	for l := 0; l < p.numLayers(); l++ {
		p.requestKeyframe(l)
	}
}

// close stops forwarding; it returns the consumers that must be removed from their subscribers.
func (p *Producer) close() []*Consumer {
	cs := p.consumers()
	p.mu.Lock()
	p.closed = true
	p.count = 0
	p.pipes = nil
	p.pipesView.Store(nil)
	p.mu.Unlock()
	return cs
}
