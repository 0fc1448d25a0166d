package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// ErrNodeSilent ends a link whose node answered nothing, not even a ping, for
// proto.PingDeadlineMillis: a machine that vanished without a TCP reset.
var ErrNodeSilent = errors.New("node silent past the ping deadline")

// link is the client's session on one node: the WebSocket and the two transports there. A
// session that resumes gets a new link on another node; the Client holds the current one.
type link struct {
	c    *Client
	url  string
	conn *websocket.Conn
	ctx  context.Context // ends with the link
	stop context.CancelFunc
	wg   sync.WaitGroup // reader, pinger
	dead chan struct{}  // closed when the reader ended: the connection is gone

	// join is the node's answer to this link's join; joined is closed once it is set (or the
	// join failed): offers wait for it, they need its ICE servers.
	join   proto.JoinResult
	joined chan struct{}

	lastRx atomic.Int64 // unix nanos of the latest message from the node
	// media: a consumer track delivered its first packet; rtcp: the node sent RTCP about a
	// published track. A migration leaves the old node once the new link has both (carries).
	media, rtcp atomic.Bool
	nextID      atomic.Int64

	mu           sync.Mutex
	pending      map[string]chan proto.Response
	readErr      error // why the connection ended, unless the client ended it
	closedReason string
	gotClosed    bool // the node said closed: the session is over there, never resume it
	retired      bool // the client ended the link (Close, a redirect, a migration's old link)

	pcMu       sync.Mutex
	send, recv *webrtc.PeerConnection
	sendDC     *webrtc.DataChannel
	// Remote candidates that arrived before their transport had a remote description.
	remoteCands map[string][]webrtc.ICECandidateInit
	// Local candidates held until the server has the transport's description.
	localReady map[string]bool
	localCands map[string][]webrtc.ICECandidateInit
}

// dialLink opens a WebSocket to url and starts its reader (and, with Resume, its pinger).
// The dial is bounded by ctx; the link then lives until close.
func (c *Client) dialLink(ctx context.Context, url string) (*link, error) {
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	lctx, stop := context.WithCancel(context.Background())
	l := &link{c: c, url: url, conn: conn, ctx: lctx, stop: stop, dead: make(chan struct{}), joined: make(chan struct{}),
		pending: make(map[string]chan proto.Response), remoteCands: make(map[string][]webrtc.ICECandidateInit),
		localReady: make(map[string]bool), localCands: make(map[string][]webrtc.ICECandidateInit)}
	l.lastRx.Store(time.Now().UnixNano())
	c.track(l)
	l.wg.Add(1)
	go l.reader()
	if c.o.Resume {
		l.wg.Add(1)
		go l.pinger()
	}
	return l, nil
}

// request sends a request on the link and decodes the response's data into result.
func (l *link) request(ctx context.Context, method string, data, result any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	id := strconv.FormatInt(l.nextID.Add(1), 10)
	num := json.Number(id)
	b, err := json.Marshal(proto.Request{ID: &num, Method: method, Data: raw})
	if err != nil {
		return err
	}
	ch := make(chan proto.Response, 1)
	l.mu.Lock()
	if l.retired && method != proto.MethodLeave {
		l.mu.Unlock()
		return ErrClosed
	}
	l.pending[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, l.c.o.RequestTimeout)
	defer cancel()
	if err := l.conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			if r.Error == nil {
				return &proto.Error{Code: proto.CodeInternal, Message: "refused without an error"}
			}
			return r.Error
		}
		if result != nil {
			if raw, ok := r.Data.(json.RawMessage); ok {
				return json.Unmarshal(raw, result)
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case <-l.ctx.Done():
		return fmt.Errorf("%s: %w", method, ErrClosed)
	}
}

// frame is a response or a notification as read off the wire.
type frame struct {
	ID     *json.Number    `json:"id"`
	OK     bool            `json:"ok"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data"`
	Error  *proto.Error    `json:"error"`
}

// note is a notification and the link it came on.
type note struct {
	l *link
	n proto.Notification
}

func (l *link) reader() {
	defer l.wg.Done()
	defer close(l.dead)
	defer l.stop()
	for {
		_, b, err := l.conn.Read(l.ctx)
		if err != nil {
			l.mu.Lock()
			if !l.retired && l.readErr == nil {
				l.readErr = err
			}
			l.mu.Unlock()
			return
		}
		l.lastRx.Store(time.Now().UnixNano())
		var f frame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if f.ID != nil {
			l.mu.Lock()
			ch := l.pending[f.ID.String()]
			l.mu.Unlock()
			if ch != nil {
				ch <- proto.Response{ID: f.ID, OK: f.OK, Data: f.Data, Error: f.Error}
			}
			continue
		}
		if f.Method == proto.MethodClosed {
			// Recorded here, before the connection's end is seen: a close that follows the
			// closed notification must never be taken for a lost node.
			var d proto.Closed
			_ = json.Unmarshal(f.Data, &d)
			l.mu.Lock()
			l.gotClosed, l.closedReason = true, d.Reason
			l.mu.Unlock()
		}
		l.c.post(note{l, proto.Notification{Method: f.Method, Data: f.Data}})
	}
}

// pinger sends a ping every proto.PingIntervalMillis and ends the link when nothing at all
// arrived for proto.PingDeadlineMillis. The answers need no waiting for: any message proves
// the node alive (the reader stamps lastRx).
func (l *link) pinger() {
	defer l.wg.Done()
	every := time.Duration(proto.PingIntervalMillis) * time.Millisecond
	deadline := time.Duration(proto.PingDeadlineMillis) * time.Millisecond
	if l.c.o.pingInterval > 0 { // tests
		every, deadline = l.c.o.pingInterval, 3*l.c.o.pingInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, l.lastRx.Load())) > deadline {
			l.fail(ErrNodeSilent)
			return
		}
		// A request id like any other: its answer finds no pending request and is dropped.
		b := []byte(`{"id":` + strconv.FormatInt(l.nextID.Add(1), 10) + `,"method":"ping","data":{}}`)
		ctx, cancel := context.WithTimeout(l.ctx, every)
		_ = l.conn.Write(ctx, websocket.MessageText, b)
		cancel()
	}
}

// fail ends the link as lost with err.
func (l *link) fail(err error) {
	l.mu.Lock()
	if l.readErr == nil && !l.retired {
		l.readErr = err
	}
	l.mu.Unlock()
	_ = l.conn.CloseNow()
}

// lost tells why the link ended when the client did not end it and the node did not close the
// session: the node is gone and the session may resume. nil otherwise.
func (l *link) lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retired || l.gotClosed {
		return nil
	}
	if l.readErr != nil && websocket.CloseStatus(l.readErr) == proto.CloseResumed {
		return nil
	}
	return l.readErr
}

// close retires the link: its connection and both transports. It waits for its goroutines.
func (l *link) close() {
	l.mu.Lock()
	l.retired = true
	l.mu.Unlock()
	l.stop()
	_ = l.conn.CloseNow()
	l.wg.Wait()
	l.pcMu.Lock()
	send, recv := l.send, l.recv
	l.pcMu.Unlock()
	for _, pc := range []*webrtc.PeerConnection{send, recv} {
		if pc != nil {
			_ = pc.Close()
		}
	}
}

// leave asks the node to end the session (the old link of a migration), then closes the link.
func (l *link) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l.mu.Lock()
	l.retired = true
	l.mu.Unlock()
	_ = l.request(ctx, proto.MethodLeave, struct{}{}, nil)
	cancel()
	l.close()
}
