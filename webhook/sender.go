package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of Options.
const (
	DefaultRetryWindow = 10 * time.Minute
	DefaultQueue       = 10000
	DefaultTimeout     = 10 * time.Second
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultDrain       = 2 * time.Second
)

// maxResponse bounds what is read of a receiver's answer (read so the connection is reused).
const maxResponse = 64 << 10

// Options configure a Sender.
type Options struct {
	// URLs receive every event, each from its own queue and goroutine.
	URLs []string
	// Key signs the calls (see ParseKey and Sign).
	Key []byte
	// RetryWindow is how long after it happened an event is still tried (0:
	// DefaultRetryWindow); past it the event is given up and counted as expired.
	RetryWindow time.Duration
	// Queue is the events waiting per URL (0: DefaultQueue); more are dropped and counted.
	Queue int
	// Timeout bounds one attempt (0: DefaultTimeout).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between two attempts of one event: it doubles
	// from MinBackoff up to MaxBackoff, with jitter (0: the defaults).
	MinBackoff, MaxBackoff time.Duration
	// Drain is how long Close keeps delivering what is queued (0: DefaultDrain).
	Drain time.Duration
	// Client makes the calls (nil: a client of its own that follows no redirects).
	Client *http.Client
	// Logger receives delivery failures.
	Logger hclog.Logger
}

// Sender delivers events to the configured URLs. Send never blocks: each URL has a bounded
// queue and one goroutine that delivers its events one at a time, in the order sent, each
// retried until the receiver answers 2xx or its retry window ends. Close stops it.
type Sender struct {
	o   Options
	log hclog.Logger
	eps []*endpoint

	stats stats

	mu     sync.RWMutex // guards closed against Send racing Close
	closed bool

	stop   chan struct{}      // closed by Close: deliver what is queued, briefly
	ctx    context.Context    // cancelled when the drain ends: stop at once
	cancel context.CancelFunc //
	wg     sync.WaitGroup
}

// endpoint is one URL and its queue.
type endpoint struct {
	url string
	q   chan *pending
}

// pending is an event to deliver: its id, name and body, made once for every attempt and URL.
type pending struct {
	id, name string
	body     []byte
	at       time.Time // when it happened: its retry window starts then
}

// stats are the Sender's counters (see Stats).
type stats struct {
	events                       [len(Names)]atomic.Uint64
	ok, retry, failed            atomic.Uint64
	queueFull, expired, shutdown atomic.Uint64
}

// Stats are a Sender's counters since it started.
type Stats struct {
	// Events counts the events sent, by name.
	Events map[string]uint64
	// OK, Retry and Failed count delivery attempts: answered 2xx; failed and to be tried
	// again; failed and the last (the event's window ended, or the Sender closed).
	OK, Retry, Failed uint64
	// QueueFull, Expired and Shutdown count events dropped for one URL: its queue was full;
	// its retry window ended before a receiver took it; the Sender closed before it was taken.
	QueueFull, Expired, Shutdown uint64
	// Queued is the events waiting, over every URL.
	Queued int
}

// NewSender starts the delivery goroutines. o.URLs must be absolute http(s) URLs (the
// configuration checks them) and o.Key at least MinKeyLen bytes.
func NewSender(o Options) (*Sender, error) {
	if len(o.Key) < MinKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(o.Key), MinKeyLen)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RetryWindow, DefaultRetryWindow)
	def(&o.Timeout, DefaultTimeout)
	def(&o.MinBackoff, DefaultMinBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.Drain, DefaultDrain)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	s := &Sender{o: o, log: o.Logger.Named("webhook"), stop: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, u := range o.URLs {
		ep := &endpoint{url: u, q: make(chan *pending, o.Queue)}
		s.eps = append(s.eps, ep)
		s.wg.Add(1)
		go s.run(ep)
	}
	return s, nil
}

