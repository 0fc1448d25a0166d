package signal

import (
	"errors"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// Session resume on the signaling side (PROTOCOL.md, "Resume"): the credential a session gets
// in its join answer and then in resumeToken notifications, the join that resumes a session,
// and the grace a session's participant keeps when its connection drops without a goodbye.

// DefaultResumeGrace is how long a participant whose signaling connection dropped without a
// leave stays in its room (Options.ResumeGrace): its client resumes it within that time, here
// or on another node, and no one hears of a leave.
const DefaultResumeGrace = 10 * time.Second

// nodesInAnswer is how many other nodes a join answer lists for a resume.
const nodesInAnswer = 3

// resumeGrace is the server's grace for a vanished client's participant.
func (s *Server) resumeGrace() time.Duration {
	if s.o.ResumeGrace == 0 {
		return DefaultResumeGrace
	}
	return max(s.o.ResumeGrace, 0)
}

// joinGrant is what a join may do: from the access token, or for a resume from the credential
// (then res is set, and avoid names the node the client left, unless it is this one).
func (s *session) joinGrant(d proto.JoinData) (g auth.Grant, res *node.Resume, avoid []string, err error) {
	if d.Resume == "" {
		g, err = s.srv.o.Keys.Verify(d.Token)
		return g, nil, nil, err
	}
	c, err := s.srv.o.Keys.VerifyResume(d.Resume)
	if err != nil {
		return g, nil, nil, resumeRefused(err)
	}
	g = auth.Grant{Room: c.Room, Identity: c.Identity, Publish: c.Publish, Subscribe: c.Subscribe, Metadata: c.Metadata}
	res = &node.Resume{ID: c.Participant, Epoch: c.Epoch, JoinedAt: c.JoinedAt, Node: c.Node}
	for _, pr := range c.Producers {
		res.Producers = append(res.Producers, node.ProducerInfo{ID: pr.ID, Kind: pr.Kind, Mid: pr.Mid, Participant: c.Participant})
	}
	if c.Node != s.srv.n.ID() {
		avoid = []string{c.Node}
	}
	return g, res, avoid, nil
}

// resumeRefused is the wire error of a credential that cannot resume a session, saying why.
func resumeRefused(err error) error {
	msg := "resume refused: " + err.Error()
	switch {
	case errors.Is(err, auth.ErrExpired):
		msg = "resume refused: the credential expired (" + err.Error() + "); join with a token"
	case errors.Is(err, auth.ErrBadToken), errors.Is(err, auth.ErrNoToken):
		msg = "resume refused: the credential is not valid (" + err.Error() + "); join with a token"
	case errors.Is(err, node.ErrResume):
		msg = "resume refused: " + err.Error() + "; join with a token"
	}
	return errorf(proto.CodeResumeRefused, msg)
}

// credential mints the session's current resume credential (nil if it cannot: logged).
func (s *session) credential() *proto.ResumeToken {
	p := s.p
	info := p.Info()
	r := auth.Resume{Room: p.Room().Name(), Identity: info.Identity, Participant: info.ID, Epoch: info.Epoch,
		Publish: s.grant.Publish, Subscribe: s.grant.Subscribe, Metadata: info.Metadata, Node: s.srv.n.ID(), JoinedAt: info.JoinedAt}
	for _, pr := range p.Resumable() {
		r.Producers = append(r.Producers, auth.ResumeProducer{ID: pr.ID, Kind: pr.Kind, Mid: pr.Mid})
	}
	tok, exp, err := s.srv.o.Keys.MintResume(r, proto.ResumeTTLSeconds*time.Second)
	if err != nil {
		s.log.Warn("cannot mint a resume credential", "error", err)
		return nil
	}
	return &proto.ResumeToken{Token: tok, Expires: exp.UnixMilli()}
}

// nodes lists the other nodes the session may resume on, as signaling URLs (none without
// placement).
func (s *session) nodes(room, region string, avoid []string) []proto.NodeURL {
	pl := s.srv.o.Placement
	if pl == nil {
		return nil
	}
	var out []proto.NodeURL
	for _, n := range pl.Alternatives(room, region, nodesInAnswer, avoid...) {
		u, err := proto.WebSocketURL(n.URL)
		if err != nil {
			continue // a peer with an unusable URL
		}
		n.URL = u
		out = append(out, n)
	}
	return out
}

// startRefresh arms the session's credential refresh (after its join). Called on the reader
// loop.
func (s *session) startRefresh() {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	if !s.bg.stopped && s.bg.refresh == nil {
		s.bg.refresh = time.AfterFunc(proto.ResumeRefreshSeconds*time.Second, s.refreshOnce)
	}
}

// refreshOnce sends a fresh credential; it runs every proto.ResumeRefreshSeconds and whenever
// the session's producers changed (refreshResume), until the session closes. A timer, not a
// goroutine per session (session_bg.go).
func (s *session) refreshOnce() {
	if s.isClosing() || !s.enter() {
		return
	}
	defer s.wg.Done()
	s.bg.mu.Lock()
	if !s.bg.stopped { // re-armed before minting: a request from now on runs it again
		s.bg.refresh.Reset(proto.ResumeRefreshSeconds * time.Second)
	}
	s.bg.mu.Unlock()
	s.bg.minting.Lock()
	defer s.bg.minting.Unlock()
	if tok := s.credential(); tok != nil {
		s.Notify(proto.MethodResumeToken, tok)
	}
}

// refreshResume asks for a fresh credential now (never blocks; requests coalesce). Before the
// join there is none to refresh: the join's answer carries the first.
func (s *session) refreshResume() {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	if !s.bg.stopped && s.bg.refresh != nil {
		s.bg.refresh.Reset(0)
	}
}

// vanished tells whether the session's client went away without a goodbye: no leave, no close
// frame, no closed notification, and not closed by the server (a slow or abusive client, a
// shutdown). Called on the reader loop once it ended.
// Its participant then lingers for the resume grace instead of leaving at once.
func (s *session) vanished() bool {
	select {
	case <-s.closing:
		return false
	default:
	}
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	return !s.left && !s.ended && !s.saidBye
}
