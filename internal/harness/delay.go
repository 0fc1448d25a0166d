package harness

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// frameBuf holds one Ethernet frame of a 1500-byte MTU (plus room for a VLAN tag).
	frameBuf = 2048
	// delayQueue is how many frames one direction holds in flight; more are dropped, as a full
	// router queue would (at 100 Mbit/s of full frames that is about 300 ms).
	delayQueue = 4096
)

// frame is one Ethernet frame waiting for its time.
type frame struct {
	buf []byte
	n   int
	due time.Time
}

// delayLink is the userspace bridge of a host made WithDelay: two TAP devices, eth0 in the host
// and a port of the switch's bridge, and per direction a reader that stamps each frame with its
// due time and a writer that copies it to the other side once due. Frames are never reordered:
// after the delay is lowered, a frame waits for the ones queued before it.
type delayLink struct {
	host, sw *os.File
	egress   atomic.Int64 // ns of delay from host to switch
	ingress  atomic.Int64 // ns of delay from switch to host
	routes   routes       // per-destination delays of the egress direction (delayto.go)
	stop     chan struct{}
	wg       sync.WaitGroup
}

// newDelayLink starts copying between the TAP files host and sw.
func newDelayLink(host, sw *os.File, egress, ingress time.Duration) *delayLink {
	l := &delayLink{host: host, sw: sw, stop: make(chan struct{})}
	l.set(egress, ingress)
	l.pipe(host, sw, &l.egress, &l.routes)
	l.pipe(sw, host, &l.ingress, nil)
	return l
}

// set changes the delays; frames read from now on get them.
func (l *delayLink) set(egress, ingress time.Duration) {
	l.egress.Store(int64(egress))
	l.ingress.Store(int64(ingress))
}

// close stops the goroutines, waits for them, and closes the TAP files (removing the devices).
func (l *delayLink) close() {
	close(l.stop)
	l.host.Close() // unblocks the readers
	l.sw.Close()
	l.wg.Wait()
}

// pipe starts the reader and writer of one direction; rt, when not nil, holds the direction's
// per-destination delays, each with a queue and writer of its own.
func (l *delayLink) pipe(from, to *os.File, delay *atomic.Int64, rt *routes) {
	queue := make(chan frame, delayQueue)
	free := make(chan []byte, delayQueue)
	if rt != nil {
		rt.start(l, to, free)
	}
	l.wg.Add(2)
	go l.read(from, delay, rt, queue, free)
	go l.write(to, queue, free)
}

// read stamps each frame read from from with its due time and queues it (on its destination's
// route, if it has one), dropping it when the queue is full.
func (l *delayLink) read(from *os.File, delay *atomic.Int64, rt *routes, queue chan<- frame, free chan []byte) {
	defer l.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, frameBuf)
		}
		n, err := from.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select { // a transient error (the device is down): do not spin
			case <-l.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		q, d := queue, time.Duration(delay.Load())
		if r := rt.lookup(buf[:n]); r != nil {
			q, d = r.queue, time.Duration(r.delay.Load())
		}
		f := frame{buf: buf, n: n, due: time.Now().Add(d)}
		select {
		case q <- f:
		default:
			recycle(free, buf)
		}
	}
}

// write copies each queued frame to to once it is due.
func (l *delayLink) write(to *os.File, queue <-chan frame, free chan<- []byte) {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var f frame
		select {
		case <-l.stop:
			return
		case f = <-queue:
		}
		if wait := time.Until(f.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-l.stop:
				return
			case <-timer.C:
			}
		}
		to.Write(f.buf[:f.n]) // an error is a lost frame, as on a wire
		recycle(free, f.buf)
	}
}

// recycle returns buf to free unless free is full.
func recycle(free chan<- []byte, buf []byte) {
	select {
	case free <- buf:
	default:
	}
}
