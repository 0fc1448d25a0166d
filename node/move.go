package node

import (
	"errors"
	"fmt"

	"github.com/cascade-sfu/cascade/node/packetcache"
	"github.com/pion/webrtc/v4"
)

// errTodo marks the parts of session resume still being built (issue 13); nothing calls them yet.
var errTodo = errors.New("not built yet")

// ErrResume refuses a resume or a resumed publish: the session's credential does not allow it
// (an unknown producer id, a stale epoch); the signaling layer answers resume_refused or
// bad_request.
var ErrResume = errors.New("resume refused")

// Moving producers (PROTOCOL.md, "Resume"). A producer keeps its id, its Producer object on
// every node and its consumers when its publisher resumes on another node: only its source
// changes. Each source has a generation; a consumer forwards the generation it started with
// until a keyframe of the new one arrives (audio at once), and rewrites the new source's
// sequence numbers, timestamps and VP8 PictureID/TL0PICIDX to continue its own, so a
// subscriber's track goes on without a jump (the keyframe-gated switch, which simulcast layer
// switching uses too).

// EventProducerMoved tells a participant that a producer's publisher resumed elsewhere
// (proto.MethodProducerMoved): {"id","participant"}. Its track goes on.
const EventProducerMoved = "producerMoved"

// source is where a producer's packets come from: a local publisher's track (origin "") or a
// relay from origin. A move replaces it whole, so a reader sees one source or the other.
type source struct {
	origin      string                 // the origin node's id; "" when the publisher is connected here
	participant *Participant           // the local publisher; nil for a remote producer
	pc          *webrtc.PeerConnection // the local publisher's send transport
	mid         string
}

// source is the producer's current source (a producer built by a test may have none).
func (p *Producer) source() *source {
	if s := p.src.Load(); s != nil {
		return s
	}
	return &source{}
}

// publisher is the local participant that publishes the producer (nil: remote).
func (p *Producer) publisher() *Participant { return p.source().participant }

// MoveProducer records that producer info.ID of the room now comes from origin (a node id; ""
// is never passed: a local publisher adopts a producer through Participant.PublishAs). A
// producer the room did not have is added as a remote producer (AddRemoteProducer); a remote
// one changes origin; a local one (its publisher's stale session here was superseded) becomes
// remote. Its consumers stay. It emits ProducerMoved and tells the local participants
// producerMoved; it returns the producer and its new generation. A move to the origin it
// already has changes nothing (same generation); an announcement of an older epoch than the
// producer's is ErrResume (a stale copy never moves a producer back).
func (r *Room) MoveProducer(info ProducerInfo, origin string) (*Producer, uint32, error) {
	if origin == "" {
		return nil, 0, fmt.Errorf("%w: a move to this node is a resumed publish", ErrBadState)
	}
	pr := r.producer(info.ID)
	if pr == nil {
		pr, err := r.AddRemoteProducer(info, origin)
		if err != nil {
			return nil, 0, err
		}
		return pr, pr.Generation(), nil
	}
	pr.mu.Lock()
	old := pr.source()
	switch {
	case old.origin == origin:
		pr.mu.Unlock()
		return pr, pr.Generation(), nil
	case info.Epoch < pr.epoch.Load():
		pr.mu.Unlock()
		return pr, pr.Generation(), fmt.Errorf("%w: producer %s: epoch %d is older than %d", ErrResume, info.ID, info.Epoch, pr.epoch.Load())
	}
	gen := pr.moveTo(&source{origin: origin, mid: info.Mid}, info.Epoch)
	pr.mu.Unlock()
	if old.participant != nil {
		// A superseded publisher here: the end of its old track must not end the producer. Its
		// track goes on feeding the old generation until its transport closes.
		old.participant.forget(pr)
	}
	r.moved(pr, old.origin)
	return pr, gen, nil
}

// moveTo makes s the producer's source, of the next generation; the caller holds mu. Only the
// new source's packets are cached from now on (their sequence numbers are another stream's),
// the old upstream goes (the cluster layer sets the new one) and the next keyframe request is
// sent at once. An old-source packet whose ingest checked the generation just before the bump
// may still land in the cache after the reset: one stale entry, replaced as the new source's
// sequence numbers come round.
func (p *Producer) moveTo(s *source, epoch uint64) uint32 {
	gen := p.gen.Add(1)
	p.src.Store(s)
	p.epoch.Store(epoch)
	p.upstream.Store(nil)
	p.cache.Reset()
	p.lastKF.Store(0)
	p.resetLayers()
	if p.node != nil {
		p.node.metrics.producerMoves.Add(1)
	}
	return gen
}

