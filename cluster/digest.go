package cluster

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Regional heartbeat aggregation. Heartbeats used to be all-to-all: every node received every
// other node's, N per node per interval. Now a node publishes its heartbeat on its region's
// subject, which only two nodes of the region listen to: the primary aggregator and its backup
// (the two lowest ids among the region's live, non-draining nodes, as every node's Membership
// sees them). The primary publishes one digest per interval on the region's digest subject:
// every region node's stats and incarnation, and how long ago its last heartbeat arrived. Every
// node listens to every region's digests (one wildcard), so a node receives R digests per
// interval for R regions, whatever the number of nodes; the aggregators receive their region's
// heartbeats on top. The backup publishes only while no other node's digest of the region has
// arrived for takeoverAfter (1.25 intervals): the primary died or lost NATS.
//
// A receiver feeds the entries to its Membership as heartbeats heard at now - age (ApplyDigest),
// so its rules hold unchanged: missed beats are Returned, a new incarnation Restarted, a peer
// silent for the timeout while this node's own entry comes back fresh is dropped, and a
// receiver whose own entry stops coming (its NATS path is down, or its region's aggregators
// are) drops nobody.
//
// Trust: a digest is an Envelope signed by its aggregator like any control message, so an
// outsider cannot forge or replay one (Verifier, Dedup). Its entries are the aggregator's
// report of heartbeats it verified, vouched for by the aggregator's signature, not by each
// node's own: a node of the cluster is trusted to report its region honestly, as it is trusted
// with room events. A digest must carry its sender's own entry in the region it names, and
// entries of other regions are ignored, so a node cannot speak for another region's nodes.

// Subjects of regional aggregation: a node's heartbeat goes to HeartbeatSubject (its region's
// aggregators listen to regionBeats), a region's digest to DigestSubject (every node listens to
// subjectDigests).
const (
	subjectDigestPrefix = "cascade.region"
	subjectDigests      = subjectDigestPrefix + ".*.digest"
)

// takeoverAfter is how long, in quarter intervals, the backup waits without another node's
// digest of its region before it publishes its own: 1.25 intervals. The last digest's entries
// are up to one interval old, so a region node's heartbeat is at most about 2.35 intervals old
// (plus a check's tenth and the NATS delay) when the backup's first digest arrives: within the
// default timeout of three, the other regions drop nobody meanwhile; within the region, nodes
// whose own entry stops coming drop nobody at all. The primary publishes every 1 to 1.1
// intervals, so a backup covers it only when a digest is late by a quarter interval: one extra
// digest, no harm.
const takeoverAfter = 5 // quarter intervals

// DigestBudget bounds one digest message's body, well under NATS's default 1 MiB payload
// limit: a region whose entries exceed it is published in several parts (each a whole digest
// of some of the region's nodes, with the sender's own entry first).
const DigestBudget = 256 << 10

// HeartbeatSubject is the subject node id of region publishes its heartbeat on.
func HeartbeatSubject(region, id string) string {
	return SubjectHeartbeat + "." + regionToken(region) + "." + id
}

// DigestSubject is the subject region's digests are published on.
func DigestSubject(region string) string {
	return subjectDigestPrefix + "." + regionToken(region) + ".digest"
}

// regionToken makes a region name one subject token: "-" for the empty region, and characters
// NATS gives a meaning replaced. Two names mapped to one token share a subject, which costs
// traffic, not correctness: entries are filtered by the region they name.
func regionToken(region string) string {
	if region == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' {
			return '_'
		}
		return r
	}, region)
}

// Digest is one region's heartbeats as its aggregator heard them, or a part of them.
type Digest struct {
	Region  string        `json:"region"`
	Entries []DigestEntry `json:"entries"`
}

// DigestEntry is one node's last heartbeat heard by the aggregator.
type DigestEntry struct {
	Inc string `json:"inc"`
	// AgeMs is how long before the digest was sealed the heartbeat arrived: receivers compare
	// only durations, never two nodes' clocks.
	AgeMs int64      `json:"age_ms"`
	Stats node.Stats `json:"stats"`
	// Cert is the node incarnation's vouched keys, as its heartbeat carried them: receivers
	// check the voucher (once per incarnation) and seal pipe requests to its Box key.
	Cert *Cert `json:"cert"`
}

// Role is a node's part in its region's aggregation.
type Role int

// Roles.
const (
	RoleNone    Role = iota // publishes its heartbeat, listens to digests only
	RolePrimary             // listens to the region's heartbeats, publishes a digest per interval
	RoleBackup              // listens too; publishes while the primary's digests are missing
)

func (r Role) String() string {
	return [...]string{"none", "primary", "backup"}[r]
}

// Aggregator is a node's side of its region's heartbeat aggregation: its role, the heartbeats
// it heard while it listens, and the digests due. A deterministic state machine like
// Membership: heartbeats, digests seen and the time are fed in, Tick says what to do; it
// starts no goroutine and reads no clock. It is safe for concurrent use.
type Aggregator struct {
	self, region      string
	interval, timeout time.Duration

	mu          sync.Mutex
	role        Role
	listenSince time.Time // zero: not listening
	heard       map[string]heardBeat
	otherAt     time.Time // another node's digest of the region last arrived
	publishedAt time.Time
}

type heardBeat struct {
	inc   string
	stats node.Stats
	cert  *Cert
	at    time.Time
}

// Plan is what a node does after an Aggregator's Tick.
type Plan struct {
	Role Role
	// Listen: be subscribed to the region's heartbeats (an aggregator).
	Listen bool
	// Publish are the digest parts to publish now (none most ticks).
	Publish []Digest
}

