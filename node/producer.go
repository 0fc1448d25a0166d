package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/pion/rtcp"
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
	consumers atomic.Pointer[[]*Consumer] // copy on write
}

// ProducerInfo describes a producer to clients (PROTOCOL.md, "Producer").
type ProducerInfo struct {
	ID          string `json:"id"`
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
	Mid         string `json:"mid,omitempty"` // the media section on the publisher's send transport
	Codec       string `json:"codec,omitempty"`
	Muted       bool   `json:"muted"`
}

// A Producer is a track a client publishes. Its read loop stores every packet in the packet
// cache (for NACKs) and posts it to each worker that has consumers of it.
type Producer struct {
	id          string
	mid         string
	kind        webrtc.RTPCodecType
	participant *Participant
	home        *Worker
	cache       *packetcache.Cache
	pool        sync.Pool
	kfInterval  time.Duration

	// Set once the track arrives.
	track atomic.Pointer[webrtc.TrackRemote]
	naive *webrtc.TrackLocalStaticRTP // Options.Naive: the textbook broadcast track
	pc    *webrtc.PeerConnection

	mu     sync.Mutex
	pipes  []*pipe
	closed bool

	pipesView atomic.Pointer[[]*pipe]
	muted     atomic.Bool
	lastKF    atomic.Int64 // unix nanos of the last keyframe request sent upstream
}

func newProducer(id, mid string, kind webrtc.RTPCodecType, p *Participant, home *Worker, pc *webrtc.PeerConnection, kf time.Duration) *Producer {
	pr := &Producer{id: id, mid: mid, kind: kind, participant: p, home: home, pc: pc, kfInterval: kf,
		cache: packetcache.New(512)}
	if kind == webrtc.RTPCodecTypeAudio {
		pr.cache = packetcache.New(64)
	}
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	return pr
}

// ID is the producer's id.
func (p *Producer) ID() string { return p.id }

// Info describes the producer.
func (p *Producer) Info() ProducerInfo {
	info := ProducerInfo{ID: p.id, Mid: p.mid, Participant: p.participant.id, Kind: p.kind.String(), Muted: p.muted.Load()}
	if t := p.track.Load(); t != nil {
		info.Codec = t.Codec().MimeType
	}
	return info
}

func (p *Producer) codec() webrtc.RTPCodecCapability {
	if t := p.track.Load(); t != nil {
		return t.Codec().RTPCodecCapability
	}
	return webrtc.RTPCodecCapability{}
}

// readLoop runs on pion's OnTrack goroutine until the track ends.
func (p *Producer) readLoop(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	go func() { // drain RTCP so the receiver interceptors see sender reports
		buf := make([]byte, 1500)
		for {
			if _, _, err := receiver.Read(buf); err != nil {
				return
			}
		}
	}()
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
		hl, err := pkt.header.Unmarshal(pkt.buf[:n])
		if err != nil {
			p.pool.Put(pkt)
			continue
		}
		if pkt.header.Padding || hl > n {
			// Padding-only packets carry no media; the rare padded media packet is dropped too.
			p.pool.Put(pkt)
			continue
		}
		pkt.payload = pkt.buf[hl:n]
		pkt.size = n
		p.cache.Store(pkt.header.SequenceNumber, pkt.buf[:n])
		pipes := p.pipesView.Load()
		if pipes == nil || p.muted.Load() {
			p.pool.Put(pkt)
			continue
		}
		pkt.refs.Store(int32(len(*pipes)) + 1)
		for _, pp := range *pipes {
			if !pp.worker.post(job{pipe: pp, pkt: pkt}) {
				pkt.release()
			}
		}
		pkt.release()
	}
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

// addConsumer attaches c to the pipe of its worker, creating the pipe on first use.
func (p *Producer) addConsumer(c *Consumer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
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
	var cs []*Consumer
	if old := pp.consumers.Load(); old != nil {
		cs = append(cs, *old...)
	}
	cs = append(cs, c)
	pp.consumers.Store(&cs)
	return true
}

// removeConsumer detaches c; a pipe left without consumers is removed (unpiped).
func (p *Producer) removeConsumer(c *Consumer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pp := range p.pipes {
		if pp.worker != c.worker {
			continue
		}
		var cs []*Consumer
		if old := pp.consumers.Load(); old != nil {
			for _, x := range *old {
				if x != c {
					cs = append(cs, x)
				}
			}
		}
		if len(cs) > 0 {
			pp.consumers.Store(&cs)
			return
		}
		pp.consumers.Store(nil)
		p.pipes = append(p.pipes[:i:i], p.pipes[i+1:]...)
		view := append([]*pipe(nil), p.pipes...)
		p.pipesView.Store(&view)
		return
	}
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

// RequestKeyframe asks the publisher for a keyframe; requests within the keyframe interval of
// the last one sent collapse into it.
func (p *Producer) RequestKeyframe() {
	if p.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	t := p.track.Load()
	if t == nil {
		return
	}
	now := time.Now().UnixNano()
	last := p.lastKF.Load()
	if now-last < int64(p.kfInterval) || !p.lastKF.CompareAndSwap(last, now) {
		p.participant.node.metrics.keyframesCollapsed.Add(1)
		return
	}
	p.participant.node.metrics.keyframesSent.Add(1)
	_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
}

// close stops forwarding; it returns the consumers that must be removed from their subscribers.
func (p *Producer) close() []*Consumer {
	cs := p.consumers()
	p.mu.Lock()
	p.closed = true
	p.pipes = nil
	p.pipesView.Store(nil)
	p.mu.Unlock()
	return cs
}