// moved tells the cluster layer and the local participants (but the publisher) that pr moved
// from origin from.
func (r *Room) moved(pr *Producer, from string) {
	r.node.emit(ProducerMoved{Room: r, Producer: pr, From: from})
	r.broadcast(pr.publisher(), EventProducerMoved, map[string]string{"id": pr.id, "participant": pr.owner})
}

// forget detaches pr from the participant: it no longer publishes it (pr moved), so neither
// its track's end nor the participant's Close ends it.
func (p *Participant) forget(pr *Producer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for mid, x := range p.byMid {
		if x == pr {
			delete(p.byMid, mid)
		}
	}
}

// Generation is the number of the producer's current source (0 until it first moves).
func (p *Producer) Generation() uint32 { return p.gen.Load() }

// InjectFrom is Inject for a packet of source generation gen (from the relay pipe that was
// set up for that generation); packets of a generation that is neither the current one nor
// the one it replaced are dropped.
func (p *Producer) InjectFrom(gen uint32, raw []byte) { p.InjectLayer(gen, 0, raw) }

// InjectLayer is InjectFrom for a packet of one simulcast layer.
func (p *Producer) InjectLayer(gen uint32, layer int, raw []byte) {
	if cur := p.gen.Load(); (gen != cur && gen != cur-1) || len(raw) > packetcache.MaxPacket || layer < 0 || layer >= p.numLayers() {
		return
	}
	pkt := p.pool.Get().(*packet)
	p.ingest(pkt, copy(pkt.buf[:], raw), gen, uint8(layer))
}

// PublishAs is Publish on a resumed session: ids maps media sections of the offer to the ids
// of producers the session had (Participant.Resumable); those producers keep their ids, and
// a Producer of that id already in the room (remote: the publisher's old node; or local: the
// superseded session's) is adopted, consumers and all: the room sees a move, not a removal
// and an addition. An id the session did not have is ErrResume.
func (p *Participant) PublishAs(offer string, gather bool, ids map[string]string) (string, []ProducerInfo, error) {
	if len(ids) == 0 {
		return p.Publish(offer, gather)
	}
	had := map[string]bool{}
	for _, info := range p.Resumable() {
		had[info.ID] = true
	}
	seen := map[string]bool{}
	for mid, id := range ids {
		if !had[id] || seen[id] {
			return "", nil, fmt.Errorf("%w: producer %q (mid %q) is not one of the session's", ErrResume, id, mid)
		}
		seen[id] = true
	}
	return p.publish(offer, gather, ids)
}

// adopt makes the room's producer of pr's id (pr: made by PublishAs for a resumed id) take
// the participant's new track: it becomes local, of the next generation, and keeps its
// consumers, which switch to the track at its first keyframe. It reports false when the room
// has no other producer of that id (pr then goes live as a new one).
func (p *Participant) adopt(pr *Producer, track *webrtc.TrackRemote) (*Producer, uint32, bool) {
	x := p.room.producer(pr.id)
	if x == nil || x == pr || x.owner != p.id || x.kind != pr.kind {
		return nil, 0, false
	}
	epoch := p.Epoch()
	s := pr.source()
	x.mu.Lock()
	old := x.source()
	x.track.Store(track)
	x.pkind.Store(uint32(kindOf(track.Codec().RTPCodecCapability)))
	gen := x.moveTo(&source{participant: p, pc: s.pc, mid: s.mid}, epoch)
	x.mu.Unlock()
	p.mu.Lock()
	if p.byMid[s.mid] == pr {
		p.byMid[s.mid] = x
	}
	p.mu.Unlock()
	if old.participant != nil && old.participant != p {
		old.participant.forget(x)
	}
	p.room.moved(x, old.origin)
	// The other nodes see a producer of this id announced from here: they move it here.
	p.node.emit(ProducerAdded{Room: p.room, Producer: x.Info()})
	return x, gen, true
}
