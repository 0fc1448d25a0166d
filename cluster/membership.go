package cluster

import (
	"sort"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// DefaultHeartbeat is the default interval of a node's heartbeats; a node silent for
// MissedBeats intervals has left.
const (
	DefaultHeartbeat = time.Second
	MissedBeats      = 3
)

// Membership is the peers table: the live nodes other than this one, from their heartbeats. It
// is a deterministic state machine: heartbeats and the time are fed in (Heartbeat, Tick), it
// starts no goroutine and reads no clock, so a test or a simulator drives it directly. It is
// safe for concurrent use.
type Membership struct {
	self    string
	timeout time.Duration

	mu       sync.Mutex
	peers    map[string]*member
	selfSeen time.Time // when this node's own heartbeat last came back
}

type member struct {
	stats node.Stats
	inc   string
	seen  time.Time
}

// Change is what a heartbeat changed in the table.
type Change int

// Changes.
const (
	Unchanged Change = iota // a known node beat again
	Joined                  // a node joined (or came back after it was dropped)
	Restarted               // a known node beats under a new incarnation: its old state is gone
)

// NewMembership returns the table of node self, where a peer silent for timeout has left.
func NewMembership(self string, timeout time.Duration) *Membership {
	return &Membership{self: self, timeout: timeout, peers: make(map[string]*member)}
}

// Heartbeat records a node's announcement (its incarnation and load) received at now.
func (m *Membership) Heartbeat(inc string, s node.Stats, now time.Time) Change {
	if s.ID == "" || s.ID == m.self {
		return Unchanged
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[s.ID]
	ch := Unchanged
	switch {
	case p == nil:
		p = &member{}
		m.peers[s.ID] = p
		ch = Joined
	case p.inc != inc:
		ch = Restarted
	}
	p.stats, p.inc, p.seen = s, inc, now
	return ch
}

// Self records that this node's own heartbeat came back (through the bus) at now.
func (m *Membership) Self(now time.Time) {
	m.mu.Lock()
	m.selfSeen = now
	m.mu.Unlock()
}

// Tick forgets the nodes not heard from for longer than the timeout, both before now and before
// this node last heard its own heartbeat, and returns them, sorted. The second condition keeps
// the peers while this node hears nobody, itself included: then the silence is its own (its
// process was starved, or its NATS path is down), not theirs.
func (m *Membership) Tick(now time.Time) (gone []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.peers {
		if now.Sub(p.seen) > m.timeout && m.selfSeen.Sub(p.seen) > m.timeout {
			gone = append(gone, id)
			delete(m.peers, id)
		}
	}
	sort.Strings(gone)
	return gone
}

// Remove forgets a node at once (it said goodbye, or restarted).
func (m *Membership) Remove(id string) {
	m.mu.Lock()
	delete(m.peers, id)
	m.mu.Unlock()
}

// Peers lists the live nodes other than this one, sorted by id.
func (m *Membership) Peers() []node.Stats {
	m.mu.Lock()
	out := make([]node.Stats, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p.stats)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len is the number of live peers.
func (m *Membership) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.peers)
}

// Peer implements relay.Peers.
func (m *Membership) Peer(id string) (relay.Peer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[id]
	if p == nil {
		return relay.Peer{}, false
	}
	return relay.Peer{ID: id, Region: p.stats.Region, RelayAddr: p.stats.RelayAddr}, true
}

// Regions implements relay.Peers.
func (m *Membership) Regions() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.peers))
	for id, p := range m.peers {
		out[id] = p.stats.Region
	}
	return out
}

// Incarnation is a live peer's incarnation ("" for a node not in the table).
func (m *Membership) Incarnation(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peers[id]; p != nil {
		return p.inc
	}
	return ""
}