// NewAggregator returns node self's aggregator for region, whose nodes beat every interval and
// have left when silent for timeout.
func NewAggregator(self, region string, interval, timeout time.Duration) *Aggregator {
	return &Aggregator{self: self, region: region, interval: interval, timeout: timeout, heard: make(map[string]heardBeat)}
}

// roleOf is the role of a node with below live, non-draining region nodes of lower id: the
// lowest id is the primary, the next the backup. Every node of a region computes the same while
// their views agree; while they differ (a node joining), two nodes may both publish, which
// costs a message, not correctness.
func roleOf(below int) Role { return [...]Role{RolePrimary, RoleBackup, RoleNone}[min(below, 2)] }

// rank counts the region's live, non-draining nodes below this one, up to two: those of m whose
// last heartbeat is within the timeout, and those it heard beat while it listens. A node just
// started knows its region from the latter within an interval, before its first digest: at a
// cold start of the whole cluster, only the two lowest ids of each region ever publish. And
// when both aggregators of a region die at once, no digest comes to drop them, but their last
// heartbeats grow older than the timeout: then every node of the region counts itself the
// primary and listens for an interval, by when it heard the live nodes, and again only the two
// lowest ids aggregate.
func (a *Aggregator) rank(now time.Time, m *Membership, draining bool) Role {
	if draining {
		return RoleNone
	}
	ids := m.regionBelow(a.self, a.region, now, make([]string, 0, 2), 2)
	for id, h := range a.heard {
		if len(ids) >= 2 {
			break
		}
		if id < a.self && !h.stats.Draining && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return roleOf(len(ids))
}

// Heard records a verified heartbeat of the region (this node's own included), signed under
// cert, that arrived at now. Heartbeats of other regions are ignored.
func (a *Aggregator) Heard(inc string, s node.Stats, cert *Cert, now time.Time) {
	if s.ID == "" || s.Region != a.region {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.listenSince.IsZero() {
		return // a late delivery after it stopped listening
	}
	if h, ok := a.heard[s.ID]; ok && h.inc == inc && now.Before(h.at) {
		return
	}
	a.heard[s.ID] = heardBeat{inc: inc, stats: s, cert: cert, at: now}
}

// Digested records that a digest of the region from node from arrived at now.
func (a *Aggregator) Digested(from string, now time.Time) {
	if from == a.self {
		return
	}
	a.mu.Lock()
	if now.After(a.otherAt) {
		a.otherAt = now
	}
	a.mu.Unlock()
}

// Tick takes the role m's peers and draining give this node at now (see rank), and returns
// what to do: listen
// to the region's heartbeats or not, and the digests to publish. An aggregator publishes only
// once it has listened for an interval (its digest is whole) and while its own heartbeat comes
// back (its NATS path works); the backup only while no other node's digest came for
// takeoverAfter.
func (a *Aggregator) Tick(now time.Time, m *Membership, draining bool) Plan {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, h := range a.heard {
		if now.Sub(h.at) > a.timeout {
			delete(a.heard, id)
		}
	}
	role := a.rank(now, m, draining)
	a.role = role
	p := Plan{Role: role, Listen: role != RoleNone}
	if !p.Listen {
		a.listenSince = time.Time{}
		clear(a.heard)
		return p
	}
	if a.listenSince.IsZero() {
		a.listenSince = now
	}
	own, ok := a.heard[a.self]
	switch {
	case !ok || now.Sub(own.at) > 2*a.interval:
		return p // its own heartbeat does not come back: what it hears is not the region's
	case now.Sub(a.listenSince) < a.interval:
		return p // still filling its table
	case !a.publishedAt.IsZero() && now.Sub(a.publishedAt) < a.interval-a.interval/20: // a check late by a hair waits no more
		return p
	case role == RoleBackup && now.Sub(later(a.otherAt, a.listenSince)) < takeoverAfter*a.interval/4:
		return p // the primary's digests come
	}
	a.publishedAt = now
	p.Publish = a.digest(now, own)
	return p
}

// Role is the role of the last Tick.
func (a *Aggregator) Role() Role {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.role
}

// digest builds the region's digest at now, split into parts under DigestBudget.
func (a *Aggregator) digest(now time.Time, own heardBeat) []Digest {
	entry := func(h heardBeat) DigestEntry {
		return DigestEntry{Inc: h.inc, AgeMs: now.Sub(h.at).Milliseconds(), Stats: h.stats, Cert: h.cert}
	}
	ids := make([]string, 0, len(a.heard))
	for id := range a.heard {
		if id != a.self {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	others := make([]DigestEntry, len(ids))
	for i, id := range ids {
		others[i] = entry(a.heard[id])
	}
	return SplitDigest(a.region, entry(own), others, DigestBudget)
}

// SplitDigest packs own and others into digests whose entries stay under budget bytes of JSON,
// each starting with own (the sender's entry, which receivers require).
func SplitDigest(region string, own DigestEntry, others []DigestEntry, budget int) []Digest {
	size := func(e DigestEntry) int {
		b, _ := json.Marshal(e)
		return len(b) + 1
	}
	base := size(own) + len(region) + 32
	var parts []Digest
	cur := Digest{Region: region, Entries: []DigestEntry{own}}
	used := base
	for _, e := range others {
		n := size(e)
		if used+n > budget && len(cur.Entries) > 1 {
			parts = append(parts, cur)
			cur = Digest{Region: region, Entries: []DigestEntry{own}}
			used = base
		}
		cur.Entries = append(cur.Entries, e)
		used += n
	}
	return append(parts, cur)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
