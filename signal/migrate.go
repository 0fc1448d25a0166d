package signal

import (
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Migration on drain (PROTOCOL.md, "Resume", "Migration"). A draining node tells each signaling
// session to move (a migrate notification naming a target from placement), a batch at a time,
// so that the targets see their new sessions arrive as a stream rather than all in one instant;
// the client resumes on the target and leaves this node once its media flows there. A session
// no node can take (a single node, no live peer) is not told: it goes on until the drain
// deadline, as before. WHIP and WHEP sessions have no signaling channel and are never told.
const (
	// DefaultMigrateBatch sessions are told per DefaultMigrateInterval: 200 a second, so a
	// node of 2,000 sessions has told them all in 10 s, well inside the default 30 s deadline.
	DefaultMigrateBatch    = 20
	DefaultMigrateInterval = 100 * time.Millisecond
	// DefaultDrainTimeout is how long sessions may go on after the node starts draining (the
	// node's --drain-timeout).
	DefaultDrainTimeout = 30 * time.Second
)

// Migration results, the result label of cascade_migrations_total.
const (
	MigrationMoved    = "moved"     // told, and ended before the deadline (left, or fenced by its resume)
	MigrationCut      = "cut"       // told, and still here at the deadline: closed
	MigrationNoTarget = "no_target" // never told: no other node could take it before the deadline
)

// MigrateOptions pace the migration of a draining node's sessions.
type MigrateOptions struct {
	// Batch sessions are told per Interval (0: the defaults).
	Batch    int
	Interval time.Duration
}

// Migrations counts what became of a drain's signaling sessions.
type Migrations struct {
	Told, Moved, Cut, NoTarget int
}

// migrator tells a draining node's sessions to move. Its goroutine starts with the first Drain
// and ends at the deadline or when the server closes.
type migrator struct {
	srv      *Server
	log      hclog.Logger
	batch    int
	interval time.Duration
	metric   *prometheus.CounterVec // nil without a Registerer

	once     sync.Once
	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
	deadline time.Time // set once, before the goroutine starts

	mu     sync.Mutex
	told   map[*session]bool // told and not ended
	counts Migrations
}

func newMigrator(srv *Server, o MigrateOptions, reg prometheus.Registerer) *migrator {
	m := &migrator{srv: srv, log: srv.log.Named("migrate"), batch: o.Batch, interval: o.Interval,
		stop: make(chan struct{}), told: make(map[*session]bool)}
	if m.batch <= 0 {
		m.batch = DefaultMigrateBatch
	}
	if m.interval <= 0 {
		m.interval = DefaultMigrateInterval
	}
	if reg != nil {
		m.metric = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_migrations_total",
			Help: "Signaling sessions of a draining node, by result (moved: told to migrate and gone before the deadline; cut: told, and closed at the deadline; no_target: no other node could take it)."},
			[]string{"result"})
		if err := reg.Register(m.metric); err != nil {
			m.log.Warn("cannot register the migration metric", "error", err)
			m.metric = nil
		} else {
			for _, r := range []string{MigrationMoved, MigrationCut, MigrationNoTarget} {
				m.metric.WithLabelValues(r) // exported at 0 before the first drain
			}
		}
	}
	return m
}

// start begins the migration, once; the deadline is timeout from the first call (now for a
// negative timeout).
func (m *migrator) start(timeout time.Duration) {
	m.once.Do(func() {
		m.deadline = time.Now().Add(max(timeout, 0))
		m.wg.Add(1)
		go m.run()
	})
}

// close stops the migration and waits for it.
func (m *migrator) close() {
	m.once.Do(func() {}) // a Drain after close starts nothing
	m.stopOnce.Do(func() { close(m.stop) })
	m.wg.Wait()
}

// run tells the sessions to move, Batch per Interval, until the deadline; sessions with no
// target are tried again at the next tick (a peer may come up). At the deadline, or when the
// server closes first, it closes the told sessions still here and counts the untold ones.
func (m *migrator) run() {
	defer m.wg.Done()
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	end := time.NewTimer(time.Until(m.deadline))
	defer end.Stop()
	for {
		if time.Now().Before(m.deadline) {
			m.tell()
		}
		select {
		case <-m.stop:
			m.finish()
			return
		case <-end.C:
			m.finish()
			return
		case <-tick.C:
		}
	}
}

