package node

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Errors returned to the signaling layer, which maps each to a wire code.
var (
	ErrBadSDP       = errors.New("bad sdp")
	ErrBadCandidate = errors.New("bad ice candidate")
	ErrForbidden    = errors.New("not permitted by the token's grants")
	ErrNotFound     = errors.New("no such producer")
	ErrBadState     = errors.New("request not valid in this state")
	ErrClosed       = errors.New("participant closed")
	ErrDraining     = errors.New("node is draining")
)

// Notification methods sent to a participant's Listener (PROTOCOL.md).
const (
	EventOffer             = "offer"
	EventTrickle           = "trickle"
	EventParticipantJoined = "participantJoined"
	EventParticipantLeft   = "participantLeft"
	EventProducerAdded     = "producerAdded"
	EventProducerRemoved   = "producerRemoved"
	EventProducerMuted     = "producerMuted"
	EventMessage           = "message"
	EventClosed            = "closed"
)

// Transport names used in trickle.
const (
	TransportSend = "send"
	TransportRecv = "recv"
)

// maxDataMessage is the largest data-channel message relayed to the room.
const maxDataMessage = 16 << 10

// A Listener receives a participant's notifications. Notify must not block: the signaling
// layer queues the message for the participant's connection.
type Listener interface {
	Notify(method string, data any)
}

// Grant is what a participant's token allows.
type Grant struct {
	Publish, Subscribe bool
}

// A Participant is one client in a room: a send transport with its producers and a receive
// transport with its consumers. Its methods are safe for concurrent use. mu guards the
// participant's state only; the offer/answer exchanges of Publish and SubscribeOffer (which
// can wait for ICE gathering) run outside it, one at a time under neg, so leaving, trickle
// and the room's calls into the participant never wait for a negotiation.
//
// Its transports own the goroutines that read them; the participant owns the ones it starts
// itself (wg). Close waits for all of them.
type Participant struct {
	id            string
	identity      string
	joined        time.Time
	knewIDs       atomic.Pointer[[]string] // the remote sessions of its identity it superseded at join
	node          *Node
	room          *Room
	grant         Grant
	autoSubscribe bool
	listener      Listener
	log           hclog.Logger

	// neg serialises Publish and SubscribeOffer. It is never taken under mu.
	neg sync.Mutex
	// gatherDone is webrtc.GatheringCompletePromise (tests replace it to hold a gathering).
	gatherDone func(*webrtc.PeerConnection) <-chan struct{}

	mu              sync.Mutex
	closed          bool
	send            *transport
	byMid           map[string]*Producer
	recv            *transport
	consumers       map[string]*Consumer // by producer id
	watchTransports bool

	dc   atomic.Pointer[webrtc.DataChannel] // the data consumer, on the receive transport
	wg   sync.WaitGroup                     // the participant's own goroutines (goLocked)
	done chan struct{}
}

// ID is the participant's id (unique per session).
func (p *Participant) ID() string { return p.id }

// Info describes the participant.
func (p *Participant) Info() ParticipantInfo {
	return ParticipantInfo{ID: p.id, Identity: p.identity, JoinedAt: p.joined.UnixMilli()}
}

// Done is closed when the participant has closed.
func (p *Participant) Done() <-chan struct{} { return p.done }

// Room is the participant's room.
func (p *Participant) Room() *Room { return p.room }

