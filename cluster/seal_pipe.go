package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cascade-sfu/cascade/relay"
)

// The relay's control path (relay.Signaler) and its handlers: pipe requests and replies carry
// relay link keys, so their bodies are Sealed to the receiving incarnation.

// ErrNoPeerKey is returned by RequestPipe for a node whose vouched keys this node has not yet
// heard (in its heartbeats): the request cannot be sealed to it. The pipe retries.
var ErrNoPeerKey = errors.New("cluster: no vouched key of the node yet")

// RequestPipe implements relay.Signaler. The request, which carries this node's receiving key
// on the link, is sealed to the parent's current incarnation; the reply, which carries the
// parent's, is sealed back to this one, bound to the request.
func (c *Cluster) RequestPipe(ctx context.Context, parent string, req relay.PipeRequest) (relay.PipeReply, error) {
	to, ok := c.verify.Peer(parent)
	if !ok {
		return relay.PipeReply{}, fmt.Errorf("%w: %s", ErrNoPeerKey, parent)
	}
	plain, err := json.Marshal(req)
	if err != nil {
		return relay.PipeReply{}, err
	}
	sealed, err := c.keys.SealTo(to, typePipe, nil, plain)
	if err != nil {
		return relay.PipeReply{}, err
	}
	seq := c.stamp.Reserve()
	b, err := c.stamp.SealAs(seq, typePipe, sealed)
	if err != nil {
		return relay.PipeReply{}, err
	}
	data, err := c.bus.Request(ctx, subjectRelay(parent, typePipe), b)
	if err != nil {
		return relay.PipeReply{}, err
	}
	e, ok := c.receive(Msg{Data: data})
	if !ok || e.Node != parent || e.Type != typePipeReply {
		return relay.PipeReply{}, ErrBadEnvelope
	}
	var rep relay.PipeReply
	if json.Unmarshal(e.Body, &sealed) != nil {
		return relay.PipeReply{}, ErrBadEnvelope
	}
	if plain, err = c.keys.OpenFrom(e.Cert, typePipeReply, pipeBind(seq), sealed); err != nil {
		c.reject(rejSealed, e.Node)
		return relay.PipeReply{}, err
	}
	if json.Unmarshal(plain, &rep) != nil {
		return relay.PipeReply{}, ErrBadEnvelope
	}
	return rep, nil
}

// pipeBind binds a pipe reply to its request: the request's sequence number (the asker's
// incarnation is bound already, as the recipient).
func pipeBind(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// Unpipe implements relay.Signaler.
func (c *Cluster) Unpipe(parent string, req relay.PipeRequest) {
	c.send(subjectRelay(parent, typeUnpipe), typeUnpipe, req)
}

// Dropped implements relay.Signaler.
func (c *Cluster) Dropped(child string, req relay.PipeRequest) {
	c.send(subjectRelay(child, typeDropped), typeDropped, req)
}

// Layers implements relay.Signaler: a child's demand for a pipe's layers (dynacast).
func (c *Cluster) Layers(parent string, req relay.PipeRequest) {
	c.send(subjectRelay(parent, typeLayers), typeLayers, req)
}

// Piped implements relay.Signaler: a room event.
func (c *Cluster) Piped(roomName, producer, parent string) {
	if parent == "" {
		c.publish(roomName, evUnpiped, pipedBody{Producer: producer})
		return
	}
	c.publish(roomName, evPiped, pipedBody{Producer: producer, Parent: parent})
}

func (c *Cluster) send(subject, typ string, body any) {
	select {
	case <-c.stop:
		return
	default:
	}
	if b, err := c.stamp.Seal(typ, body); err == nil {
		_ = c.bus.Publish(Msg{Subject: subject, Data: b})
	}
}

// pipeRequest opens a relay request and checks that it comes from the node it names.
func (c *Cluster) pipeRequest(m Msg, typ string) (relay.PipeRequest, bool) {
	var req relay.PipeRequest
	e, ok := c.receive(m)
	if !ok || e.Type != typ || json.Unmarshal(e.Body, &req) != nil {
		return req, false
	}
	if req.From != e.Node {
		c.reject(rejMismatch, e.Node)
		return req, false
	}
	return req, true
}

// onPipe serves a pipe request (sealed to this incarnation) and seals the reply to the asker.
func (c *Cluster) onPipe(m Msg) {
	e, ok := c.receive(m)
	if !ok || e.Type != typePipe || m.Reply == "" {
		return // malformed, forged, or a replay of a request answered before
	}
	var sealed Sealed
	var req relay.PipeRequest
	if json.Unmarshal(e.Body, &sealed) != nil {
		c.reject(rejMalformed, e.Node)
		return
	}
	plain, err := c.keys.OpenFrom(e.Cert, typePipe, nil, sealed)
	if err != nil {
		c.reject(rejSealed, e.Node)
		return
	}
	if json.Unmarshal(plain, &req) != nil || req.From != e.Node {
		c.reject(rejMismatch, e.Node)
		return
	}
	rep, err := json.Marshal(c.pipes.ServePipe(req))
	if err != nil {
		return
	}
	if sealed, err = c.keys.SealTo(e.Cert, typePipeReply, pipeBind(e.Seq), rep); err != nil {
		return
	}
	if b, err := c.stamp.Seal(typePipeReply, sealed); err == nil {
		_ = c.bus.Publish(Msg{Subject: m.Reply, Data: b})
	}
}

func (c *Cluster) onUnpipe(m Msg) {
	if req, ok := c.pipeRequest(m, typeUnpipe); ok {
		c.pipes.Unpiped(req)
	}
}

func (c *Cluster) onDropped(m Msg) {
	if req, ok := c.pipeRequest(m, typeDropped); ok {
		c.pipes.Dropped(req)
	}
}

// maxDemand bounds a layer demand's message: a real one is well under 2 KiB (names, SSRC,
// mask, the envelope's certificate and signature), so a larger one is refused unread.
const maxDemand = 4 << 10

// onLayers serves a child's demand for a pipe's layers (dynacast).
func (c *Cluster) onLayers(m Msg) {
	if len(m.Data) > maxDemand {
		c.reject(rejMalformed, "")
		return
	}
	if req, ok := c.pipeRequest(m, typeLayers); ok {
		c.pipes.ServeLayers(req)
	}
}
