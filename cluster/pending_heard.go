package cluster

import (
	"sort"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// PeersHeard is Peers with when each one's load was heard (its last heartbeat: with regional
// aggregation, the digest's now - age), read together so that a load and its time always
// match: Pending ends a redirect's entry on the time of the load it is added to.
func (m *Membership) PeersHeard() ([]node.Stats, []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sorted == nil { // as Peers does: sorted again only after a join or leave
		m.sorted = make([]*member, 0, len(m.peers))
		for _, p := range m.peers {
			m.sorted = append(m.sorted, p)
		}
		sort.Slice(m.sorted, func(i, j int) bool { return m.sorted[i].id < m.sorted[j].id })
	}
	stats := make([]node.Stats, len(m.sorted))
	heard := make([]time.Time, len(m.sorted))
	for i, p := range m.sorted {
		stats[i], heard[i] = p.stats, p.seen
	}
	return stats, heard
}
