package cluster

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrNoResponders is returned by MemBus.Request when nothing subscribes to the subject.
var ErrNoResponders = errors.New("cluster: no responders")

// MemNet is an in-process message bus for tests and simulators: each node gets its own Bus
// from Conn, and they reach one another with NATS semantics: subjects of dot-separated tokens,
// "*" matching one token and ">" the rest in subscriptions, every subscriber (the publisher's
// own included) receiving a copy, request/reply through an inbox.
//
// Delivery is deterministic. Publish resolves the subscribers at once and appends one delivery
// per subscriber to a single FIFO queue; nothing is delivered until the caller calls Step or
// Drain (a test or a simulator, in virtual time), or Start runs a goroutine that drains it (a
// test of whole nodes, whose goroutines publish and request on their own). One delivery is
// handled at a time, so a subscription's handler is never called concurrently and sees its
// messages in publish order. A fault function set with SetFault drops or duplicates
// deliveries; SetConnected takes a node off the bus. A handler may Publish, but not Request
// (the reply would queue behind the handler) nor Step.
type MemNet struct {
	mu     sync.Mutex
	subs   []*memSub
	queue  []delivery
	fault  func(m Msg, to string) int
	inbox  uint64
	wake   chan struct{}
	handle sync.Mutex // held while a delivery is handled: one at a time

	stop    chan struct{}
	wg      sync.WaitGroup
	running bool
}

// MemBus is one node's Bus on a MemNet.
type MemBus struct {
	net  *MemNet
	name string
	down atomic.Bool
}

type memSub struct {
	bus     *MemBus
	pattern []string
	h       func(Msg)
	done    atomic.Bool
}

type delivery struct {
	sub *memSub
	m   Msg
}

// NewMemNet returns an empty bus.
func NewMemNet() *MemNet {
	return &MemNet{wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// Conn returns a node's Bus on the net; name identifies it to the fault function.
func (n *MemNet) Conn(name string) *MemBus { return &MemBus{net: n, name: name} }

// SetFault makes f decide how many copies of each delivery are made: 0 drops it, 1 is normal,
// 2 or more duplicate it (the copies follow each other in the queue). to is the receiving
// Bus's name. nil restores normal delivery.
func (n *MemNet) SetFault(f func(m Msg, to string) int) {
	n.mu.Lock()
	n.fault = f
	n.mu.Unlock()
}

// Pending is the number of deliveries queued.
func (n *MemNet) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// Step handles the oldest queued delivery, if any; false when the queue was empty. A delivery
// to a subscription ended, or to a Bus disconnected, since it was queued is dropped.
func (n *MemNet) Step() bool {
	n.handle.Lock()
	defer n.handle.Unlock()
	n.mu.Lock()
	if len(n.queue) == 0 {
		n.mu.Unlock()
		return false
	}
	d := n.queue[0]
	n.queue[0] = delivery{}
	n.queue = n.queue[1:]
	n.mu.Unlock()
	if !d.sub.done.Load() && !d.sub.bus.down.Load() {
		d.sub.h(d.m)
	}
	return true
}

// Drain handles deliveries until the queue is empty (including those the handlers publish)
// and returns how many it handled.
func (n *MemNet) Drain() int {
	i := 0
	for n.Step() {
		i++
	}
	return i
}

// Start runs a goroutine that drains the queue as deliveries arrive, until Close.
func (n *MemNet) Start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return
	}
	n.running = true
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			n.Drain()
			select {
			case <-n.stop:
				return
			case <-n.wake:
			}
		}
	}()
}

// Close stops the goroutine of Start, if any, and waits for it.
func (n *MemNet) Close() {
	n.mu.Lock()
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// publish queues m for every matching subscription and returns how many matched.
func (n *MemNet) publish(m Msg) int {
	tokens := strings.Split(m.Subject, ".")
	n.mu.Lock()
	matched := 0
	for _, s := range n.subs {
		if s.done.Load() || s.bus.down.Load() || !matchSubject(s.pattern, tokens) {
			continue
		}
		matched++
		copies := 1
		if n.fault != nil {
			copies = n.fault(m, s.bus.name)
		}
		for i := 0; i < copies; i++ {
			n.queue = append(n.queue, delivery{sub: s, m: m})
		}
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return matched
}

// matchSubject tells whether a subject's tokens match a subscription's pattern.
func matchSubject(pattern, subject []string) bool {
	for i, p := range pattern {
		switch {
		case p == ">":
			return len(subject) > i
		case i >= len(subject):
			return false
		case p != "*" && p != subject[i]:
			return false
		}
	}
	return len(pattern) == len(subject)
}

// Publish implements Bus.
func (b *MemBus) Publish(m Msg) error {
	if b.down.Load() {
		return ErrNoBus
	}
	b.net.publish(m)
	return nil
}

// Subscribe implements Bus; h runs on the goroutine that steps the net.
func (b *MemBus) Subscribe(subject string, h func(Msg)) (Subscription, error) {
	if b.down.Load() {
		return nil, ErrNoBus
	}
	s := &memSub{bus: b, pattern: strings.Split(subject, "."), h: h}
	b.net.mu.Lock()
	b.net.subs = append(b.net.subs, s)
	b.net.mu.Unlock()
	return s, nil
}

// Unsubscribe implements Subscription: deliveries still queued for it are dropped.
func (s *memSub) Unsubscribe() error {
	if s.done.Swap(true) {
		return nil
	}
	n := s.bus.net
	n.mu.Lock()
	for i, o := range n.subs {
		if o == s {
			n.subs = append(n.subs[:i], n.subs[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	return nil
}

// Request implements Bus: it returns the first answer, ErrNoResponders at once when nothing
// subscribes to subject, or ctx's error. Another goroutine must step the net meanwhile.
func (b *MemBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if b.down.Load() {
		return nil, ErrNoBus
	}
	b.net.mu.Lock()
	b.net.inbox++
	inbox := "_INBOX." + b.name + "." + strconv.FormatUint(b.net.inbox, 10)
	b.net.mu.Unlock()
	ch := make(chan []byte, 1)
	sub, err := b.Subscribe(inbox, func(m Msg) {
		select {
		case ch <- m.Data:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if b.net.publish(Msg{Subject: subject, Reply: inbox, Data: data}) == 0 {
		return nil, ErrNoResponders
	}
	select {
	case d := <-ch:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Connected implements Bus.
func (b *MemBus) Connected() bool { return !b.down.Load() }

// SetConnected takes the node off the bus (false: it publishes nothing and receives nothing,
// not even what was queued for it) or back on.
func (b *MemBus) SetConnected(up bool) { b.down.Store(!up) }
