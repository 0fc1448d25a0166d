package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// Session resume (PROTOCOL.md, "Resume"), with Options.Resume. Each link pings its node; a
// link whose node went silent, or whose WebSocket closed without a closed notification, is
// lost, and the supervisor resumes the session on another node: the join answer's nodes
// first, then the URLs the client was given, the first attempt at once and then with
// jittered backoff. The resumed session gets new transports; the client publishes the same
// tracks again under their producer ids and replays its manual subscriptions, and the new
// consumer tracks arrive through Options.OnTrack like the first ones (same track ids: the
// producer ids). A migrate notification moves the session the same way while the old link
// still runs (make-before-break), and leaves the old node once the new transports connected.

// Resume describes one move of the session to another node (Options.OnResume).
type Resume struct {
	// LostAt is when the client found the node gone (or was told to migrate); ResumedAt when
	// the new node accepted the session and the client had published again there.
	LostAt, ResumedAt time.Time
	// Attempts counts the joins tried, the successful one included.
	Attempts int
	// URL is the node that now serves the session.
	URL string
	// Fresh: the resume was refused (an expired or used credential, a room that was gone)
	// and the client joined afresh with its token: a new participant id.
	Fresh bool
	// Migrated: the node asked the client to move (drain); the old session ran until the new
	// one carried media.
	Migrated bool
	// Err is the error of the link that was lost (ErrNodeSilent, a WebSocket error).
	Err error
}

// ErrResumeFailed: the session could not resume on any node before Options.ResumeTimeout.
var ErrResumeFailed = errors.New("resume failed")

// resumeFailed is the end of a session that was lost and could not resume.
type resumeFailed struct{ lost, err error }

func (e *resumeFailed) Error() string {
	return fmt.Sprintf("connection lost: %v; %v: %v", e.lost, ErrResumeFailed, e.err)
}
func (e *resumeFailed) Unwrap() []error { return []error{e.lost, ErrResumeFailed} }

// Backoff of the resume attempts after the first, which goes at once: base 2^(n-1), capped,
// ±50 % so that the survivors of a node's death are not all hit in the same instant.
const (
	backoffBase = 200 * time.Millisecond
	backoffMax  = 2 * time.Second
	// attemptTimeout bounds one attempt's dial and join.
	attemptTimeout = 4 * time.Second
	// mediaSettle: after the new transports connected, how long a migration keeps the old
	// session at most while waiting for the first packets on the new one.
	mediaSettle = 300 * time.Millisecond
	// migrateWait bounds the wait for the new transports of a migration.
	migrateWait = 5 * time.Second
)

// backoff is the wait before attempt n (n ≥ 1).
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 5 {
		d = min(backoffMax, backoffBase<<(n-1))
	}
	return d/2 + rand.N(d) // d ± 50 %
}

// join opens a link to url and joins with jd, following one redirect.
func (c *Client) join(ctx context.Context, url string, jd proto.JoinData) (*link, error) {
	l, err := c.dialLink(ctx, url)
	if err != nil {
		return nil, err
	}
	var res proto.JoinResult
	err = l.request(ctx, proto.MethodJoin, jd, &res)
	l.join = res
	close(l.joined)
	if err == nil && res.Redirect != nil {
		r := res.Redirect
		if jd.NoRedirect || r.URL == "" {
			err = fmt.Errorf("join %s: redirected without a usable node", url)
		} else {
			l.close()
			c.forget(l)
			// The node placed us elsewhere: follow once, and that node keeps us.
			jd.NoRedirect = true
			return c.join(ctx, r.URL, jd)
		}
	}
	if err != nil {
		l.close()
		c.forget(l)
		return nil, err
	}
	return l, nil
}

// adopt makes l the session's link: its credential and nodes are the latest.
func (c *Client) adopt(l *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = l
	c.latest = l.join
	if l.join.Resume != nil {
		c.cred = l.join.Resume
	}
	c.nodes = l.join.Nodes
}

// Session is the latest join answer (the first one's, or that of the latest resume) and the
// URL of the node serving the session now.
func (c *Client) Session() (proto.JoinResult, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest, c.cur.url
}

// supervise watches the current link and resumes the session when it is lost (and asked to
// migrate); without Options.Resume a lost link ends the session.
func (c *Client) supervise() {
	defer c.supWG.Done()
	for {
		l := c.current()
		select {
		case <-l.dead:
		case <-c.ctx.Done():
			c.end(l, nil)
			return
		case m := <-c.migrateCh:
			c.migrate(l, m)
			continue
		}
		lost := l.lost()
		if !c.o.Resume || lost == nil || c.ctx.Err() != nil {
			c.end(l, nil)
			return
		}
		at := time.Now()
		// The old transports close once the session resumed, not before: a node that only
		// lost the signaling connection (a resume on the same node) still holds the producers,
		// which the new session adopts; their tracks ending first would remove them.
		r, err := c.resume(l, at, "")
		if err != nil {
			c.end(l, err)
			return
		}
		l.close()
		c.forget(l)
		r.Err = lost
		if c.o.OnResume != nil {
			c.o.OnResume(r)
		}
	}
}

// candidates are the URLs a resume tries, in order: target (a migration's), the nodes of the
// latest join answer, then the URLs the client was given; never old's URL unless nothing else
// is left (a load balancer's address).
func (c *Client) candidates(old *link, target string) []string {
	c.mu.Lock()
	nodes := c.nodes
	c.mu.Unlock()
	var out []string
	seen := map[string]bool{old.url: true}
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	add(target)
	for _, n := range nodes {
		add(n.URL)
	}
	for _, u := range c.given {
		add(u)
	}
	if len(out) == 0 {
		out = append(out, old.url)
	}
	return out
}

