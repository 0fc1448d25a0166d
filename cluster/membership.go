package cluster

import (
	"sort"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// Heartbeat defaults: a node announces itself every DefaultHeartbeat; a peer silent for
// DefaultTimeout has left. A shorter timeout detects a dead node (and re-attaches the relay
// trees it fed) sooner, at the cost of heartbeat traffic and of false alarms on a loaded node
// or a slow NATS path; it must span at least two intervals.
const (
	DefaultHeartbeat = time.Second
	DefaultTimeout   = 3 * time.Second
)

// Membership is the peers table: the live nodes other than this one, from their heartbeats and
// the keepalives of the relay links to them. It is a deterministic state machine: heartbeats,
// relay keepalives and the time are fed in (Heartbeat, Self, Relayed, Tick), it starts no
// goroutine and reads no clock, so a test or a simulator drives it directly. It is safe for
// concurrent use.
//
// A peer has left when it is silent on both paths: no heartbeat for the timeout while this
// node's own heartbeats still come back through NATS (else the silence is this node's: its
// NATS path is down, or its process was starved), and no keepalive on the relay link to it for
// the timeout (when there is one: a link that still carries media proves its peer alive
// whatever NATS does). Media of a peer's producers arriving through the relay tree proves it
// alive too.
type Membership struct {
	self              string
	interval, timeout time.Duration

	mu       sync.Mutex
	peers    map[string]*member
	sorted   []*member // peers by id, for Peers (nil: to be sorted again after a join or leave)
	selfSeen time.Time // when this node's own heartbeat last came back
	lastTick time.Time
}

type member struct {
	id      string
	stats   node.Stats
	inc     string
	seen    time.Time // last heartbeat
	relayed time.Time // last keepalive on the relay link (zero: no link)
	carried time.Time // last media of its producers, relayed through any node
}

// Change is what a heartbeat changed in the table.
type Change int

// Changes.
const (
	Unchanged Change = iota // a known node beat again
	Joined                  // a node joined (or came back after it was dropped)
	Restarted               // a known node beats under a new incarnation: its old state is gone
	Returned                // a known node beat after missing beats: messages of it were lost
)

// NewMembership returns the table of node self, whose peers beat every interval and have left
// when silent for timeout.
func NewMembership(self string, interval, timeout time.Duration) *Membership {
	return &Membership{self: self, interval: interval, timeout: timeout, peers: make(map[string]*member)}
}

// Timeout is how long a silent peer stays in the table.
func (m *Membership) Timeout() time.Duration { return m.timeout }

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
		p = &member{id: s.ID}
		m.peers[s.ID] = p
		m.sorted = nil
		ch = Joined
	case p.inc != inc:
		ch = Restarted
	case m.missed(p.seen, now):
		ch = Returned
	}
	p.stats, p.inc, p.seen = s, inc, now
	return ch
}

// missed tells whether beats were lost between two received at last and now.
func (m *Membership) missed(last, now time.Time) bool {
	return !last.IsZero() && now.Sub(last) > 2*m.interval
}

// Self records that this node's own heartbeat came back (through the bus) at now; true when it
// comes back after missing beats (this node's NATS path was down: what it sent meanwhile, and
// what it should have received, is lost).
func (m *Membership) Self(now time.Time) (returned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	returned = m.missed(m.selfSeen, now)
	m.selfSeen = now
	return returned
}

// Reachable tells whether this node's own heartbeat came back within the timeout before now:
// its NATS path works.
func (m *Membership) Reachable(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.selfSeen.IsZero() && now.Sub(m.selfSeen) <= m.timeout
}

// Relayed records that the relay link to a peer was last heard at (a keepalive, or feedback).
func (m *Membership) Relayed(id string, at time.Time) {
	m.mu.Lock()
	if p := m.peers[id]; p != nil && at.After(p.relayed) {
		p.relayed = at
	}
	m.mu.Unlock()
}

// Carried records that media of a peer's producers arrived at (relayed here through the tree):
// the peer lives, whatever its heartbeats say. Unlike a link's keepalives, media that stops
// proves nothing (a publisher may pause).
func (m *Membership) Carried(id string, at time.Time) {
	m.mu.Lock()
	if p := m.peers[id]; p != nil && at.After(p.carried) {
		p.carried = at
	}
	m.mu.Unlock()
}

// Tick forgets the peers silent on both paths at now (see Membership) and returns them,
// sorted. Time this node did not tick for (its process was paused or starved: ticks more than
// two intervals apart) does not count as the peers' silence.
func (m *Membership) Tick(now time.Time) (gone []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if gap := now.Sub(m.lastTick); !m.lastTick.IsZero() && gap > 2*m.interval {
		pause := gap - m.interval
		shift := func(t *time.Time) { // what was heard before the pause
			if !t.IsZero() && !t.After(m.lastTick) {
				*t = t.Add(pause)
			}
		}
		for _, p := range m.peers {
			shift(&p.seen)
			shift(&p.relayed)
			shift(&p.carried)
		}
		shift(&m.selfSeen)
	}
	m.lastTick = now
	for id, p := range m.peers {
		if now.Sub(p.seen) <= m.timeout || now.Sub(p.carried) <= m.timeout {
			continue
		}
		natsWorks := m.selfSeen.Sub(p.seen) > m.timeout
		linked := !p.relayed.IsZero()
		if linked && now.Sub(p.relayed) <= m.timeout {
			continue // the relay link still hears it
		}
		if natsWorks || linked {
			gone = append(gone, id)
			delete(m.peers, id)
			m.sorted = nil
		}
	}
	sort.Strings(gone)
	return gone
}

// Remove forgets a node at once (it said goodbye, or restarted).
func (m *Membership) Remove(id string) {
	m.mu.Lock()
	if _, ok := m.peers[id]; ok {
		delete(m.peers, id)
		m.sorted = nil
	}
	m.mu.Unlock()
}

// Peers lists the live nodes other than this one, sorted by id.
func (m *Membership) Peers() []node.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	sorted := m.sortedLocked()
	out := make([]node.Stats, len(sorted))
	for i, p := range sorted {
		out[i] = p.stats
	}
	return out
}

// sortedLocked is the peers by id, sorted again only after a join or leave (placement reads
// them per join). m.mu is held.
func (m *Membership) sortedLocked() []*member {
	if m.sorted == nil {
		m.sorted = make([]*member, 0, len(m.peers))
		for _, p := range m.peers {
			m.sorted = append(m.sorted, p)
		}
		sort.Slice(m.sorted, func(i, j int) bool { return m.sorted[i].id < m.sorted[j].id })
	}
	return m.sorted
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

// Draining implements relay.Peers: the live peers whose heartbeat says they drain, sorted.
func (m *Membership) Draining() []string {
	m.mu.Lock()
	var out []string
	for id, p := range m.peers {
		if p.stats.Draining {
			out = append(out, id)
		}
	}
	m.mu.Unlock()
	sort.Strings(out)
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
