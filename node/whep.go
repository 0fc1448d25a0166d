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

func (p *Participant) watch(pc *webrtc.PeerConnection) {
	if !p.watchTransports {
		return
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			go p.Close()
		}
	})
}

// SubscribeOffer answers a client's recvonly offer (WHEP): each offered audio or video section
// gets a consumer of the room's first live producer of that kind. The answer carries every
// local candidate. It fails with ErrNotFound when the room has no producer of an offered kind.
func (p *Participant) SubscribeOffer(offer string) (string, error) {
	if !p.grant.Subscribe {
		return "", ErrForbidden
	}
	if err := checkSDP(offer); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return "", ErrClosed
	}
	if p.recv != nil {
		return "", fmt.Errorf("%w: already subscribed", ErrBadState)
	}
	w := p.room.subscriberWorker()
	pc, err := w.subAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("receive transport: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		_ = pc.Close()
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	producers := p.room.liveProducers()
	var consumers []*Consumer
	fail := func(err error) (string, error) {
		for _, c := range consumers {
			c.producer.removeConsumer(c)
		}
		_ = pc.Close()
		return "", err
	}
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeAudio && tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		var pr *Producer
		for _, x := range producers {
			if x.kind == tr.Kind() && x.participant != p {
				pr = x
				break
			}
		}
		if pr == nil {
			return fail(fmt.Errorf("%w: the room has no %s producer", ErrNotFound, tr.Kind()))
		}
		c := newConsumer(pr, p, w, pc)
		sender, err := pc.AddTrack(c)
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrBadSDP, err))
		}
		c.sender = sender
		consumers = append(consumers, c)
	}
	if len(consumers) == 0 {
		return fail(fmt.Errorf("%w: the offer has no audio or video section", ErrBadSDP))
	}
	answer, err := pc.CreateAnswer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadSDP, err))
	}
	<-gathered
	p.recv, p.recvWorker = pc, w
	p.watch(pc)
	for _, c := range consumers {
		if !c.producer.addConsumer(c) {
			continue
		}
		p.consumers[c.producer.id] = c
		w.addConsumer(c)
		p.room.consumerAdded(w, 1)
		go c.readRTCP()
	}
	return pc.LocalDescription().SDP, nil
}
