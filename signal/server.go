package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server.
type Options struct {
	// Keys sign and verify access tokens.
	Keys auth.Keys
	// DevTokens serves GET /token?room=R&identity=I, minting a token with every grant, for the
	// demo page to join without a backend. Only in development mode (`cascade node --dev`):
	// anyone who reaches the node can then mint tokens.
	DevTokens bool
	// JoinDeadline closes a WebSocket that has not joined this long after it opened, with close
	// code 4008 (0: DefaultJoinDeadline; negative: none).
	JoinDeadline time.Duration
	// SeparateMetrics moves /metrics and pprof off Handler to MetricsHandler (a listener of
	// their own, --metrics-listen).
	SeparateMetrics bool
	// Web serves the demo page and the browser client at "/" (nil: none).
	Web http.Handler
	// Logger receives the server's logs.
	Logger hclog.Logger
	// Gatherer is served at /metrics, unauthenticated, for Prometheus (nil: no metrics endpoint).
	Gatherer prometheus.Gatherer
	// Placement decides whether a join is better served by another node (nil: always here).
	Placement Placement
	// Ready reports whether the node's cluster connection is up, for /readyz (nil: always).
	Ready func() bool
	// Cluster serves /cluster (the cluster view: JSON, and a page for browsers) to holders of an
	// admin token; nil: none.
	Cluster http.Handler
	// Pprof serves Go's profiler at /debug/pprof/ to holders of an admin token (for operators
	// chasing CPU; off by default).
	Pprof bool
	// ICEServers mints the ICE servers (the node's TURN servers, with credentials) handed to
	// a participant in the join response and in WHIP/WHEP Link headers (nil: none).
	ICEServers func(participant string) []proto.ICEServer
	// Joins limit the joins per client address (zero: the defaults; see JoinLimits).
	Joins JoinLimits
	// Rooms serves the room API under /api/ to holders of an admin token (nil: none).
	Rooms Rooms
	// DrainTimeout is how long sessions may go on once the node drains (0:
	// DefaultDrainTimeout): the deadline of the migrate notifications (migrate.go).
	DrainTimeout time.Duration
	// Migrate paces the migrate notifications of a drain (zero: the defaults).
	Migrate MigrateOptions
	// Registerer receives the server's own metrics (cascade_migrations_total); nil: none.
	Registerer prometheus.Registerer
	// ResumeGrace is how long the participant of a client that vanished (its connection dropped
	// without a leave) stays, so that a resume of its session lands first (0:
	// DefaultResumeGrace; negative: none, it leaves at once).
	ResumeGrace time.Duration
}

// Placement is the join placement policy of a cluster.
type Placement interface {
	// Place tells whether a client of room (in region, if known) should join another node, and
	// which: its id and HTTP URL.
	// A resume passes avoid: the node the client left, never a target.
	Place(room, region string, avoid ...string) (nodeID, httpURL string, redirect bool)
	// Alternatives lists up to n live nodes other than this one and those in avoid, none
	// draining, best first for a client of room in region: where a client resumes if this node
	// goes (the join answer's nodes).
	Alternatives(room, region string, n int, avoid ...string) []proto.NodeURL
	// Available tells whether this node can serve a join of room now (false while it cannot
	// reach the rest of the cluster and the room may live there).
	Available(room string) bool
}

// admit refuses a join, at once: of a room or identity longer than proto.MaxName (bad_request),
// or of a room the node cannot serve while it cannot reach the cluster (cluster_unavailable).
func (s *Server) admit(room, identity string) error {
	if len(room) > proto.MaxName || len(identity) > proto.MaxName {
		return errorf(proto.CodeBadRequest, fmt.Sprintf("room names and identities are at most %d bytes", proto.MaxName))
	}
	if pl := s.o.Placement; pl != nil && !pl.Available(room) {
		return errorf(proto.CodeClusterUnavailable, "this node cannot reach the rest of the cluster; retry in a few seconds or join another node")
	}
	return nil
}

// Server is the node's HTTP face: signaling, WHIP, WHEP, health and metrics.
type Server struct {
	n        *node.Node
	o        Options
	log      hclog.Logger
	draining atomic.Bool

	mu        sync.Mutex
	resources map[string]*node.Participant // WHIP and WHEP sessions by resource id
	sessions  map[*session]bool            // signaling sessions: whether each has joined
	joins     *joinLimiter
	migr      *migrator
}