// Send queues ev for every URL and returns at once: where a URL's queue is full, the event is
// dropped for that URL and counted. After Close it does nothing.
func (s *Sender) Send(ev Event) {
	body, err := json.Marshal(ev)
	if err != nil { // cannot happen: the types marshal
		return
	}
	p := &pending{id: ev.ID, name: ev.Event, body: body, at: time.UnixMilli(ev.CreatedAt)}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	for i, n := range Names {
		if n == ev.Event {
			s.stats.events[i].Add(1)
		}
	}
	for _, ep := range s.eps {
		select {
		case ep.q <- p:
		default:
			s.stats.queueFull.Add(1)
		}
	}
}

// Close stops taking events, delivers what is queued for up to Options.Drain, then stops the
// delivery goroutines (what is left is counted as dropped at shutdown) and waits for them.
func (s *Sender) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	t := time.AfterFunc(s.o.Drain, s.cancel)
	s.wg.Wait()
	t.Stop()
	s.cancel()
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	st := Stats{Events: map[string]uint64{}, OK: s.stats.ok.Load(), Retry: s.stats.retry.Load(), Failed: s.stats.failed.Load(),
		QueueFull: s.stats.queueFull.Load(), Expired: s.stats.expired.Load(), Shutdown: s.stats.shutdown.Load()}
	for i, n := range Names {
		st.Events[n] = s.stats.events[i].Load()
	}
	for _, ep := range s.eps {
		st.Queued += len(ep.q)
	}
	return st
}

// run delivers one URL's events in order until Close, then drains its queue.
func (s *Sender) run(ep *endpoint) {
	defer s.wg.Done()
	for {
		select {
		case p := <-ep.q:
			s.deliver(ep, p)
		case <-s.stop:
			for {
				select {
				case p := <-ep.q:
					s.deliver(ep, p)
				default:
					return
				}
			}
		}
	}
}

// deliver tries p until a receiver takes it, its window ends, or the drain ends.
func (s *Sender) deliver(ep *endpoint, p *pending) {
	end := p.at.Add(s.o.RetryWindow)
	for attempt := 0; ; attempt++ {
		if s.ctx.Err() != nil {
			s.stats.shutdown.Add(1)
			return
		}
		if !time.Now().Before(end) {
			s.stats.expired.Add(1)
			return
		}
		err := s.post(ep.url, p)
		if err == nil {
			s.stats.ok.Add(1)
			return
		}
		wait := s.backoff(attempt)
		if s.ctx.Err() != nil || !time.Now().Add(wait).Before(end) {
			s.stats.failed.Add(1) // the last attempt: the next would come too late
			if s.ctx.Err() != nil {
				s.stats.shutdown.Add(1)
				return
			}
			s.stats.expired.Add(1)
			s.log.Warn("webhook given up: retry window over", "url", ep.url, "event", p.name, "id", p.id, "attempts", attempt+1, "error", err)
			return
		}
		s.stats.retry.Add(1)
		s.log.Debug("webhook failed: will retry", "url", ep.url, "event", p.name, "id", p.id, "error", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

// backoff is the wait after the attempt-th failure: MinBackoff doubled attempt times, at most
// MaxBackoff, then a random part of it taken off (between none and half) so that nodes that
// failed together do not retry together.
func (s *Sender) backoff(attempt int) time.Duration {
	d := s.o.MaxBackoff
	if attempt < 30 {
		d = min(s.o.MinBackoff<<attempt, s.o.MaxBackoff)
	}
	return d - time.Duration(rand.Int64N(int64(d/2)+1))
}

// errStatus is a receiver's answer other than 2xx.
var errStatus = errors.New("receiver answered")

// post makes one attempt: signed now, bounded by Options.Timeout.
func (s *Sender) post(url string, p *pending) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(p.body))
	if err != nil {
		return err
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cascade-webhook")
	req.Header.Set(HeaderID, p.id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(s.o.Key, p.id, now, p.body))
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w %s", errStatus, resp.Status)
	}
	return nil
}
