package cluster

import (
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// PeersHeard is Peers with when each one's load was heard (its last heartbeat: with regional
// aggregation, the digest's now - age), read together so that a load and its time always
// match: Pending ends a redirect's entry on the time of the load it is added to.
func (m *Membership) PeersHeard() ([]node.Stats, []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sorted := m.sortedLocked()
	stats := make([]node.Stats, len(sorted))
	heard := make([]time.Time, len(sorted))
	for i, p := range sorted {
		stats[i], heard[i] = p.stats, p.seen
	}
	return stats, heard
}
