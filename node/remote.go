package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/pion/webrtc/v4"
)

// Upstream is a remote producer's feedback path: the relay link towards its origin.
type Upstream interface {
	RequestKeyframe()
}

// Rooms lists the rooms on this node.
func (n *Node) Rooms() []*Room {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*Room, 0, len(n.rooms))
	for _, r := range n.rooms {
		out = append(out, r)
	}
	return out
}

// Producer finds a producer (local or remote) of a room on this node.
func (n *Node) Producer(room, id string) *Producer {
	r := n.Room(room)
	if r == nil {
		return nil
	}
	return r.producer(id)
}

// Wanted tells whether a remote producer has consumers here (so it should be piped here).
func (p *Producer) Wanted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count > 0 && !p.closed
}

// Origin is the node the producer's publisher is connected to ("" when it is this node).
func (p *Producer) Origin() string { return p.source().origin }

// Room is the producer's room.
func (p *Producer) Room() *Room { return p.room }

// SetUpstream sets a remote producer's feedback path (nil: none, keyframe requests are dropped).
func (p *Producer) SetUpstream(u Upstream) {
	if u == nil {
		p.upstream.Store(nil)
		return
	}
	p.upstream.Store(&upstreamRef{u})
}

// upstreamRef holds an Upstream in an atomic pointer.
type upstreamRef struct{ u Upstream }

// Attach adds a relay sink: a consumer, on the producer's home worker, whose packets go to w
// with SSRC ssrc and the producer's payload type. Detach it with Consumer.Detach. Of a
// simulcast producer it carries layer 0 (AttachLayer).
func (p *Producer) Attach(w webrtc.TrackLocalWriter, ssrc uint32) (*Consumer, error) {
	return p.AttachLayer(w, ssrc, 0)
}

// AttachLayer is Attach for one simulcast layer of the producer: the sink forwards that layer
// only, with its own sequence numbers and timestamps, and never switches layers (a relay
// carries each layer under its own SSRC, relay's package doc).
func (p *Producer) AttachLayer(w webrtc.TrackLocalWriter, ssrc uint32, layer int) (*Consumer, error) {
	if layer < 0 || layer >= p.numLayers() {
		return nil, fmt.Errorf("%w: producer %s has no layer %d", ErrNotFound, p.id, layer)
	}
	c := &Consumer{id: p.id, producer: p, worker: p.home, codec: p.codec(), rtx: rtxbudget.New(p.node.rtx, time.Now(), p.media.Load())}
	c.kind = kindOf(c.codec)
	c.sw.begin(p.gen.Load())
	c.pin(layer)
	c.bind.Store(&binding{ssrc: ssrc, clock: p.codec().ClockRate, writer: w})
	c.resync.Store(true)
	if !p.addConsumer(c) {
		return nil, ErrNotFound
	}
	c.worker.addConsumer(c)
	p.requestKeyframe(layer)
	return c, nil
}

// Detach removes a relay sink added by Attach.
func (c *Consumer) Detach() {
	c.paused.Store(true)
	c.producer.removeConsumer(c)
	c.worker.removeConsumer(c)
}

// Nack retransmits packets (by the sequence numbers the consumer sent) from the producer's
// cache, within the consumer's retransmission budget (a relay child's, like a subscriber's: a
// share of what the link carries of the producer). Over budget, the producer is asked for a
// keyframe instead.
func (c *Consumer) Nack(seqs []uint16) { c.nack(time.Now(), seqs) }

func (c *Consumer) nack(now time.Time, seqs []uint16) {
	buf := make([]byte, rtxBuffer)
	c.beginFeedback(now)
	done := 0
	for i := len(seqs) - 1; i >= 0; i-- { // newest first, as nackPairs
		if !c.resend(seqs[i], buf) {
			break
		}
		done++
	}
	if done < len(seqs) {
		c.worker.rtxRefused[rtxbudget.OutOfRange].Add(uint64(len(seqs) - done))
	}
	c.endFeedback(false)
}

// RequestKeyframe asks the consumer's producer for a keyframe of the layer the consumer
// forwards (throttled per layer).
func (c *Consumer) RequestKeyframe() { c.requestKeyframe() }

// ParseCodec turns a ProducerInfo's codec fields into a codec capability.
func (i ProducerInfo) codecCap() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: i.Codec, ClockRate: i.ClockRate, Channels: i.Channels, SDPFmtpLine: i.Fmtp}
}

