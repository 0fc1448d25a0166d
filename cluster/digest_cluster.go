package cluster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// typeDigest is the envelope type of a region's digest (digest.go).
const typeDigest = "digest"

// aggState is the Cluster's side of regional aggregation: the Aggregator, the subscription to
// the region's heartbeats (owned by the beat goroutine, which opens and closes it as the role
// changes), and the guard against this node's own digests sent again.
type aggState struct {
	agg       *Aggregator
	region    string
	sub       Subscription // the region's heartbeats, while an aggregator
	draining  atomic.Bool  // as the last heartbeat said
	digestSeq atomic.Uint64
}

func newAggState(me, region string, o Options) *aggState {
	return &aggState{agg: NewAggregator(me, region, o.Heartbeat, o.Timeout), region: region}
}

// Aggregation is this node's role in its region's heartbeat aggregation.
func (c *Cluster) Aggregation() Role { return c.agg.agg.Role() }

// publishBeat sends this node's heartbeat on its region's subject (its aggregators hear it).
func (c *Cluster) publishBeat() {
	s := c.n.Stats()
	c.agg.draining.Store(s.Draining)
	if b, err := c.stamp.Seal(typeHeartbeat, s); err == nil {
		_ = c.bus.Publish(Msg{Subject: HeartbeatSubject(c.agg.region, c.me), Data: b})
	}
}

// aggregate runs the aggregator at now (each check of the beat goroutine): it listens to the
// region's heartbeats while it has a role, and publishes the digests due.
func (c *Cluster) aggregate(now time.Time) {
	a := c.agg
	plan := a.agg.Tick(now, c.members, a.draining.Load())
	switch {
	case plan.Listen && a.sub == nil:
		sub, err := c.bus.Subscribe(regionBeats(a.region), c.onRegionBeat)
		if err != nil {
			return // the bus is away: the next check tries again
		}
		a.sub = sub
		c.log.Info("aggregating the region's heartbeats", "region", a.region, "role", plan.Role)
	case !plan.Listen && a.sub != nil:
		c.unlisten()
		c.log.Info("no longer aggregating the region's heartbeats", "region", a.region)
	}
	for _, d := range plan.Publish {
		if b, err := c.stamp.Seal(typeDigest, d); err == nil {
			_ = c.bus.Publish(Msg{Subject: DigestSubject(a.region), Data: b})
		}
	}
}

// unlisten ends the subscription to the region's heartbeats (beat goroutine only).
func (c *Cluster) unlisten() {
	if c.agg.sub != nil {
		_ = c.agg.sub.Unsubscribe()
		c.agg.sub = nil
	}
}

// onRegionBeat records a heartbeat of the region, this node's own included, in the aggregator.
func (c *Cluster) onRegionBeat(m Msg) {
	e, ok := c.receive(m)
	if e.Type != typeHeartbeat {
		return
	}
	if e.Node == c.me {
		if !c.ownFresh(e, &c.selfSeq) {
			return // an own heartbeat sent again (captured): it proves nothing of the bus
		}
	} else if !ok {
		return
	}
	var s node.Stats
	if json.Unmarshal(e.Body, &s) != nil || s.ID != e.Node {
		c.reject(rejMismatch, e.Node)
		return
	}
	c.agg.agg.Heard(e.Inc, s, e.Cert, c.o.Clock.Now())
}

// onDigest feeds a region's digest, this node's own included, to the membership.
func (c *Cluster) onDigest(m Msg) {
	e, ok := c.receive(m)
	if e.Type != typeDigest {
		return
	}
	if e.Node == c.me {
		if !c.ownFresh(e, &c.agg.digestSeq) {
			return // an own digest sent again
		}
	} else if !ok {
		return
	}
	var d Digest
	if json.Unmarshal(e.Body, &d) != nil {
		c.reject(rejMalformed, e.Node)
		return
	}
	now := c.o.Clock.Now()
	applied, err := ApplyDigest(c.members, e.Node, d, now, c.acceptEntry)
	if err != nil {
		c.reject(rejMismatch, e.Node)
		return
	}
	if d.Region == c.agg.region {
		c.agg.agg.Digested(e.Node, now)
	}
	if applied.SelfReturned {
		c.Resync("own heartbeats missed")
	}
	for _, ch := range applied.Changes {
		switch ch.Change {
		case Joined:
			c.log.Info("node joined the cluster", "peer", ch.ID, "peer_inc", ch.Inc, "region", ch.Region, "via", e.Node)
			if ch.Rooms > 0 { // back after it was dropped (a partition healed): its rooms may be ours
				c.Resync("node with rooms joined")
			}
		case Returned:
			c.Resync("heartbeats of " + ch.ID + " missed")
		}
	}
}

// acceptEntry checks a digest entry's cert (vouched for, of the entry's node and incarnation,
// not older than the node's current one) and makes it the node's current incarnation: a new
// one ends the old one's state first, as a message of it would (Cluster.receive).
func (c *Cluster) acceptEntry(d DigestEntry) bool {
	cert := d.Cert
	if cert == nil || cert.Node != d.Stats.ID || cert.Inc != d.Inc {
		c.reject(rejCertMismatch, d.Stats.ID)
		return false
	}
	cert, err := c.verify.vouched(cert)
	if err != nil {
		c.reject(reasonOf(err), d.Stats.ID)
		return false
	}
	env := Envelope{Node: cert.Node, Inc: cert.Inc, Cert: cert}
	if c.verify.Older(&env) {
		return false
	}
	restarted, err := c.dedup.adopt(cert.Node, cert.Inc)
	if err != nil {
		return false
	}
	if restarted {
		c.nodeGone(cert.Node, "restarted")
	}
	c.verify.Accepted(&env)
	return true
}

// vouched checks a cert on its own (a digest entry's): vouched for by an accepted secret,
// cached like Verify's. It returns the cached cert when it was known.
func (v *Verifier) vouched(c *Cert) (*Cert, error) {
	if len(c.Sign) != ed25519.PublicKeySize {
		return nil, ErrUnsigned
	}
	k := certKey{c.Node, c.Inc}
	v.mu.RLock()
	known := v.certs[k]
	v.mu.RUnlock()
	if known != nil && bytes.Equal(known.Sign, c.Sign) && bytes.Equal(known.Box, c.Box) {
		return known, nil
	}
	if !c.vouchedBy(v.vouch) {
		return nil, ErrVoucher
	}
	v.mu.Lock()
	if len(v.certs) >= maxCerts {
		v.certs = map[certKey]*Cert{}
	}
	v.certs[k] = c
	v.mu.Unlock()
	return c, nil
}

// adopt makes inc node's current incarnation, as a message of it would in Accept: ErrStale for
// a retired one; restarted when it replaces another.
func (d *Dedup) adopt(node, inc string) (restarted bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.senders[node]
	switch {
	case s == nil:
		d.senders[node] = &sender{inc: inc, retired: map[string]bool{}}
	case s.inc == inc:
	case s.retired[inc]:
		return false, ErrStale
	default:
		s.retired[s.inc] = true
		*s = sender{inc: inc, retired: s.retired}
		restarted = true
	}
	return restarted, nil
}

// ownFresh tells whether e, a message of this node back from the bus, is of this incarnation and
// newer than the last one seen (seq): a captured copy sent again is not.
func (c *Cluster) ownFresh(e Envelope, seq *atomic.Uint64) bool {
	if e.Inc != c.o.Incarnation {
		return false
	}
	last := seq.Load()
	return e.Seq > last && seq.CompareAndSwap(last, e.Seq)
}
