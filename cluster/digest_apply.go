package cluster

import (
	"errors"
	"time"
)

// ErrDigestSender is returned for a digest that does not carry its sender's own entry in the
// region it names: a node may speak only for its own region.
var ErrDigestSender = errors.New("cluster: digest without its sender's entry in its region")

// regionBeats is the subject an aggregator of region listens to: its nodes' heartbeats.
func regionBeats(region string) string { return SubjectHeartbeat + "." + regionToken(region) + ".*" }

// Applied is what one digest changed in a Membership.
type Applied struct {
	// Self: this node's own entry was in it, fresh: its heartbeat reached the aggregator and
	// the digest came back, so its NATS path works both ways (Membership.Self).
	Self bool
	// SelfReturned: this node's own heartbeats come back after they had stopped (what it sent
	// and should have received meanwhile is lost: re-sync).
	SelfReturned bool
	// Changes are the peers whose entry joined, restarted or returned, in the digest's order.
	Changes []EntryChange
}

// EntryChange is one peer's change from a digest entry.
type EntryChange struct {
	ID, Inc, Region string
	Rooms           int
	Change          Change
}

// ApplyDigest feeds a digest of from, received at now, to m: each entry of the digest's region
// is a heartbeat heard at now - age (entries of other regions, older than the timeout, or no
// newer than the peer's last heartbeat in m, change nothing). accept, if not nil, is asked
// before a peer's entry is recorded, and may refuse it (an incarnation the node saw retired);
// it runs with no lock held and may Remove the peer (a restart ends the old incarnation's
// state first). The whole digest is refused when it lacks its sender's own entry.
func ApplyDigest(m *Membership, from string, d Digest, now time.Time, accept func(e DigestEntry) bool) (Applied, error) {
	var a Applied
	sender := false
	for _, e := range d.Entries {
		if e.Stats.ID == from && e.Stats.Region == d.Region {
			sender = true
			break
		}
	}
	if !sender {
		return a, ErrDigestSender
	}
	for _, e := range d.Entries {
		if e.Stats.ID == "" || e.Stats.Region != d.Region || e.Inc == "" {
			continue
		}
		age := time.Duration(max(e.AgeMs, 0)) * time.Millisecond
		if age > m.timeout {
			continue
		}
		seen := now.Add(-age)
		if e.Stats.ID == m.self {
			// Own entry: fresh means both directions work now; a stale one proves only that
			// digests come, not that this node's heartbeats leave.
			if age <= 2*m.interval {
				a.Self = true
				a.SelfReturned = m.Self(now) || a.SelfReturned
			}
			continue
		}
		if last, ok := m.lastSeen(e.Stats.ID); ok && !seen.After(last) {
			continue // reported before (or a late report of an older beat)
		}
		if accept != nil && !accept(e) {
			continue
		}
		if ch := m.Heartbeat(e.Inc, e.Stats, seen); ch != Unchanged {
			a.Changes = append(a.Changes, EntryChange{ID: e.Stats.ID, Inc: e.Inc, Region: e.Stats.Region, Rooms: e.Stats.Rooms, Change: ch})
		}
	}
	return a, nil
}

// lastSeen is when a peer's last heartbeat was heard.
func (m *Membership) lastSeen(id string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peers[id]; p != nil {
		return p.seen, true
	}
	return time.Time{}, false
}

// regionBelow appends to ids the non-draining peers of region whose id is below self and whose
// last heartbeat is within the timeout before now, until ids holds n.
func (m *Membership) regionBelow(self, region string, now time.Time, ids []string, n int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.peers {
		if len(ids) >= n {
			break
		}
		if id < self && p.stats.Region == region && !p.stats.Draining && now.Sub(p.seen) <= m.timeout {
			ids = append(ids, id)
		}
	}
	return ids
}
