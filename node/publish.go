package node

import (
	"fmt"
	"sort"
	"time"

	"github.com/pion/webrtc/v4"
)

// Publish applies an offer for the send transport and returns the answer and the producers of
// the transport. Each sending media section becomes a producer, announced to the room when its
// media starts; a section that stops sending ends its producer. With gather the answer waits
// for every local candidate (WHIP).
func (p *Participant) Publish(offer string, gather bool) (string, []ProducerInfo, error) {
	return p.publish(offer, gather, nil)
}

// publish is Publish; ids (PublishAs) names the producers of some media sections.
func (p *Participant) publish(offer string, gather bool, ids map[string]string) (string, []ProducerInfo, error) {
	sending, data, err := offered(offer)
	if err != nil {
		return "", nil, err
	}
	rids, err := offeredRids(offer) // simulcast layers by media section (simulcast.go)
	if err != nil {
		return "", nil, err
	}
	if (sending > 0 || data) && !p.grant.Publish {
		return "", nil, ErrForbidden
	}
	if err := p.node.admitTracks(sending); err != nil {
		return "", nil, err
	}
	p.neg.Lock()
	defer p.neg.Unlock()
	t, err := p.sendTransport()
	if err != nil {
		return "", nil, err
	}
	send := t.pc
	if err := send.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", nil, p.negotiationError(err)
	}
	ended, err := p.updateProducers(send, ids, rids)
	if err != nil {
		return "", nil, err
	}
	defer func() { // on every path from here: ended producers are out of byMid, so Close would miss them
		var now []*Producer // the participant closed: no goroutine of its own, remove them here
		p.mu.Lock()
		for _, pr := range ended {
			if !p.goLocked(func() { p.room.removeProducer(pr) }) {
				now = append(now, pr)
			}
		}
		p.mu.Unlock()
		for _, pr := range now {
			p.room.removeProducer(pr)
		}
	}()
	answer, err := send.CreateAnswer(nil)
	var gathered <-chan struct{}
	if err == nil {
		gathered = p.gathering(send)
		err = send.SetLocalDescription(answer)
	}
	if err != nil {
		return "", nil, p.negotiationError(err)
	}
	if sending > 0 {
		if accepted, _ := sendingMedia(answerAsOffer(answer.SDP)); accepted == 0 {
			return "", nil, fmt.Errorf("%w: no offered codec is supported (opus, VP8, H264)", ErrBadSDP)
		}
	}
	if gather {
		select {
		case <-gathered:
		case <-p.done: // closed while gathering
			return "", nil, ErrClosed
		}
		answer = *send.LocalDescription()
	}
	p.mu.Lock()
	infos := make([]ProducerInfo, 0, len(p.byMid))
	for _, pr := range p.byMid {
		infos = append(infos, pr.Info())
	}
	p.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Mid < infos[j].Mid })
	return answer.SDP, infos, nil
}

// sendTransport returns the send transport, creating it (outside mu) on the first Publish.
// The caller holds neg, so no other Publish creates one meanwhile.
func (p *Participant) sendTransport() (*transport, error) {
	p.mu.Lock()
	closed, send := p.closed, p.send
	p.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if send != nil {
		return send, nil
	}
	t, err := newTransport(TransportSend, p.room.home)
	if err != nil {
		return nil, err
	}
	t.pc.OnICECandidate(p.trickleOut(TransportSend))
	t.pc.OnTrack(p.onTrack)
	t.pc.OnDataChannel(p.onDataChannel)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		t.close()
		return nil, ErrClosed
	}
	p.send = t
	p.mu.Unlock()
	p.watch(t.pc)
	return t, nil
}

// updateProducers makes a producer of each media section of the send transport that now
// receives, and returns the producers of the sections that stopped. A section named in ids
// gets that producer id, and adopts the room's producer of that id when its track arrives. A
// new section with rids (simulcast) gets those layers.
func (p *Participant) updateProducers(send *webrtc.PeerConnection, ids map[string]string, rids map[string][]string) ([]*Producer, error) {
	epoch := p.Epoch() // outside mu
	type section struct {
		mid       string
		kind      webrtc.RTPCodecType
		receiving bool
	}
	var sections []section
	for _, tr := range send.GetTransceivers() {
		mid := tr.Mid()
		if mid == "" || (tr.Kind() != webrtc.RTPCodecTypeAudio && tr.Kind() != webrtc.RTPCodecTypeVideo) {
			continue
		}
		d := tr.Direction()
		sections = append(sections, section{mid, tr.Kind(), d == webrtc.RTPTransceiverDirectionRecvonly || d == webrtc.RTPTransceiverDirectionSendrecv})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	var ended []*Producer
	for _, s := range sections {
		pr, ok := p.byMid[s.mid]
		switch {
		case s.receiving && !ok:
			id, resumed := ids[s.mid]
			if !resumed {
				id = p.node.newID("PR")
			}
			pr := newProducer(id, s.mid, s.kind, p, p.room.home, send, p.node.opts.KeyframeInterval)
			pr.adopt = resumed
			if s.kind == webrtc.RTPCodecTypeVideo {
				pr.setRids(rids[s.mid])
			}
			pr.epoch.Store(epoch)
			p.byMid[s.mid] = pr
		case !s.receiving && ok:
			delete(p.byMid, s.mid)
			ended = append(ended, pr)
		}
	}
	return ended, nil
}

// gathering is the promise of the end of pc's ICE gathering.
func (p *Participant) gathering(pc *webrtc.PeerConnection) <-chan struct{} {
	if p.gatherDone != nil {
		return p.gatherDone(pc)
	}
	return webrtc.GatheringCompletePromise(pc)
}

// negotiationError is a failed offer/answer step: ErrClosed if the participant closed
// meanwhile (closing its transports), ErrBadSDP otherwise.
func (p *Participant) negotiationError(err error) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return fmt.Errorf("%w: %v", ErrBadSDP, err)
}

