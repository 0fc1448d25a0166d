package main

import (
	"sync"
	"time"
)

// gate lets the sampler take each minute's memory figures at a quiet moment: it closes the
// gate (no session starts), waits for the sessions under way to end, reads, and opens it again.
// So the figures compare like with like, a node holding no session, whatever point of their
// cycle the sessions were at; the churn goes on around the reading.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	active int
}

func newGate() *gate {
	g := &gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enter waits while the gate is closed, then counts a session in.
func (g *gate) enter() {
	g.mu.Lock()
	for g.closed {
		g.cond.Wait()
	}
	g.active++
	g.mu.Unlock()
}

// leave counts a session out.
func (g *gate) leave() {
	g.mu.Lock()
	g.active--
	g.mu.Unlock()
	g.cond.Broadcast()
}

// quiesce closes the gate and waits until no session is under way, or timeout; it tells
// whether the nodes are quiet.
func (g *gate) quiesce(timeout time.Duration) bool {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		g.mu.Lock()
		n := g.active
		g.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// open lets sessions start again.
func (g *gate) open() {
	g.mu.Lock()
	g.closed = false
	g.mu.Unlock()
	g.cond.Broadcast()
}
