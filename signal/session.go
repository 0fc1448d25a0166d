package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// Limits of one signaling connection.
const (
	outQueue        = 256              // queued outgoing messages before a slow client is dropped (session_bg.go)
	writeTimeout    = 10 * time.Second // per frame
	pingInterval    = 15 * time.Second
	pingTimeout     = 30 * time.Second
	maxMalformed    = 20 // malformed frames before the connection is closed
	requestsPerSec  = 50
	requestsBurst   = 100
	closeReplaced   = websocket.StatusCode(4001)
	closeSlowClient = websocket.StatusCode(4002)
)

// session is one WebSocket client: the reader loop handles requests in order and owns the
// session's state; a writer drains the outgoing queue while it has messages; Notify never
// blocks. Its pings, credential refreshes and writer start when due (session_bg.go).
type session struct {
	srv     *Server
	conn    *websocket.Conn
	log     hclog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	bg      bg
	limiter *rate.Limiter
	wg      sync.WaitGroup

	closeOnce   sync.Once
	closing     chan struct{} // closed by closeWith: the writer flushes and closes
	closeCode   websocket.StatusCode
	closeReason string
	closeFlush  bool

	// Notifications that arrive while a join is answered wait for the answer: a client must
	// see the room's state before the changes to it, or a participant who joined in between
	// would be lost when the answer replaces the client's view.
	heldMu  sync.Mutex
	holding bool
	held    []proto.Notification
	ended   bool // the closed notification went out: nothing follows it
	left    bool // the client asked to leave (under heldMu)

	// Owned by the reader loop.
	p         *node.Participant
	malformed int
	ip        netip.Addr // the client's address, for the join limit (set before run)
	grant     auth.Grant // what the session may do (its resume credentials carry it)
	region    string     // the join's region hint: where a drain migrates it (migrate.go)
	saidBye   bool       // the client closed the WebSocket itself (a close frame)

}

func newSession(srv *Server, conn *websocket.Conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{srv: srv, conn: conn, log: srv.log, ctx: ctx, cancel: cancel,
		limiter: rate.NewLimiter(requestsPerSec, requestsBurst), closing: make(chan struct{})}
}

// run serves the connection until it ends, then removes the participant.
func (s *session) run() {
	s.conn.SetReadLimit(proto.MaxMessage)
	s.startBackground()
	s.reader()
	s.cancel()
	s.stopBackground()
	s.wg.Wait()
	switch {
	case s.p == nil:
	case s.p.Superseded(): // resumed elsewhere: the node closes it once its producers moved
	case s.vanished(): // its client may resume the session: keep it a while
		s.p.Linger(s.srv.resumeGrace())
	default:
		s.p.Close()
	}
	_ = s.conn.CloseNow()
}

// closeWith ends the session: the writer sends what is queued (when flush is set), then the
// WebSocket close frame with code and reason, and the reader loop ends.
func (s *session) closeWith(code websocket.StatusCode, reason string, flush bool) {
	s.closeOnce.Do(func() {
		s.closeCode, s.closeReason, s.closeFlush = code, reason, flush
		close(s.closing)
		s.closeWriter()
	})
}

func (s *session) reader() {
	for {
		typ, b, err := s.conn.Read(s.ctx)
		if err != nil {
			s.saidBye = websocket.CloseStatus(err) != -1 // a close frame: the client meant to go
			if websocket.CloseStatus(err) == -1 && s.ctx.Err() == nil {
				s.log.Debug("signaling connection ended", "error", err)
			}
			return
		}
		s.frame(typ, b)
	}
}

// frame handles one frame from the client.
func (s *session) frame(typ websocket.MessageType, b []byte) {
	if !s.limiter.Allow() {
		s.reply(idOf(b), nil, errorf(proto.CodeRateLimited, "too many requests"))
		return
	}
	if typ != websocket.MessageText {
		s.badFrame(nil, "binary frames are not accepted")
		return
	}
	var req proto.Request
	if err := json.Unmarshal(b, &req); err != nil {
		s.badFrame(idOf(b), "malformed JSON: "+err.Error())
		return
	}
	if req.ID == nil || req.Method == "" {
		s.badFrame(req.ID, "a request needs an id and a method")
		return
	}
	if req.Method == proto.MethodJoin {
		s.hold()
	}
	data, err := s.handle(req)
	s.reply(req.ID, data, err)
	if req.Method == proto.MethodJoin {
		s.release()
	}
	if req.Method == proto.MethodJoin && err == nil && s.p != nil {
		// After the join response: the first offer and the consumers of the room follow.
		if err := s.p.Start(); err != nil {
			s.log.Warn("cannot start participant", "error", err)
		}
	}
	if (req.Method == proto.MethodPublish || req.Method == proto.MethodUnpublish) && err == nil {
		s.refreshResume() // after the response: the credential names the producers it told of
	}
	if req.Method == proto.MethodLeave && err == nil {
		s.heldMu.Lock()
		s.left = true
		s.heldMu.Unlock()
		s.closeWith(websocket.StatusNormalClosure, "left", true)
	}
	if errors.Is(err, node.ErrFlooding) { // chat far past its limit, refusals ignored
		s.closeWith(closeFlooding, "sending too fast", true)
	}
}