// Start creates the receive transport (with the data consumer) and, with auto-subscribe,
// consumes every live producer of the room. The first offer follows as a notification.
func (p *Participant) Start() error {
	p.mu.Lock()
	err := p.ensureRecvLocked()
	if err == nil {
		p.negotiateLocked()
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if p.autoSubscribe && p.grant.Subscribe {
		for _, pr := range p.room.liveProducers() {
			if pr.participant != p {
				_ = p.Subscribe(pr.id)
			}
		}
	}
	return nil
}

func (p *Participant) ensureRecvLocked() error {
	if p.closed {
		return ErrClosed
	}
	if p.recv != nil {
		return nil
	}
	t, err := newTransport(TransportRecv, p.room.subscriberWorker())
	if err != nil {
		return err
	}
	t.pc.OnICECandidate(p.trickleOut(TransportRecv))
	dc, err := t.pc.CreateDataChannel("cascade", nil)
	if err != nil {
		t.close()
		return fmt.Errorf("data consumer: %w", err)
	}
	p.dc.Store(dc)
	p.recv = t
	return nil
}

// goLocked runs f on a goroutine owned by the participant: Close waits for it. Once the
// participant is closed it starts nothing and reports false. The caller holds mu.
func (p *Participant) goLocked(f func()) bool {
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

func (p *Participant) trickleOut(transport string) func(*webrtc.ICECandidate) {
	return func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		p.listener.Notify(EventTrickle, map[string]any{"transport": transport, "candidate": c.ToJSON()})
	}
}

// negotiateLocked offers the receive transport's current state, unless an offer is already
// waiting for its answer: then it offers again once that answer arrives (no glare).
func (p *Participant) negotiateLocked() {
	t := p.recv
	if t == nil || p.closed {
		return
	}
	if t.offerPending {
		t.needOffer = true
		return
	}
	offer, err := t.pc.CreateOffer(nil)
	if err == nil {
		err = t.pc.SetLocalDescription(offer)
	}
	if err != nil {
		p.log.Warn("receive transport offer failed", "error", err)
		return
	}
	t.offerPending, t.needOffer = true, false
	p.listener.Notify(EventOffer, map[string]string{"sdp": offer.SDP})
}

// Answer applies the client's answer to the last offer of the receive transport.
func (p *Participant) Answer(answer string) error {
	if err := checkSDP(answer); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	t := p.recv
	if t == nil || !t.offerPending {
		return fmt.Errorf("%w: no offer is outstanding", ErrBadState)
	}
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	t.offerPending = false
	if t.needOffer {
		p.negotiateLocked()
	}
	return nil
}

// AddCandidate applies a trickled remote ICE candidate to one of the transports. An empty
// candidate marks the end of candidates and is accepted.
func (p *Participant) AddCandidate(dir string, c webrtc.ICECandidateInit) error {
	var t *transport
	p.mu.Lock()
	switch dir {
	case TransportSend:
		t = p.send
	case TransportRecv:
		t = p.recv
	default:
		p.mu.Unlock()
		return fmt.Errorf("%w: unknown transport %q", ErrBadCandidate, dir)
	}
	p.mu.Unlock()
	if t == nil || t.pc.RemoteDescription() == nil {
		return fmt.Errorf("%w: the %s transport is not negotiated", ErrBadState, dir)
	}
	if c.Candidate == "" {
		return nil
	}
	if err := t.pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	return nil
}

// Publish applies an offer for the send transport and returns the answer and the producers of
// the transport. Each sending media section becomes a producer, announced to the room when its
// media starts; a section that stops sending ends its producer. With gather the answer waits
// for every local candidate (WHIP).
func (p *Participant) Publish(offer string, gather bool) (string, []ProducerInfo, error) {
	sending, err := sendingMedia(offer)
	if err != nil {
		return "", nil, err
	}
	if sending > 0 && !p.grant.Publish {
		return "", nil, ErrForbidden
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
	ended, err := p.updateProducers(send)
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
// receives, and returns the producers of the sections that stopped.
func (p *Participant) updateProducers(send *webrtc.PeerConnection) ([]*Producer, error) {
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
			p.byMid[s.mid] = newProducer(p.node.newID("PR"), s.mid, s.kind, p, p.room.home, send, p.node.opts.KeyframeInterval)
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
	pr.track.Store(track)
	if p.node.opts.Naive {
		naive, err := webrtc.NewTrackLocalStaticRTP(track.Codec().RTPCodecCapability, pr.id, p.id)
		if err != nil {
			p.log.Warn("naive track", "error", err)
			return
		}
		pr.naive = naive
	}
	p.room.addProducer(pr)
	t.drainRTCP(receiver)
	pr.readLoop(track)
	p.room.removeProducer(pr)
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
		if len(m.Data) > maxDataMessage {
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

// Subscribe consumes a producer of the room on the receive transport.
func (p *Participant) Subscribe(producerID string) error {
	if !p.grant.Subscribe {
		return ErrForbidden
	}
	pr := p.room.producer(producerID)
	if pr == nil || pr.participant == p {
		return ErrNotFound
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ensureRecvLocked(); err != nil {
		return err
	}
	if _, ok := p.consumers[producerID]; ok {
		return nil
	}
	t := p.recv
	c := newConsumer(pr, p, t.worker, t.pc)
	var track webrtc.TrackLocal = c
	if pr.naive != nil {
		track = pr.naive
	}
	sender, err := t.pc.AddTrack(track)
	if err != nil {
		return fmt.Errorf("add consumer: %w", err)
	}
	c.sender = sender
	if !pr.addConsumer(c) {
		_ = t.pc.RemoveTrack(sender)
		return ErrNotFound
	}
	p.consumers[producerID] = c
	c.worker.addConsumer(c)
	p.room.consumerAdded(c.worker, 1)
	t.goRead(c.readRTCP)
	p.negotiateLocked()
	return nil
}

// Unsubscribe stops consuming a producer.
func (p *Participant) Unsubscribe(producerID string) error {
	p.mu.Lock()
	c := p.consumers[producerID]
	p.mu.Unlock()
	if c == nil {
		return ErrNotFound
	}
	c.producer.removeConsumer(c)
	p.dropConsumer(c)
	return nil
}

// dropConsumer removes a consumer from the receive transport (its producer already forgot it).
func (p *Participant) dropConsumer(c *Consumer) {
	c.paused.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.consumers[c.producer.id] != c {
		return
	}
	delete(p.consumers, c.producer.id)
	c.worker.removeConsumer(c)
	p.room.consumerAdded(c.worker, -1)
	if !p.closed {
		_ = p.recv.pc.RemoveTrack(c.sender)
		p.negotiateLocked()
	}
}

// Mute pauses (or resumes) forwarding of one of the participant's own producers.
func (p *Participant) Mute(producerID string, muted bool) error {
	if !p.grant.Publish {
		return ErrForbidden
	}
	pr := p.room.producer(producerID)
	if pr == nil || pr.participant != p {
		return ErrNotFound
	}
	if pr.muted.Swap(muted) == muted {
		return nil
	}
	if !muted {
		for _, c := range pr.consumers() {
			c.resync.Store(true)
		}
		pr.lastKF.Store(0)
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

// Message sends an application message (chat) to every participant of the room, the sender
// included.
func (p *Participant) Message(data any) {
	p.room.broadcast(nil, EventMessage, messageNote(p.id, p.identity, data))
	p.node.emit(Message{Room: p.room, From: p.id, Identity: p.identity, Data: data})
}

// Close removes the participant: its producers and consumers end, its transports close and the
// room is told. Close is idempotent, and returns once the participant is gone and every
// goroutine it or its transports started has returned.
func (p *Participant) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done // another caller is closing it: return when that is done
		return
	}
	p.closed = true
	producers := make([]*Producer, 0, len(p.byMid))
	for _, pr := range p.byMid {
		producers = append(producers, pr)
	}
	consumers := make([]*Consumer, 0, len(p.consumers))
	for _, c := range p.consumers {
		consumers = append(consumers, c)
	}
	send, recv := p.send, p.recv
	p.mu.Unlock()
	defer close(p.done)

	for _, pr := range producers {
		p.room.removeProducer(pr)
	}
	for _, c := range consumers {
		c.producer.removeConsumer(c)
		p.dropConsumer(c)
	}
	for _, t := range []*transport{send, recv} {
		if t != nil {
			t.close() // and wait for its readers
		}
	}
	p.wg.Wait()
	p.node.leave(p)
}

// sendingMedia parses an SDP offer and counts its audio and video sections that send media.
func sendingMedia(s string) (int, error) {
	if err := checkSDP(s); err != nil {
		return 0, err
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	n := 0
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" && m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		_, recvonly := m.Attribute("recvonly")
		_, inactive := m.Attribute("inactive")
		if !recvonly && !inactive {
			n++
		}
	}
	return n, nil
}

// answerAsOffer flips the directions of an answer so that sendingMedia counts what it accepts.
func answerAsOffer(s string) string {
	var d sdp.SessionDescription
	if d.UnmarshalString(s) != nil {
		return s
	}
	for _, m := range d.MediaDescriptions {
		for i, a := range m.Attributes {
			if a.Key == "recvonly" {
				m.Attributes[i].Key = "sendonly"
			}
		}
	}
	out, err := d.Marshal()
	if err != nil {
		return s
	}
	return string(out)
}

func checkSDP(s string) error {
	if len(s) == 0 {
		return fmt.Errorf("%w: empty", ErrBadSDP)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return nil
}

// knew lists the remote sessions of the participant's identity that its join superseded.
func (p *Participant) knew() []string {
	if k := p.knewIDs.Load(); k != nil {
		return *k
	}
	return nil
}