// resume moves the session from old to another node: it tries the candidates until one
// accepts the credential (or, refused, a fresh join), then publishes again and restores the
// subscriptions there. The new link is current when it returns.
func (c *Client) resume(old *link, lostAt time.Time, target string) (Resume, error) {
	cands := c.candidates(old, target)
	r := Resume{LostAt: lostAt, Migrated: target != ""}
	var last error
	for n := 0; ; n++ {
		if n > 0 {
			if time.Since(lostAt) > c.o.ResumeTimeout {
				return r, fmt.Errorf("%d attempts: %w", n, last)
			}
			t := time.NewTimer(backoff(n))
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return r, ErrClosed
			}
		}
		r.Attempts = n + 1
		url := cands[n%len(cands)]
		ctx, cancel := context.WithTimeout(c.ctx, attemptTimeout)
		l, fresh, err := c.rejoin(ctx, url)
		cancel()
		if err != nil {
			last = err
			if c.ctx.Err() != nil {
				return r, ErrClosed
			}
			if errors.Is(err, errNoCredential) {
				return r, err
			}
			continue
		}
		c.adopt(l)
		if err := c.restore(l, fresh); err != nil {
			last = err
			l.close()
			c.forget(l)
			continue
		}
		r.ResumedAt, r.URL, r.Fresh = time.Now(), l.url, fresh
		return r, nil
	}
}

var errNoCredential = errors.New("no resume credential and no token")

// rejoin joins url with the session's credential; a refused credential falls back to a fresh
// join with the access token (a new participant).
func (c *Client) rejoin(ctx context.Context, url string) (*link, bool, error) {
	c.mu.Lock()
	cred := c.cred
	c.mu.Unlock()
	auto := !c.o.NoAutoSubscribe
	if cred != nil {
		l, err := c.join(ctx, url, proto.JoinData{Resume: cred.Token, AutoSubscribe: &auto, Region: c.o.Region})
		var pe *proto.Error
		if err == nil || !errors.As(err, &pe) || pe.Code != proto.CodeResumeRefused {
			return l, false, err
		}
		c.mu.Lock()
		if c.cred == cred {
			c.cred = nil // used or refused: never again
		}
		c.mu.Unlock()
	}
	if c.o.Token == "" {
		return nil, false, errNoCredential
	}
	l, err := c.join(ctx, url, proto.JoinData{Token: c.o.Token, AutoSubscribe: &auto, Region: c.o.Region})
	return l, err == nil, err
}

// restore publishes the session's tracks again on l (under their producer ids, unless fresh)
// and replays the manual subscriptions.
func (c *Client) restore(l *link, fresh bool) error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if c.published {
		ids := make(map[webrtc.TrackLocal]string)
		for _, p := range c.pubs {
			if !fresh && p.id != "" {
				ids[p.track] = p.id
			}
		}
		res, mids, err := l.publish(c.ctx, c.pubs, ids)
		if err != nil {
			return fmt.Errorf("publish again: %w", err)
		}
		for i := range c.pubs {
			if id := producerOf(res, mids[i]); id != "" {
				c.pubs[i].id = id
			}
		}
	}
	c.mu.Lock()
	var ids []string
	for id := range c.wanted {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		err := l.request(c.ctx, proto.MethodSubscribe, proto.ProducerData{Producer: id}, nil)
		if !notFound(err) {
			continue
		}
		// Its publisher is resuming too: subscribe when this node announces it
		// (subscribePending). Once more now, in case the announcement came before pending
		// was set: one of the two subscribes finds it.
		c.mu.Lock()
		if c.wanted[id] {
			c.pending[id] = true
		}
		c.mu.Unlock()
		if l.request(c.ctx, proto.MethodSubscribe, proto.ProducerData{Producer: id}, nil) == nil {
			c.mu.Lock()
			delete(c.pending, id)
			c.mu.Unlock()
		}
	}
	return nil
}

func notFound(err error) bool {
	var pe *proto.Error
	return errors.As(err, &pe) && pe.Code == proto.CodeNotFound
}

// subscribePending subscribes l to a producer that a resume could not subscribe to yet, now
// that l's node announced it (producerAdded, producerMoved).
func (c *Client) subscribePending(l *link, raw json.RawMessage) {
	var d struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &d) != nil || d.ID == "" {
		return
	}
	c.mu.Lock()
	want := c.pending[d.ID] && l == c.cur
	delete(c.pending, d.ID)
	c.mu.Unlock()
	if want {
		_ = l.request(c.ctx, proto.MethodSubscribe, proto.ProducerData{Producer: d.ID}, nil)
	}
}

// migrate moves the session to m.URL while old still carries it, then leaves old once the
// new transports connected (and mediaSettle more, for the first packets). A migration that
// fails leaves the session on old, which the node closes at m.Deadline: then a resume follows.
func (c *Client) migrate(old *link, m proto.MigrateData) {
	at := time.Now()
	r, err := c.resume(old, at, m.URL)
	if err != nil {
		return
	}
	nl := c.current()
	// Make-before-break: the old session goes on until the new transports connected and
	// carry the media (a first packet, RTCP from the node), or mediaSettle after connected.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	wait := time.Now().Add(migrateWait)
	var settle time.Time
	for {
		now := time.Now()
		if settle.IsZero() && nl.connected() {
			settle = now.Add(mediaSettle)
		}
		if now.After(wait) || !settle.IsZero() && (nl.carries(old) || now.After(settle)) {
			break
		}
		select {
		case <-tick.C:
		case <-c.ctx.Done():
			return
		}
	}
	old.leave()
	c.forget(old)
	if c.o.OnResume != nil {
		c.o.OnResume(r)
	}
}
