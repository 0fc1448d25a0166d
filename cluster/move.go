package cluster

import "github.com/cascade-sfu/cascade/node"

// Moves (PROTOCOL.md, "Resume"). A participant that resumes its session on another node keeps
// its id; RoomState turns the new node's announcements into Supersede (the session's copy here,
// if any, is fenced and becomes remote) and MoveProducer (its producers change origin: their
// consumers here stay and switch at a keyframe). The node then emits ProducerMoved, and the
// pipes re-pipe the producer from its new origin.

// producerMoved handles the node's ProducerMoved: a producer that moved to another node is
// re-piped from there if it is wanted here; the old pipe is retired. (A producer adopted here
// is announced by the node's ProducerAdded, which the other nodes turn into a move.)
func (c *Cluster) producerMoved(e node.ProducerMoved) {
	c.pipes.Moved(e.Producer, e.From)
}

// applyMove carries out a MoveProducer effect. A move to the origin the producer had (its node
// restarted, and the session resumed on the new incarnation) emits no ProducerMoved, but the
// pipe from the old incarnation ended with it: the producer's demand is served again.
func (c *Cluster) applyMove(r *node.Room, e MoveProducer) {
	p, _, err := r.MoveProducer(e.Producer, e.Origin)
	if err != nil {
		c.log.Warn("cannot move producer", "producer", e.Producer.ID, "origin", e.Origin, "error", err)
		return
	}
	if p != nil && p.Origin() != "" {
		c.pipes.Demand(p)
	}
}