// NewServer returns a server for a node.
func NewServer(n *node.Node, o Options) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	s := &Server{n: n, o: o, log: o.Logger.Named("signal"), resources: make(map[string]*node.Participant),
		sessions: make(map[*session]bool), joins: newJoinLimiter(o.Joins)}
	s.migr = newMigrator(s, o.Migrate, o.Registerer)
	return s
}

// Handler routes the node's HTTP paths (DESIGN.md, "HTTP").
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	s.mountRoomAPIWrite(mux) // the room API's actions, with Options.Rooms
	for _, kind := range []string{"whip", "whep"} {
		mux.HandleFunc("POST /"+kind+"/{room}", s.serveWHIP)
		mux.HandleFunc("DELETE /"+kind+"/{room}/{id}", s.serveDeleteResource)
		mux.HandleFunc("PATCH /"+kind+"/{room}/{id}", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "trickle is not supported: the answer carries every candidate", http.StatusMethodNotAllowed)
		})
		mux.HandleFunc("OPTIONS /"+kind+"/{room}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Accept-Post", "application/sdp")
			w.WriteHeader(http.StatusNoContent)
		})
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() || !s.n.Ready() || (s.o.Ready != nil && !s.o.Ready()) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("POST /admin/drain", s.admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Drain()
		s.log.Info("draining on an admin request")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "draining\n")
	})))
	mux.Handle("GET /stats", s.admin(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.n.Stats())
	})))
	if s.o.Cluster != nil {
		mux.Handle("GET /cluster", s.clusterPage(s.o.Cluster))
	}
	if s.o.Rooms != nil {
		s.mountRoomAPI(mux)
	}
	if !s.o.SeparateMetrics {
		s.metricsRoutes(mux)
	}
	if s.o.DevTokens {
		mux.HandleFunc("GET /token", s.serveDevToken)
	}
	if s.o.Web != nil {
		mux.Handle("/", s.o.Web)
	}
	return mux
}

// MetricsHandler serves /metrics and, when on, pprof: for the separate metrics listener
// (Options.SeparateMetrics); without it Handler serves them.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	s.metricsRoutes(mux)
	return mux
}

