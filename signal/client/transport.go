package client

import (
	"context"
	"fmt"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// The two transports of a link: the receive transport the node offers, the send transport the
// client offers when it publishes.

// config is the configuration of both transports: the ICE servers of the link's join answer.
func (l *link) config() webrtc.Configuration {
	cfg := webrtc.Configuration{ICETransportPolicy: l.c.o.ICETransportPolicy}
	for _, s := range l.join.ICEServers {
		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return cfg
}

func toInit(x proto.ICECandidateInit) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{Candidate: x.Candidate, SDPMid: x.SDPMid, SDPMLineIndex: x.SDPMLineIndex, UsernameFragment: x.UsernameFragment}
}

func fromInit(x webrtc.ICECandidateInit) proto.ICECandidateInit {
	return proto.ICECandidateInit{Candidate: x.Candidate, SDPMid: x.SDPMid, SDPMLineIndex: x.SDPMLineIndex, UsernameFragment: x.UsernameFragment}
}

func (l *link) pc(transport string) *webrtc.PeerConnection {
	if transport == proto.TransportSend {
		return l.send
	}
	return l.recv
}

func (l *link) onTrickle(d proto.TrickleData) {
	l.pcMu.Lock()
	defer l.pcMu.Unlock()
	pc := l.pc(d.Transport)
	if pc == nil || pc.RemoteDescription() == nil {
		l.remoteCands[d.Transport] = append(l.remoteCands[d.Transport], toInit(d.Candidate))
		return
	}
	_ = pc.AddICECandidate(toInit(d.Candidate))
}

// remoteDescribed applies the remote candidates held for a transport; pcMu is held.
func (l *link) remoteDescribed(transport string) {
	pc := l.pc(transport)
	for _, cand := range l.remoteCands[transport] {
		_ = pc.AddICECandidate(cand)
	}
	delete(l.remoteCands, transport)
}

func (l *link) trickle(transport string) func(*webrtc.ICECandidate) {
	return func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		l.pcMu.Lock()
		if !l.localReady[transport] {
			l.localCands[transport] = append(l.localCands[transport], cand.ToJSON())
			l.pcMu.Unlock()
			return
		}
		l.pcMu.Unlock()
		l.sendCandidates(transport, []webrtc.ICECandidateInit{cand.ToJSON()})
	}
}

// localDescribed marks that the server has the transport's description and sends the local
// candidates held until then.
func (l *link) localDescribed(transport string) {
	l.pcMu.Lock()
	l.localReady[transport] = true
	held := l.localCands[transport]
	delete(l.localCands, transport)
	l.pcMu.Unlock()
	l.sendCandidates(transport, held)
}

func (l *link) sendCandidates(transport string, cands []webrtc.ICECandidateInit) {
	for _, cand := range cands {
		_ = l.request(l.ctx, proto.MethodTrickle, proto.TrickleData{Transport: transport, Candidate: fromInit(cand)}, nil)
	}
}

func (l *link) onOffer(sdp string) error {
	o := l.c.o
	l.pcMu.Lock()
	if l.recv == nil {
		if err := l.ctx.Err(); err != nil {
			// The link ended: close has read (or will read) the transports under pcMu, and
			// would never close one made now.
			l.pcMu.Unlock()
			return err
		}
		pc, err := l.c.api.NewPeerConnection(l.config())
		if err != nil {
			l.pcMu.Unlock()
			return err
		}
		pc.OnICECandidate(l.trickle(proto.TransportRecv))
		pc.OnTrack(func(tr *webrtc.TrackRemote, rc *webrtc.RTPReceiver) {
			l.media.Store(true) // pion calls OnTrack at a track's first packet
			if o.OnTrack != nil {
				o.OnTrack(tr, rc)
			}
		})
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if o.OnData != nil {
					o.OnData(m.Data)
				}
			})
		})
		l.recv = pc
	}
	pc := l.recv
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
	var answer webrtc.SessionDescription
	if err == nil {
		l.remoteDescribed(proto.TransportRecv)
		answer, err = pc.CreateAnswer(nil)
	}
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	l.pcMu.Unlock()
	if err != nil {
		return fmt.Errorf("receive transport: %w", err)
	}
	if err := l.request(l.ctx, proto.MethodAnswer, proto.SDPData{SDP: answer.SDP}, nil); err != nil {
		return err
	}
	l.localDescribed(proto.TransportRecv)
	return nil
}

