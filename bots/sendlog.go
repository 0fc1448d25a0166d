package bots

import (
	"sync"
	"sync/atomic"
	"time"
)

// sendLog remembers when a publisher sent each frame, keyed by RTP timestamp, so that a
// subscriber in the same process computes one-way latency as receive time minus send time.
// The node forwards RTP timestamps unchanged (across relay hops too), so the key survives every
// hop. Both times come from this process's clock: no clock synchronisation is assumed.
type sendLog struct {
	step    uint32 // RTP ticks per frame
	base    atomic.Uint32
	started atomic.Bool
	slots   [4096]sendSlot
	// first and last are the unix nanos of the first and the latest frame sent: the window in
	// which the producer is live, so a subscriber's silence outside it is no stall.
	first, last atomic.Int64
}

type sendSlot struct {
	ts atomic.Uint32
	at atomic.Int64 // unix nanos
}

func newSendLog(step uint32) *sendLog { return &sendLog{step: step} }

// sent records that the frame with RTP timestamp ts left at t.
func (l *sendLog) sent(ts uint32, t time.Time) {
	if !l.started.Load() {
		l.base.Store(ts)
		l.started.Store(true)
	}
	s := &l.slots[((ts-l.base.Load())/l.step)%uint32(len(l.slots))]
	s.at.Store(0)
	s.ts.Store(ts)
	s.at.Store(t.UnixNano())
	l.first.CompareAndSwap(0, t.UnixNano())
	l.last.Store(t.UnixNano())
}

// live is the window in which the producer sent, up to end (a nil log, a producer this run
// did not publish, counts as live all along).
func (l *sendLog) live(end int64) span {
	if l == nil {
		return span{0, end}
	}
	first, last := l.first.Load(), l.last.Load()
	if first == 0 {
		return span{}
	}
	// A producer that sent in the last StallGap is still live at end.
	if end-last <= int64(StallGap) {
		last = end
	}
	return span{first, last}
}

// when returns the send time of the frame with RTP timestamp ts, if still remembered.
func (l *sendLog) when(ts uint32) (int64, bool) {
	if !l.started.Load() {
		return 0, false
	}
	s := &l.slots[((ts-l.base.Load())/l.step)%uint32(len(l.slots))]
	at := s.at.Load()
	if at == 0 || s.ts.Load() != ts {
		return 0, false
	}
	return at, true
}

// sendLogs maps producer ids to their publishers' send logs.
type sendLogs struct {
	mu   sync.RWMutex
	logs map[string]*sendLog
}

func (s *sendLogs) add(producer string, l *sendLog) {
	s.mu.Lock()
	if s.logs == nil {
		s.logs = make(map[string]*sendLog)
	}
	s.logs[producer] = l
	s.mu.Unlock()
}

func (s *sendLogs) get(producer string) *sendLog {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.logs[producer]
}