// metricsRoutes adds /metrics (unauthenticated) and pprof (admin) to mux.
func (s *Server) metricsRoutes(mux *http.ServeMux) {
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{}))
	}
	if s.o.Pprof {
		mux.Handle("/debug/pprof/", s.admin(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", s.admin(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", s.admin(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", s.admin(http.HandlerFunc(pprof.Trace)))
	}
}

// Drain makes /readyz fail and refuses new sessions; the node keeps serving the others and
// tells them, in batches, to migrate to another node (migrate.go). The drain deadline is
// Options.DrainTimeout from the first call.
func (s *Server) Drain() {
	s.migr.start(s.o.DrainTimeout) // before draining is seen: DrainDeadline reads its deadline
	s.draining.Store(true)
	s.n.Drain()
}

// Close ends every signaling session and WHIP/WHEP resource.
func (s *Server) Close() {
	s.migr.close()
	s.mu.Lock()
	var ss []*session
	for x := range s.sessions {
		ss = append(ss, x)
	}
	rs := s.resources
	s.resources = make(map[string]*node.Participant)
	s.mu.Unlock()
	for _, x := range ss {
		x.closeWith(websocket.StatusGoingAway, "server shutting down", true)
	}
	for _, p := range rs {
		p.Close()
	}
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has written the HTTP error
	}
	sess := newSession(s, conn)
	sess.ip = s.o.Joins.clientIP(r)
	s.mu.Lock()
	s.sessions[sess] = false
	s.mu.Unlock()
	if d := s.joinDeadline(); d > 0 {
		t := time.AfterFunc(d, func() { s.enforceJoinDeadline(sess, d) })
		defer t.Stop()
	}
	sess.run()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.migr.ended(sess)
}

func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
	room, identity := r.URL.Query().Get("room"), r.URL.Query().Get("identity")
	if room == "" || identity == "" {
		http.Error(w, "room and identity are required", http.StatusBadRequest)
		return
	}
	tok, err := s.o.Keys.Mint(auth.Grant{Room: room, Identity: identity, Publish: true, Subscribe: true}, time.Hour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
}

// whipListener discards notifications: WHIP and WHEP sessions have no signaling channel.
type whipListener struct{}

func (whipListener) Notify(string, any) {}

// Untold implements node.Untold: dynacast cannot ask a WHIP encoder to pause a layer.
func (whipListener) Untold() {}

// serveWHIP handles POST /whip/{room} (publish) and POST /whep/{room} (watch).
func (s *Server) serveWHIP(w http.ResponseWriter, r *http.Request) {
	publish := strings.HasPrefix(r.URL.Path, "/whip/")
	room := r.PathValue("room")
	if !s.admitJoin(w, r) {
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/sdp" {
		http.Error(w, "Content-Type must be application/sdp", http.StatusUnsupportedMediaType)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g, err := s.o.Keys.Verify(strings.TrimSpace(tok))
	if err != nil {
		http.Error(w, codeOf(err)+": "+err.Error(), http.StatusUnauthorized)
		return
	}
	if g.Room != room || (publish && !g.Publish) || (!publish && !g.Subscribe) {
		http.Error(w, "forbidden: the token does not grant this room and action", http.StatusForbidden)
		return
	}
	if err := s.admit(room, g.Identity); err != nil {
		if codeOf(err) == proto.CodeClusterUnavailable {
			w.Header().Set("Retry-After", "2")
		}
		http.Error(w, codeOf(err)+": "+err.Error(), statusOf(err))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, proto.MaxMessage+1))
	if err != nil {
		http.Error(w, "cannot read offer", http.StatusBadRequest)
		return
	}
	if len(body) > proto.MaxMessage {
		http.Error(w, "offer too large", http.StatusRequestEntityTooLarge)
		return
	}
	p, err := s.n.Join(room, g.Identity, node.Grant{Publish: publish, Subscribe: !publish, Metadata: g.Metadata}, false, whipListener{})
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	p.CloseOnTransportFailure()
	var answer string
	if publish {
		answer, _, err = p.Publish(string(body), true)
	} else {
		answer, err = p.SubscribeOffer(string(body))
	}
	if err != nil {
		p.Close()
		http.Error(w, codeOf(err)+": "+err.Error(), statusOf(err))
		return
	}
	s.mu.Lock()
	s.resources[p.ID()] = p
	s.mu.Unlock()
	go func() { // forget the resource when its transport fails or it is deleted
		<-p.Done()
		s.mu.Lock()
		delete(s.resources, p.ID())
		s.mu.Unlock()
	}()
	kind := "whep"
	if publish {
		kind = "whip"
	}
	for _, l := range iceLinks(s.iceServers(p.ID())) {
		w.Header().Add("Link", l)
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", fmt.Sprintf("/%s/%s/%s", kind, room, p.ID()))
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// iceServers are the ICE servers for a participant (none without Options.ICEServers).
func (s *Server) iceServers(participant string) []proto.ICEServer {
	if s.o.ICEServers == nil {
		return nil
	}
	return s.o.ICEServers(participant)
}

// iceLinks are the Link header values announcing ICE servers to a WHIP or WHEP client
// (RFC 9725, section 4.6): one per URL.
func iceLinks(servers []proto.ICEServer) []string {
	var out []string
	for _, is := range servers {
		for _, u := range is.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if is.Username != "" {
				l += `; username="` + quote(is.Username) + `"; credential="` + quote(is.Credential) + `"; credential-type="password"`
			}
			out = append(out, l)
		}
	}
	return out
}

// quote escapes s for an HTTP quoted-string.
func quote(s string) string { return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) }

// serveDeleteResource handles DELETE /whip|whep/{room}/{id}: it stops the session for a token of
// the session's room and identity (expired or not) or an admin token.
func (s *Server) serveDeleteResource(w http.ResponseWriter, r *http.Request) {
	g, ok := s.deleteGrant(w, r)
	if !ok {
		return
	}
	id, room := r.PathValue("id"), r.PathValue("room")
	s.mu.Lock()
	p := s.resources[id]
	if p == nil || p.Room().Name() != room {
		s.mu.Unlock()
		writeJSONError(w, http.StatusNotFound, proto.CodeNotFound, "no such session")
		return
	}
	if !mayDelete(g, room, p.Info().Identity) {
		s.mu.Unlock()
		writeJSONError(w, http.StatusForbidden, proto.CodeForbidden, "the token is for another room or identity than this session's")
		return
	}
	delete(s.resources, id)
	s.mu.Unlock()
	p.Close()
	w.WriteHeader(http.StatusOK)
}

func statusOf(err error) int {
	if st := limitStatus(codeOf(err)); st != 0 {
		return st
	}
	switch codeOf(err) {
	case proto.CodeBadSDP, proto.CodeBadRequest:
		return http.StatusBadRequest
	case proto.CodeNotFound:
		return http.StatusNotFound
	case proto.CodeForbidden:
		return http.StatusForbidden
	case proto.CodeDraining, proto.CodeClusterUnavailable:
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
