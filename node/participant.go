package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
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

// Grant is what a participant's token allows, and what it says of the participant.
type Grant struct {
	Publish, Subscribe bool
	// Metadata is the participant's first metadata (the token's metadata claim).
	Metadata string
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
	chat, data    *sendLimit             // the participant's allowances as a sender
	metadata      atomic.Pointer[string] // the token's metadata claim, then the room API's
	epoch         uint64                 // the session's resumes (resume.go)

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
	resumed         []ProducerInfo // the resumed session's producers not published again (Resumable)
	// superseded: a newer copy of the session took over (Room.Supersede); guarded by room.mu.
	superseded bool

	prefs layerPrefs // preferred simulcast layers by producer (layers.go)

	dc   atomic.Pointer[webrtc.DataChannel] // the data consumer, on the receive transport
	wg   sync.WaitGroup                     // the participant's own goroutines (goLocked)
	done chan struct{}
}

// ID is the participant's id (unique per session).
func (p *Participant) ID() string { return p.id }

// Info describes the participant.
func (p *Participant) Info() ParticipantInfo {
	info := ParticipantInfo{ID: p.id, Identity: p.identity, JoinedAt: p.joined.UnixMilli(), Epoch: p.epoch}
	if m := p.metadata.Load(); m != nil {
		info.Metadata = *m
	}
	return info
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
			if pr.publisher() != p {
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
	t.drainDataChannel(dc)
	p.dc.Store(dc)
	p.recv = t
	p.startBWE(t)
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
		// The receive transport keeps its offer pending: its consumers wait on a client that
		// may not know it, so an operator must see this.
		p.log.Warn("receive transport answer refused", "error", err)
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

// Subscribe consumes a producer of the room on the receive transport.
func (p *Participant) Subscribe(producerID string) error {
	if !p.grant.Subscribe {
		return ErrForbidden
	}
	pr := p.room.producer(producerID)
	if pr == nil || pr.publisher() == p {
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
	c.bw.cc = t.cc
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

// Message sends an application message (chat) to every participant of the room, the sender
// included. It needs the publish grant (ErrForbidden) and is limited per sender (ErrRateLimited,
// ErrFlooding): a flood is refused at its sender, never passed on to the receivers.
func (p *Participant) Message(data json.RawMessage) error {
	if !p.grant.Publish {
		return fmt.Errorf("%w: chat needs the publish grant", ErrForbidden)
	}
	if err := p.chat.allow(len(data), time.Now()); err != nil {
		p.node.metrics.refused[refusedChat].Add(1)
		c := p.node.opts.Limits.Chat
		return fmt.Errorf("%w: chat is limited to %g messages (bursts of %d) and %d bytes per second", err, c.Messages, c.Burst, c.Bytes)
	}
	p.room.broadcast(nil, EventMessage, messageNote(p.id, p.identity, data))
	p.node.emit(Message{Room: p.room, From: p.id, Identity: p.identity, Data: data})
	return nil
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

// knew lists the remote sessions of the participant's identity that its join superseded.
func (p *Participant) knew() []string {
	if k := p.knewIDs.Load(); k != nil {
		return *k
	}
	return nil
}
