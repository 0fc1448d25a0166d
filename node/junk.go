package node

import (
	"sync/atomic"

	"github.com/pion/logging"
)

// junkLogger passes a pion logger through and counts its warnings. The ICE muxes warn when,
// and (nearly) only when, they refuse what arrived: a STUN message that does not decode or
// names no user, on UDP; a TCP connection whose first packet is not a STUN binding request for
// a known ufrag, on ICE-TCP. So junk sprayed at a media port shows in the metrics.
type junkLogger struct {
	logging.LeveledLogger
	n *atomic.Uint64
}

func (l junkLogger) Warn(msg string) {
	l.n.Add(1)
	l.LeveledLogger.Warn(msg)
}

func (l junkLogger) Warnf(format string, args ...any) {
	l.n.Add(1)
	l.LeveledLogger.Warnf(format, args...)
}