// AddRemoteProducer adds a producer whose publisher is connected to another node. Its packets
// arrive through Inject once a relay pipes it here; local participants see it like any other.
func (r *Room) AddRemoteProducer(info ProducerInfo, origin string) (*Producer, error) {
	kind := webrtc.NewRTPCodecType(info.Kind)
	if kind == 0 || info.ID == "" || info.Codec == "" || origin == "" {
		return nil, fmt.Errorf("%w: remote producer %+v", ErrNotFound, info)
	}
	r.mu.Lock()
	if old := r.producers[info.ID]; old != nil {
		r.mu.Unlock()
		return old, nil
	}
	pr := &Producer{id: info.ID, kind: kind, node: r.node, room: r, owner: info.Participant,
		codecCap: info.codecCap(), home: r.home, kfInterval: r.node.opts.KeyframeInterval, cache: newCache(kind)}
	pr.src.Store(&source{origin: origin, mid: info.Mid})
	pr.pkind.Store(uint32(kindOf(pr.codecCap)))
	pr.setRids(ridsOf(info.Layers))
	pr.epoch.Store(info.Epoch)
	pr.pool.New = func() any { return &packet{pool: &pr.pool} }
	pr.muted.Store(info.Muted)
	r.mu.Unlock()
	r.addProducer(pr)
	return pr, nil
}

// RemoveRemoteProducer ends a remote producer (its origin removed it, or the origin is gone).
func (r *Room) RemoveRemoteProducer(id string) {
	if pr := r.producer(id); pr != nil && pr.Origin() != "" {
		r.removeProducer(pr)
	}
}

// SetRemoteMuted applies a remote producer's mute state.
func (r *Room) SetRemoteMuted(id string, muted bool) { r.SetRemoteMutedBy(id, muted, false) }

// SetRemoteMutedBy applies a remote producer's mute state; byServer: the room API muted it (the
// local participants are told so even when it was muted already).
func (r *Room) SetRemoteMutedBy(id string, muted, byServer bool) {
	pr := r.producer(id)
	if pr == nil || pr.Origin() == "" {
		return
	}
	changed := pr.muted.Swap(muted) != muted
	if !changed && !(muted && byServer) {
		return
	}
	if changed && !muted {
		for _, c := range pr.consumers() {
			c.resync.Store(true)
		}
	}
	note := map[string]any{"id": id, "muted": muted}
	if muted && byServer {
		note["byServer"] = true
	}
	r.broadcast(nil, EventProducerMuted, note)
}

// AddRemoteParticipant records a participant connected to another node and tells the local ones.
// A participant the room knew elsewhere (it resumed on nodeID) is only moved there: no one is
// told. Of two copies of one session the higher epoch wins: a local copy with a lower epoch is
// superseded (Supersede); an announcement of a lower epoch than the copy known is stale and
// changes nothing.
func (r *Room) AddRemoteParticipant(info ParticipantInfo, nodeID string) {
	r.mu.Lock()
	if lp := r.participants[info.ID]; lp != nil {
		r.mu.Unlock()
		if lp.epoch < info.Epoch {
			r.Supersede(info, nodeID)
		}
		return
	}
	rp, known := r.remote[info.ID]
	if known && rp.info.Epoch > info.Epoch {
		r.mu.Unlock()
		return
	}
	r.remote[info.ID] = remoteParticipant{info: info, node: nodeID}
	r.mu.Unlock()
	if !known {
		r.broadcast(nil, EventParticipantJoined, info)
	}
}

// UpdateRemoteParticipant records a remote participant's new description (its metadata changed)
// and tells the local ones (participantUpdated). A stale copy's update (a lower epoch than the
// copy known, here or remote) changes nothing; one of a newer copy of a local session fences it.
func (r *Room) UpdateRemoteParticipant(info ParticipantInfo, nodeID string) {
	r.mu.Lock()
	if lp := r.participants[info.ID]; lp != nil {
		r.mu.Unlock()
		if lp.epoch < info.Epoch {
			r.Supersede(info, nodeID)
		}
		return
	}
	if rp, known := r.remote[info.ID]; known && rp.info.Epoch > info.Epoch {
		r.mu.Unlock()
		return
	}
	r.remote[info.ID] = remoteParticipant{info: info, node: nodeID}
	r.mu.Unlock()
	r.broadcast(nil, EventParticipantUpdated, info)
}