// publish adds tracks to the link's send transport (creating it, with a data channel, on first
// use) and negotiates it. ids maps tracks to the producer ids they had on the session's
// previous link (a resume): the offer names them by mid. It returns the publish answer and
// the mid of each track.
func (l *link) publish(ctx context.Context, tracks []pubTrack, ids map[webrtc.TrackLocal]string) (proto.PublishResult, []string, error) {
	var res proto.PublishResult
	l.pcMu.Lock()
	if l.send == nil {
		if err := l.ctx.Err(); err != nil { // as in onOffer
			l.pcMu.Unlock()
			return res, nil, err
		}
		pc, err := l.c.api.NewPeerConnection(l.config())
		if err != nil {
			l.pcMu.Unlock()
			return res, nil, err
		}
		pc.OnICECandidate(l.trickle(proto.TransportSend))
		dc, err := pc.CreateDataChannel("data", nil)
		if err != nil {
			l.pcMu.Unlock()
			_ = pc.Close()
			return res, nil, err
		}
		l.send, l.sendDC = pc, dc
	}
	pc := l.send
	var trs []*webrtc.RTPTransceiver
	for _, t := range tracks {
		tr, err := addTransceiver(pc, t)
		if err != nil {
			l.pcMu.Unlock()
			return res, nil, err
		}
		trs = append(trs, tr)
		if t.layers == nil {
			go l.readSenderRTCP(tr.Sender(), "")
		}
		for _, layer := range t.layers { // each layer's RTCP comes on its own stream
			go l.readSenderRTCP(tr.Sender(), layer.RID())
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	l.pcMu.Unlock()
	if err != nil {
		return res, nil, fmt.Errorf("send transport: %w", err)
	}
	mids := make([]string, len(trs))
	var byMid map[string]string
	for i, tr := range trs {
		mids[i] = tr.Mid()
		if id := ids[tracks[i].track]; id != "" {
			if byMid == nil {
				byMid = make(map[string]string)
			}
			byMid[mids[i]] = id
		}
	}
	if err := l.request(ctx, proto.MethodPublish, proto.PublishData{SDP: offer.SDP, ProducerIDs: byMid}, &res); err != nil {
		return res, nil, err
	}
	l.pcMu.Lock()
	err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP})
	if err == nil {
		l.remoteDescribed(proto.TransportSend)
	}
	l.pcMu.Unlock()
	if err != nil {
		return res, nil, fmt.Errorf("send transport answer: %w", err)
	}
	l.localDescribed(proto.TransportSend)
	return res, mids, nil
}

// readSenderRTCP reads the RTCP the node sends about a published track (of its layer rid, for a
// simulcast track): the proof that the node receives it (l.rtcp), then Options.OnPublisherRTCP's.
func (l *link) readSenderRTCP(s *webrtc.RTPSender, rid string) {
	for {
		var pkts []rtcp.Packet
		var err error
		if rid == "" {
			pkts, _, err = s.ReadRTCP()
		} else {
			pkts, _, err = s.ReadSimulcastRTCP(rid)
		}
		if err != nil {
			return
		}
		l.rtcp.Store(true)
		if f := l.c.o.OnPublisherRTCP; f != nil {
			f(pkts)
		}
	}
}

// carries tells whether the link carries the session's media as well as old did: a first
// packet on its receive transport if old received any, RTCP on its send transport if it has
// one.
func (l *link) carries(old *link) bool {
	l.pcMu.Lock()
	send := l.send != nil
	l.pcMu.Unlock()
	return (!old.media.Load() || l.media.Load()) && (!send || l.rtcp.Load())
}

// connected tells whether every transport the link has is ICE-connected (and it has one).
func (l *link) connected() bool {
	l.pcMu.Lock()
	defer l.pcMu.Unlock()
	n := 0
	for _, pc := range []*webrtc.PeerConnection{l.send, l.recv} {
		if pc == nil {
			continue
		}
		if s := pc.ICEConnectionState(); s != webrtc.ICEConnectionStateConnected && s != webrtc.ICEConnectionStateCompleted {
			return false
		}
		n++
	}
	return n > 0
}
