package node

import (
	"strings"
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
	if !isConnWarning(format) {
		l.n.Add(1)
	}
	l.LeveledLogger.Warnf(format, args...)
}

// isConnWarning reports whether the ICE-TCP mux's warning of format is about a connection it
// had accepted, as it ends: the node closes a transport's TCP connections once a UDP pair is
// selected (icetcp.go), and when the transport closes; neither is a refusal. Matched on pion's
// format strings.
func isConnWarning(format string) bool {
	for _, w := range [...]string{
		"Failed to read streaming packet", // the connection's reader, when it is closed
		"Failed to read from buffer",      // its buffered writer, likewise
		"Failed to write",
		"%v: %s", // errClosingConnection: "failed to close connection: ..."
	} {
		if strings.HasPrefix(format, w) {
			return true
		}
	}
	return false
}
