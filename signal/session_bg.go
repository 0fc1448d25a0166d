package signal

import (
	"context"
	"sync"
	"time"
)

// bg is a session's background work without a goroutine per session while it is idle: the
// outgoing queue is a slice its writer goroutine drains and leaves when it is empty (started
// again by the next message), and the ping and credential refresh are timers whose functions
// run only when due. A node holds a session per participant; three parked goroutines each
// (writer, pinger, refresher: about 8 KiB of stack apiece) and a 256-slot channel were a
// measurable part of its memory per subscriber (docs/BENCHMARKS-SIMULCAST.md, "RSS, third pass").
//
// Every goroutine it starts is counted in the session's wg before stop, never after: stop
// (under mu) forbids new ones, so run's wg.Wait sees them all.
type bg struct {
	mu       sync.Mutex
	q        [][]byte    // messages waiting for the writer, oldest first
	live     bool        // run started: a message may start the writer
	writing  bool        // a writer goroutine runs (or ended the connection: stays set)
	stopped  bool        // the session ended: nothing starts any more
	ping     *time.Timer // the next ping (nil before run)
	refresh  *time.Timer // the next resume credential (nil before the join)
	minting  sync.Mutex  // one credential at a time, so the newest is sent last
	inFlight int         // messages taken by the writer and not yet written: count as queued
}

// startBackground lets messages start the writer and arms the pinger (at the start of run).
func (s *session) startBackground() {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	s.bg.live = true
	s.bg.ping = time.AfterFunc(pingInterval, s.pingOnce)
	s.startWriterLocked()
}

// stopBackground stops the timers and forbids new goroutines; run then waits for those running.
func (s *session) stopBackground() {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	s.bg.stopped = true
	s.bg.q = nil
	if s.bg.ping != nil {
		s.bg.ping.Stop()
	}
	if s.bg.refresh != nil {
		s.bg.refresh.Stop()
	}
}

// enter counts a timer's function as one of the session's goroutines; false once it stopped.
func (s *session) enter() bool {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	if s.bg.stopped {
		return false
	}
	s.wg.Add(1)
	return true
}

// enqueue queues a message for the writer; false when outQueue messages already wait (the
// client is too slow).
func (s *session) enqueue(b []byte) bool {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	if s.bg.stopped {
		return true // the session ended: nobody reads it, as nobody read its channel
	}
	if len(s.bg.q)+s.bg.inFlight >= outQueue {
		return false
	}
	s.bg.q = append(s.bg.q, b)
	s.startWriterLocked()
	return true
}

// startWriterLocked starts the writer unless one runs (under bg.mu).
func (s *session) startWriterLocked() {
	if !s.bg.live || s.bg.writing || s.bg.stopped {
		return
	}
	if len(s.bg.q) == 0 && !s.isClosing() {
		return
	}
	s.bg.writing = true
	s.wg.Add(1)
	go s.writer()
}

// isClosing tells whether closeWith was called.
func (s *session) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// next takes the next message for the writer; ok false when the writer should leave (it then
// clears writing when the queue is merely empty, so that the next message starts another).
func (s *session) next() (b []byte, closing, ok bool) {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	s.bg.inFlight = 0
	if s.ctx.Err() != nil {
		return nil, false, false // the session ended: writing stays set, nothing starts
	}
	if s.isClosing() {
		if s.closeFlush && len(s.bg.q) > 0 {
			return s.pop(), true, true
		}
		return nil, true, false
	}
	if len(s.bg.q) == 0 {
		s.bg.writing, s.bg.q = false, nil
		return nil, false, false
	}
	return s.pop(), false, true
}

// pop takes the oldest queued message (under bg.mu); it counts as queued until written.
func (s *session) pop() []byte {
	b := s.bg.q[0]
	s.bg.q[0] = nil
	s.bg.q = s.bg.q[1:]
	s.bg.inFlight = 1
	return b
}

// writer writes the queued messages in order and leaves when none is left; once the session
// closes it flushes what is queued (when asked) and sends the close frame.
func (s *session) writer() {
	defer s.wg.Done()
	for {
		b, closing, ok := s.next()
		if closing && !ok {
			// Close sends the close frame and waits (bounded) for the client's; the reader's
			// Read then fails and the session ends.
			_ = s.conn.Close(s.closeCode, s.closeReason)
			s.cancel()
			return
		}
		if !ok {
			return
		}
		if err := s.write(b); err != nil {
			if closing {
				s.closeFlush = false // read by next, on this goroutine only
				continue
			}
			s.cancel()
			return
		}
	}
}

// pingOnce pings the client; one that does not answer within pingTimeout ends the session.
func (s *session) pingOnce() {
	if !s.enter() {
		return
	}
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, pingTimeout)
	err := s.conn.Ping(ctx)
	cancel()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("signaling client did not answer ping", "error", err)
			s.cancel()
		}
		return
	}
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	if !s.bg.stopped {
		s.bg.ping.Reset(pingInterval)
	}
}

// closeWriter starts the writer for a close when none runs (closeWith).
func (s *session) closeWriter() {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	s.startWriterLocked()
}

// queued removes and returns the queued messages (tests of sessions that never run).
func (s *session) queued() [][]byte {
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	q := s.bg.q
	s.bg.q = nil
	return q
}