// onTrack runs on pion's goroutine for a track of the send transport until the track ends. The
// send transport owns it from the moment it knows its producer: Close waits for it.
func (p *Participant) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	pr, t := p.producerOf(receiver)
	if pr == nil {
		// The Publish that made this track may not have recorded its producer yet.
		p.neg.Lock()
		p.neg.Unlock()
		pr, t = p.producerOf(receiver)
	}
	if pr == nil || !t.enter() {
		return
	}
	defer t.exit()
	if pr.layered() {
		p.onLayerTrack(pr, t, track, receiver)
		return
	}
	pr.layers.tracks[0].Store(track)
	if pr.adopt {
		if x, gen, ok := p.adopt(pr, track); ok {
			src := x.source()
			t.drainRTCP(receiver)
			x.readLoop(track, gen, 0)
			if x.source() == src && !p.Superseded() { // still this track's: it did not move on
				p.room.removeProducer(x)
			}
			return
		}
	}
	pr.pkind.Store(uint32(kindOf(track.Codec().RTPCodecCapability)))
	pr.track.Store(track)
	if p.node.opts.Naive {
		naive, err := webrtc.NewTrackLocalStaticRTP(track.Codec().RTPCodecCapability, pr.id, p.id)
		if err != nil {
			p.log.Warn("naive track", "error", err)
			return
		}
		pr.naive = naive
	}
	src := pr.source()
	p.room.addProducer(pr)
	t.drainRTCP(receiver)
	pr.readLoop(track, pr.Generation(), 0)
	// A producer that moved away lives on without this track. One of a superseded session
	// waits for its adoption by the new session (a client that resumed on this node closes
	// its old transport before it publishes again): the participant's close removes it if it
	// was not adopted by then.
	if pr.source() == src && !p.Superseded() {
		p.room.removeProducer(pr)
	}
}

// producerOf finds the producer of a receiver of the send transport, and the transport.
func (p *Participant) producerOf(receiver *webrtc.RTPReceiver) (*Producer, *transport) {
	p.mu.Lock()
	closed, send := p.closed, p.send
	p.mu.Unlock()
	if closed || send == nil {
		return nil, nil
	}
	mid := ""
	for _, tr := range send.pc.GetTransceivers() {
		if tr.Receiver() == receiver {
			mid = tr.Mid()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil
	}
	return p.byMid[mid], send
}

func (p *Participant) onDataChannel(dc *webrtc.DataChannel) {
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if len(m.Data) > maxDataMessage || !p.grant.Publish {
			return
		}
		if p.data.allow(len(m.Data), time.Now()) != nil { // the excess of a flood is dropped here
			p.node.metrics.refused[refusedData].Add(1)
			return
		}
		p.room.data(p, m.Data, m.IsString)
		p.node.emit(Data{Room: p.room, Data: m.Data, IsString: m.IsString})
	})
}

// sendData delivers a data message to this participant's data consumer; it drops the message
// while the channel is not open.
func (p *Participant) sendData(msg []byte, isString bool) {
	dc := p.dc.Load()
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen {
		return
	}
	if isString {
		_ = dc.SendText(string(msg))
	} else {
		_ = dc.Send(msg)
	}
}

// Mute pauses (or resumes) forwarding of one of the participant's own producers.
func (p *Participant) Mute(producerID string, muted bool) error {
	if !p.grant.Publish {
		return ErrForbidden
	}
	pr := p.room.producer(producerID)
	if pr == nil || pr.publisher() != p {
		return ErrNotFound
	}
	pr.muteMu.Lock()
	if !muted && pr.serverMuted {
		pr.muteMu.Unlock()
		return ErrMutedByModerator
	}
	same := pr.muted.Swap(muted) == muted
	pr.muteMu.Unlock()
	if same {
		return nil
	}
	if !muted {
		for _, c := range pr.consumers() {
			c.resync.Store(true)
		}
		pr.resetKeyframeClocks()
		pr.RequestKeyframe()
	}
	p.room.broadcast(p, EventProducerMuted, map[string]any{"id": pr.id, "muted": muted})
	p.node.emit(ProducerMuted{Room: p.room, ID: pr.id, Muted: muted})
	return nil
}

// Unpublish ends one of the participant's own producers.
func (p *Participant) Unpublish(producerID string) error {
	if !p.grant.Publish {
		return ErrForbidden
	}
	p.mu.Lock()
	var pr *Producer
	for mid, x := range p.byMid {
		if x.id == producerID {
			pr = x
			delete(p.byMid, mid)
		}
	}
	p.mu.Unlock()
	if pr == nil {
		return ErrNotFound
	}
	p.room.removeProducer(pr)
	return nil
}
