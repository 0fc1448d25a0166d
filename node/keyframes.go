package node

import "time"

// Keyframe requests without storms (issue 15): a subscriber's loss is healed with
// retransmissions from the producer's cache first; its keyframe request goes upstream (where
// it is collapsed per producer and layer) only when a retransmission cannot help. A receiver
// often asks for a keyframe at the same moment it NACKs (a frame it cannot complete): while
// the consumer has resent packets to it within the last round trip, the first such request is
// held back, since the retransmissions may still complete the frame. A receiver that asks
// again after pliHold is still broken, and that request goes up; so do the budget's own
// requests (rtxbudget: resending stopped) and every request when nothing was resent.

// pliHold is how long after a held-back keyframe request the next one goes up regardless.
const pliHold = time.Second

// noteResend records that a retransmission was sent to the subscriber (feedback goroutine).
func (c *Consumer) noteResend(now time.Time) { c.bw.lastResend.Store(now.UnixNano()) }

// holdPLI tells whether the subscriber's keyframe request at now can wait for the
// retransmissions in flight (and then counts it as held back).
func (c *Consumer) holdPLI(now time.Time) bool {
	c.rtxMu.Lock()
	rtt := c.rtx.RTT()
	c.rtxMu.Unlock()
	t := now.UnixNano()
	if t-c.bw.lastResend.Load() > int64(rtt) || t-c.bw.heldPLI.Load() < int64(pliHold) {
		return false
	}
	c.bw.heldPLI.Store(t)
	c.worker.heldPLIs.Add(1)
	return true
}
