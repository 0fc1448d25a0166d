package node

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// CloseOnTransportFailure makes the participant close itself when one of its transports fails
// or closes. Sessions without a signaling connection (WHIP, WHEP) have no other way to notice
// that their client vanished.
func (p *Participant) CloseOnTransportFailure() {
	p.mu.Lock()
	p.watchTransports = true
	p.mu.Unlock()
}

// watch closes the participant when pc fails, if CloseOnTransportFailure asked for it. The
// caller does not hold mu. pion calls the handler on a goroutine of its own, which the close
// runs on: the participant starts none (and Close, waiting for the participant's goroutines,
// does not wait for the one calling it).
func (p *Participant) watch(pc *webrtc.PeerConnection) {
	p.mu.Lock()
	on := p.watchTransports
	p.mu.Unlock()
	if !on {
		return
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.Close()
		}
	})
}

// SubscribeOffer answers a client's recvonly offer (WHEP): each offered audio or video section
// gets a consumer of the room's first live producer of that kind. The answer carries every
// local candidate. It fails with ErrNotFound when the room has no producer of an offered kind.
// The negotiation and the gathering run outside mu (under neg): the participant's receive
// transport is claimed first, and its consumers are recorded once the answer is ready.
func (p *Participant) SubscribeOffer(offer string) (string, error) {
	if !p.grant.Subscribe {
		return "", ErrForbidden
	}
	if err := checkSDP(offer); err != nil {
		return "", err
	}
	p.neg.Lock()
	defer p.neg.Unlock()
	p.mu.Lock()
	closed, taken := p.closed, p.recv != nil
	p.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	if taken {
		return "", fmt.Errorf("%w: already subscribed", ErrBadState)
	}
	t, err := newTransport(TransportRecv, p.room.subscriberWorker())
	if err != nil {
		return "", err
	}
	w, pc := t.worker, t.pc
	p.mu.Lock()
	switch {
	case p.closed:
		err = ErrClosed
	case p.recv != nil:
		err = fmt.Errorf("%w: already subscribed", ErrBadState)
	default:
		p.recv = t // claimed: Close closes it
		p.startBWE(t)
	}
	p.mu.Unlock()
	if err != nil {
		t.close()
		return "", err
	}
	var consumers []*Consumer
	fail := func(err error) (string, error) {
		p.mu.Lock()
		if p.recv == t {
			p.recv = nil
		}
		p.mu.Unlock()
		for _, c := range consumers {
			c.producer.removeConsumer(c)
		}
		t.close()
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(p.negotiationError(err))
	}
	producers := p.room.liveProducers()
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeAudio && tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		var pr *Producer
		for _, x := range producers {
			if x.kind == tr.Kind() && x.publisher() != p {
				pr = x
				break
			}
		}
		if pr == nil {
			return fail(fmt.Errorf("%w: the room has no %s producer", ErrNotFound, tr.Kind()))
		}
		c := newConsumer(pr, p, w, pc)
		c.bw.cc = t.cc
		sender, err := pc.AddTrack(c)
		if err != nil {
			return fail(p.negotiationError(err))
		}
		c.sender = sender
		consumers = append(consumers, c)
	}
	if len(consumers) == 0 {
		return fail(fmt.Errorf("%w: the offer has no audio or video section", ErrBadSDP))
	}
	answer, err := pc.CreateAnswer(nil)
	gathered := p.gathering(pc)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		return fail(p.negotiationError(err))
	}
	select {
	case <-gathered:
	case <-p.done: // closed while gathering
		return fail(ErrClosed)
	}
	p.watch(pc)
	p.mu.Lock()
	if p.closed || p.recv != t {
		p.mu.Unlock()
		return fail(ErrClosed)
	}
	for _, c := range consumers {
		if !c.producer.addConsumer(c) {
			continue
		}
		p.consumers[c.producer.id] = c
		w.addConsumer(c)
		p.room.consumerAdded(w, 1)
		t.goRead(c.readRTCP)
	}
	p.mu.Unlock()
	return pc.LocalDescription().SDP, nil
}