// idOf recovers the id of a frame that failed to parse as a whole, where it can.
func idOf(b []byte) *json.Number {
	var v struct {
		ID *json.Number `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return v.ID
}

func (s *session) badFrame(id *json.Number, msg string) {
	s.malformed++
	s.reply(id, nil, errorf(proto.CodeBadRequest, msg))
	if s.malformed >= maxMalformed {
		s.closeWith(websocket.StatusPolicyViolation, "too many malformed messages", true)
	}
}

func (s *session) reply(id *json.Number, data any, err error) {
	r := proto.Response{ID: id, OK: err == nil, Data: data}
	if err != nil {
		r.Data = nil
		r.Error = &proto.Error{Code: codeOf(err), Message: err.Error()}
		var e *proto.Error
		if errors.As(err, &e) {
			r.Error.Message = e.Message
		}
	} else if data == nil {
		r.Data = struct{}{}
	}
	s.post(r)
}

// Notify implements node.Listener.
func (s *session) Notify(method string, data any) {
	if method == node.EventResumable { // not for the wire: a fresh credential is
		s.refreshResume()
		return
	}
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	if s.holding {
		s.held = append(s.held, proto.Notification{Method: method, Data: data})
		return
	}
	s.notify(proto.Notification{Method: method, Data: data})
}

// notify sends a notification (under heldMu, so that held ones keep their order).
func (s *session) notify(n proto.Notification) {
	if s.ended {
		return // a trickle or an event racing the close: the client is told nothing after closed
	}
	s.post(n)
	if n.Method == node.EventClosed {
		s.ended = true
		code, reason := closeOf(n.Data)
		s.closeWith(code, reason, true)
	}
}

// closeOf is the WebSocket close code and reason that follow a closed notification: the code of
// its reason (PROTOCOL.md, "Error codes"); replaced when it names none other.
func closeOf(data any) (websocket.StatusCode, string) {
	var reason string
	if m, ok := data.(map[string]string); ok {
		reason = m["reason"]
	}
	switch reason {
	case node.ReasonRemoved:
		return proto.CloseRemoved, reason
	case node.ReasonRoomDeleted:
		return proto.CloseRoomDeleted, reason
	case node.ReasonResumed:
		return proto.CloseResumed, reason
	}
	return closeReplaced, proto.ReasonReplaced
}

// hold makes notifications wait until release (while a join is answered).
func (s *session) hold() {
	s.heldMu.Lock()
	s.holding = true
	s.heldMu.Unlock()
}

// release sends the held notifications, in order, after the join's answer.
func (s *session) release() {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for _, n := range s.held {
		s.notify(n)
	}
	s.holding, s.held = false, nil
}

func (s *session) post(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("cannot encode signaling message", "error", err)
		return
	}
	if !s.enqueue(b) {
		s.closeWith(closeSlowClient, "client too slow", false)
	}
}

func (s *session) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// handle runs one request on the reader loop.
func (s *session) handle(req proto.Request) (any, error) {
	switch req.Method {
	case proto.MethodJoin:
		return s.join(req.Data)
	case proto.MethodPing: // liveness, joined or not: the answer is the proof
		return struct{}{}, nil
	}
	if _, ok := methods[req.Method]; !ok {
		return nil, errorf(proto.CodeUnknownMethod, fmt.Sprintf("unknown method %q", req.Method))
	}
	if s.p == nil {
		return nil, errorf(proto.CodeNotJoined, "join first")
	}
	p := s.p
	switch req.Method {
	case proto.MethodPublish:
		var d proto.PublishData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		answer, producers, err := p.PublishAs(d.SDP, false, d.ProducerIDs)
		if err != nil {
			return nil, err
		}
		return proto.PublishResult{SDP: answer, Producers: each(producers, producer)}, nil
	case proto.MethodUnpublish:
		var d proto.ProducerData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		return nil, p.Unpublish(d.Producer)
	case proto.MethodAnswer:
		var d proto.SDPData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		return nil, p.Answer(d.SDP)
	case proto.MethodTrickle:
		var d proto.TrickleData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		return nil, p.AddCandidate(d.Transport, webrtc.ICECandidateInit{Candidate: d.Candidate.Candidate,
			SDPMid: d.Candidate.SDPMid, SDPMLineIndex: d.Candidate.SDPMLineIndex, UsernameFragment: d.Candidate.UsernameFragment})
	case proto.MethodSubscribe, proto.MethodUnsubscribe:
		var d proto.ProducerData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		if req.Method == proto.MethodSubscribe {
			return nil, p.Subscribe(d.Producer)
		}
		return nil, p.Unsubscribe(d.Producer)
	case proto.MethodMute:
		var d proto.MuteData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		return nil, p.Mute(d.Producer, d.Muted)
	case proto.MethodMessage:
		var d proto.MessageData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		if len(d.Data) == 0 {
			return nil, errorf(proto.CodeBadRequest, "message needs data")
		}
		return nil, p.Message(d.Data)
	case proto.MethodSetPreferredLayer:
		var d proto.PreferredLayerData
		if err := decode(req.Data, &d); err != nil {
			return nil, err
		}
		return nil, p.SetPreferredLayer(d.Producer, layerPref(d))
	case proto.MethodLeave:
		return nil, nil
	}
	return nil, errorf(proto.CodeUnknownMethod, req.Method)
}

var methods = map[string]struct{}{proto.MethodPublish: {}, proto.MethodUnpublish: {}, proto.MethodAnswer: {},
	proto.MethodTrickle: {}, proto.MethodSubscribe: {}, proto.MethodUnsubscribe: {}, proto.MethodMute: {},
	proto.MethodMessage: {}, proto.MethodLeave: {}, proto.MethodSetPreferredLayer: {}}

func (s *session) join(raw json.RawMessage) (any, error) {
	if s.p != nil {
		return nil, errorf(proto.CodeAlreadyJoined, "this connection has already joined")
	}
	var d proto.JoinData
	if err := decode(raw, &d); err != nil {
		return nil, err
	}
	if err := s.admitJoin(); err != nil {
		return nil, err
	}
	g, res, avoid, err := s.joinGrant(d) // an access token, or a resume credential (resume.go)
	if err != nil {
		return nil, err
	}
	auto := d.AutoSubscribe == nil || *d.AutoSubscribe
	if auto && !g.Subscribe {
		auto = false
	}
	if err := s.srv.admit(g.Room, g.Identity); err != nil {
		return nil, err
	}
	if pl := s.srv.o.Placement; pl != nil && !d.NoRedirect {
		if id, httpURL, ok := pl.Place(g.Room, d.Region, avoid...); ok {
			// A peer with an unusable URL: keep the client here.
			if u, err := proto.WebSocketURL(httpURL); err == nil {
				return proto.JoinResult{Room: g.Room, Redirect: &proto.Redirect{Node: id, URL: u}}, nil
			}
		}
	}
	ng := node.Grant{Publish: g.Publish, Subscribe: g.Subscribe, Metadata: g.Metadata}
	var p *node.Participant
	if res != nil {
		p, err = s.srv.n.JoinResumed(g.Room, g.Identity, ng, auto, s, *res)
		if errors.Is(err, node.ErrResume) {
			return nil, resumeRefused(err)
		}
	} else {
		p, err = s.srv.n.Join(g.Room, g.Identity, ng, auto, s)
	}
	if err != nil {
		return nil, err
	}
	s.p, s.grant, s.region = p, g, d.Region
	s.srv.markJoined(s) // the join deadline (edges.go) no longer applies
	s.log = s.log.With("room", g.Room, "participant", p.ID())
	res2 := proto.JoinResult{Participant: participant(p.Info()), Room: g.Room, Participants: each(p.Room().Participants(), participant),
		Producers: each(p.Room().Producers(), producer), ICEServers: s.srv.iceServers(p.ID()), RoomMetadata: p.Room().Settings().Metadata,
		Resume: s.credential(), Resumed: res != nil, Nodes: s.nodes(g.Room, d.Region, avoid)}
	s.startRefresh()
	return res2, nil
}

func decode(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return errorf(proto.CodeBadRequest, "missing data")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errorf(proto.CodeBadRequest, "bad data: "+err.Error())
	}
	return nil
}