// tell sends one batch of migrate notifications.
func (m *migrator) tell() {
	pending := m.srv.untold(m.told, &m.mu)
	type where struct{ room, region string }
	targets := map[where][]proto.NodeURL{} // placement is asked once per room and region a tick
	n := 0
	for _, s := range pending {
		if n == m.batch {
			break
		}
		// s.p and s.region were set before markJoined, under the server's lock that untold took.
		w := where{s.p.Room().Name(), s.region}
		t, ok := targets[w]
		if !ok {
			t = m.srv.migrationTarget(w.room, w.region)
			targets[w] = t
		}
		if len(t) == 0 {
			continue
		}
		u, err := proto.WebSocketURL(t[0].URL)
		if err != nil {
			continue
		}
		// Marked told only while still open, under the server's lock: a session that ends
		// meanwhile is either skipped here or seen told by ended (which runs after it left
		// the server's sessions), never counted as cut.
		m.srv.mu.Lock()
		_, open := m.srv.sessions[s]
		if open {
			m.mu.Lock()
			m.told[s] = true
			m.counts.Told++
			m.mu.Unlock()
		}
		m.srv.mu.Unlock()
		if !open {
			continue
		}
		s.Notify(proto.MethodMigrate, proto.MigrateData{Node: t[0].ID, URL: u, Reason: "drain", Deadline: m.deadline.UnixMilli()})
		n++
	}
	if n > 0 {
		m.log.Debug("told sessions to migrate", "sessions", n)
	}
}

// ended records that a session ended (serveWS, after its run).
func (m *migrator) ended(s *session) {
	m.mu.Lock()
	told := m.told[s]
	delete(m.told, s)
	if told {
		m.counts.Moved++
	}
	m.mu.Unlock()
	if told && m.metric != nil {
		m.metric.WithLabelValues(MigrationMoved).Inc()
	}
}

// finish closes the told sessions still here at the deadline and counts those never told.
func (m *migrator) finish() {
	untold := len(m.srv.untold(m.told, &m.mu))
	m.mu.Lock()
	var cut []*session
	for s := range m.told {
		cut = append(cut, s)
	}
	clear(m.told)
	m.counts.Cut += len(cut)
	m.counts.NoTarget += untold
	m.mu.Unlock()
	if m.metric != nil {
		m.metric.WithLabelValues(MigrationCut).Add(float64(len(cut)))
		m.metric.WithLabelValues(MigrationNoTarget).Add(float64(untold))
	}
	for _, s := range cut {
		s.closeWith(websocket.StatusGoingAway, "drain deadline", true)
	}
	if len(cut) > 0 || untold > 0 {
		m.log.Info("drain deadline: closing the sessions told to migrate that are still here", "cut", len(cut), "not_told", untold)
	}
}

// snapshot returns the counts so far.
func (m *migrator) snapshot() Migrations {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts
}

// untold lists the joined sessions not in told (read under mu).
func (s *Server) untold(told map[*session]bool, mu *sync.Mutex) []*session {
	s.mu.Lock()
	var out []*session
	for x, joined := range s.sessions {
		if joined {
			out = append(out, x)
		}
	}
	s.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	kept := out[:0]
	for _, x := range out {
		if !told[x] {
			kept = append(kept, x)
		}
	}
	return kept
}

// migrationTarget is where a session of room (of a client in region) moves: the best other live
// node, never a draining one (none without placement).
func (s *Server) migrationTarget(room, region string) []proto.NodeURL {
	if s.o.Placement == nil {
		return nil
	}
	return s.o.Placement.Alternatives(room, region, 1)
}

// Migrations reports what became of the signaling sessions of this node's drain so far.
func (s *Server) Migrations() Migrations { return s.migr.snapshot() }

// DrainDeadline is when the drain that started first ends (zero before Drain).
func (s *Server) DrainDeadline() time.Time {
	if !s.draining.Load() {
		return time.Time{}
	}
	return s.migr.deadline
}