// ReplaceIdentity closes the local participant with the identity of other, a participant that
// joined another node knowing the sessions replaces, if other is the newer session (see
// Supersedes).
func (r *Room) ReplaceIdentity(other ParticipantInfo, replaces []string) {
	r.node.mu.Lock()
	p := r.node.identities[r.name][other.Identity]
	r.node.mu.Unlock()
	if p == nil || p.room != r || p.id == other.ID || !Supersedes(other, replaces, p.Info(), p.knew()) {
		return // the same session (resumed elsewhere): AddRemoteParticipant fences it by epoch
	}
	p.listener.Notify(EventClosed, map[string]string{"reason": ReasonReplaced})
	p.Close()
}

// Supersedes tells whether session a, whose node knew the sessions aKnew of the same identity
// when a joined, is newer than session b (which knew bKnew). A session that knew the other is
// the newer: that is the common case, a client reconnecting elsewhere. When neither knew the
// other (concurrent joins, or a room sync slower than the join), the later join by the nodes'
// clocks wins, and the id breaks a tie: both nodes decide alike from the same two records.
// Two copies of one session (the same participant id) are decided by their epochs alone.
func Supersedes(a ParticipantInfo, aKnew []string, b ParticipantInfo, bKnew []string) bool {
	switch {
	case a.ID == b.ID:
		return a.Epoch > b.Epoch
	case slices.Contains(aKnew, b.ID):
		return true
	case slices.Contains(bKnew, a.ID):
		return false
	case a.JoinedAt != b.JoinedAt:
		return a.JoinedAt > b.JoinedAt
	}
	return a.ID > b.ID
}

// sessionsOf lists the remote sessions of an identity in the room.
func (r *Room) sessionsOf(identity string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, rp := range r.remote {
		if rp.info.Identity == identity {
			out = append(out, id)
		}
	}
	return out
}

// RemoveRemoteParticipant forgets a remote participant and tells the local ones.
// The session ended there (it left, or was not resumed within the grace): this node remembers
// it as its own ended sessions, so that a credential of it is refused here too.
func (r *Room) RemoveRemoteParticipant(id string) {
	r.mu.Lock()
	_, known := r.remote[id]
	delete(r.remote, id)
	r.mu.Unlock()
	if known {
		r.node.mu.Lock()
		r.node.ended.add(id, time.Now())
		r.node.mu.Unlock()
		r.broadcast(nil, EventParticipantLeft, map[string]string{"id": id})
	}
}

// RemoveNode forgets everything of a node that left the cluster: its participants and producers.
func (r *Room) RemoveNode(nodeID string) {
	r.mu.Lock()
	var parts []string
	for id, rp := range r.remote {
		if rp.node == nodeID {
			parts = append(parts, id)
		}
	}
	var prods []*Producer
	for _, pr := range r.producers {
		if pr.Origin() == nodeID {
			prods = append(prods, pr)
		}
	}
	r.mu.Unlock()
	for _, pr := range prods {
		r.removeProducer(pr)
	}
	for _, id := range parts {
		r.RemoveRemoteParticipant(id)
	}
}

// Nodes lists the other nodes with participants in the room.
func (r *Room) Nodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, rp := range r.remote {
		if !seen[rp.node] {
			seen[rp.node] = true
			out = append(out, rp.node)
		}
	}
	return out
}

// DeliverMessage hands an application message from a remote participant to the local ones.
func (r *Room) DeliverMessage(from, identity string, data any) {
	r.broadcast(nil, EventMessage, messageNote(from, identity, data))
}

// messageNote is the wire notification of an application message (PROTOCOL.md, "message").
func messageNote(from, identity string, data any) map[string]any {
	return map[string]any{"from": from, "identity": identity, "data": data}
}

// DeliverData hands a data-channel message from a remote participant to the local ones.
func (r *Room) DeliverData(msg []byte, isString bool) { r.data(nil, msg, isString) }

// LocalState is what this node contributes to a room: its participants and its producers.
func (r *Room) LocalState() ([]ParticipantInfo, []ProducerInfo) {
	r.mu.Lock()
	parts := make([]ParticipantInfo, 0, len(r.participants))
	for _, p := range r.participants {
		parts = append(parts, p.Info())
	}
	var prods []*Producer
	for _, pr := range r.producers {
		if pr.Origin() == "" {
			prods = append(prods, pr)
		}
	}
	r.mu.Unlock()
	infos := make([]ProducerInfo, 0, len(prods))
	for _, pr := range prods {
		infos = append(infos, pr.Info())
	}
	return parts, infos
}

// remoteParticipant is a participant of the room connected to another node.
type remoteParticipant struct {
	info ParticipantInfo
	node string
}
