// Package client is the Go client of Cascade's signaling protocol (PROTOCOL.md): a real WebRTC
// participant with a send and a receive transport. The tests and the load-test bots use it.
//
// Notifications arrive in order through Options.OnNotification; Decode turns each into its
// proto type (participant and room metadata, a moderator's mute, an unmute request, ...). When
// the session ends (the node replaced, removed or closed it, or, without Options.Resume, the
// connection dropped), Done is closed and Err tells why. With Options.Resume the session
// survives its node: see resume.go.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// ErrClosed is returned by requests on a closed client.
var ErrClosed = errors.New("client closed")

// NoteOfferFailed is the method of the notification the client itself gives OnNotification when
// it could not apply an offer of the node to its receive transport (data: the error, a JSON
// string): the transport's media from then on is in doubt, and nothing else would tell.
const NoteOfferFailed = "error"

// Client is one participant: a session, carried by one node at a time (a link).
type Client struct {
	o   Options
	api *webrtc.API
	// Join is the server's answer to the first join (Session has the latest, after a resume).
	Join proto.JoinResult
	// URL is the signaling URL of the node that first served the client: the one given to
	// Dial, or the one the join was redirected to (Session tells the current one).
	URL string
	// given are the URLs the client was given (Dial's, then Options.ResumeURLs): a resume's
	// last resort.
	given []string

	mu        sync.Mutex
	cur       *link
	seq       map[*link]int // each open link's order: notifications of older links are not the session's
	nextSeq   int
	closed    bool // Close or Abort
	leaving   bool // Close sent leave: the node's close that follows is the client's doing
	ended     bool // notes is closed
	endErr    error
	endReason string
	cred      *proto.ResumeToken
	nodes     []proto.NodeURL
	latest    proto.JoinResult
	// wanted are the producers the application subscribed to (and did not unsubscribe from),
	// subscribed again on a resume; pending those a resumed node did not have yet (their
	// publisher still resuming): subscribed when it announces them.
	wanted  map[string]bool
	pending map[string]bool

	pubMu     sync.Mutex // Publish and a resume's publish again, one at a time
	pubs      []pubTrack
	published bool // Publish was called: a resumed session has a send transport again

	notes     chan note
	migrateCh chan proto.MigrateData
	done      chan struct{} // closed by the dispatcher after the last notification
	ctx       context.Context
	stop      context.CancelFunc
	wg        sync.WaitGroup // dispatcher
	supWG     sync.WaitGroup // supervisor
	shut      bool
}

// pubTrack is a published track and its producer's id; layers are those of a simulcast track
// (track is the first), nil otherwise.
type pubTrack struct {
	track  webrtc.TrackLocal
	layers []*SimulcastLayer
	id     string
}

// Dial connects to a node's /ws URL and joins the room of the token.
func Dial(ctx context.Context, url string, o Options) (*Client, error) {
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.ResumeTimeout == 0 {
		o.ResumeTimeout = 30 * time.Second
	}
	networks := o.NetworkTypes
	if o.ICETransportPolicy == webrtc.ICETransportPolicyRelay {
		// Relay candidates are UDP (relayed over any transport to the TURN server); pion would
		// still pair its ICE-TCP host candidates, which the policy excludes.
		networks = udpOnly(networks)
	}
	api, err := newAPI(o.LoopbackOnly, o.Lean, networks)
	if err != nil {
		return nil, err
	}
	cctx, stop := context.WithCancel(context.Background())
	c := &Client{o: o, api: api, given: append([]string{url}, o.ResumeURLs...), seq: make(map[*link]int), wanted: make(map[string]bool), pending: make(map[string]bool),
		notes: make(chan note, 1024), migrateCh: make(chan proto.MigrateData, 1), done: make(chan struct{}), ctx: cctx, stop: stop}
	c.wg.Add(1)
	go c.dispatcher()
	auto := !o.NoAutoSubscribe
	l, err := c.join(ctx, url, proto.JoinData{Token: o.Token, AutoSubscribe: &auto, Region: o.Region, NoRedirect: o.NoRedirect})
	if err != nil {
		c.end(nil, nil)
		c.shutdown()
		return nil, err
	}
	c.Join, c.URL = l.join, l.url
	c.adopt(l)
	c.supWG.Add(1)
	go c.supervise()
	return c, nil
}

// hostAcceptanceWait: with ICE-TCP among the networks, the publish transport (this side
// nominates) waits so long before it picks a host pair, so that UDP wins when both work.
const hostAcceptanceWait = 100 * time.Millisecond

// udpOnly keeps the UDP networks of networks (nil: of DefaultNetworkTypes).
func udpOnly(networks []webrtc.NetworkType) []webrtc.NetworkType {
	if networks == nil {
		networks = DefaultNetworkTypes
	}
	var out []webrtc.NetworkType
	for _, n := range networks {
		if n == webrtc.NetworkTypeUDP4 || n == webrtc.NetworkTypeUDP6 {
			out = append(out, n)
		}
	}
	if out == nil {
		out = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	return out
}

func newAPI(loopback, lean bool, networks []webrtc.NetworkType) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if !lean {
		if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
			return nil, err
		}
	} else {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil { // PublishSimulcast's
			return nil, err
		}
		// Transport-wide congestion control feedback, as every browser sends it: without it the
		// node cannot estimate the client's bandwidth (nor choose its simulcast layers).
		if err := webrtc.ConfigureTWCCSender(me, reg); err != nil {
			return nil, err
		}
	}
	se := webrtc.SettingEngine{}
	if networks == nil {
		networks = DefaultNetworkTypes
	}
	se.SetNetworkTypes(networks)
	for _, n := range networks {
		if n == webrtc.NetworkTypeTCP4 || n == webrtc.NetworkTypeTCP6 { // see node.HostAcceptanceWait
			se.SetHostAcceptanceMinWait(hostAcceptanceWait)
			break
		}
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// current is the link that carries the session now.
func (c *Client) current() *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// track registers an open link, so that shutdown closes it.
func (c *Client) track(l *link) {
	c.mu.Lock()
	c.nextSeq++
	c.seq[l] = c.nextSeq
	c.mu.Unlock()
}

// forget drops a closed link.
func (c *Client) forget(l *link) {
	c.mu.Lock()
	delete(c.seq, l)
	c.mu.Unlock()
}

// Request sends a request on the current link and decodes the response's data into result
// (which may be nil). A refused request returns a *proto.Error with the server's code.
func (c *Client) Request(ctx context.Context, method string, data, result any) error {
	c.mu.Lock()
	l, closed := c.cur, c.closed && !c.leaving
	c.mu.Unlock()
	if l == nil || closed {
		return ErrClosed
	}
	err := l.request(ctx, method, data, result)
	if err == nil && (method == proto.MethodSubscribe || method == proto.MethodUnsubscribe) {
		var d proto.ProducerData
		if raw, jerr := json.Marshal(data); jerr == nil && json.Unmarshal(raw, &d) == nil && d.Producer != "" {
			c.mu.Lock()
			if method == proto.MethodSubscribe {
				c.wanted[d.Producer] = true
			} else {
				delete(c.wanted, d.Producer)
				delete(c.pending, d.Producer)
			}
			c.mu.Unlock()
		}
	}
	return err
}

// post queues a notification for the dispatcher; it drops it if the client cannot keep up (a
// real client would resync) or the session ended.
func (c *Client) post(n note) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	select {
	case c.notes <- n:
	default:
	}
}

// Done is closed when the session has ended and every notification received before has been
// handled.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) dispatcher() {
	defer c.wg.Done()
	defer close(c.done)
	for nt := range c.notes {
		l, n := nt.l, nt.n
		raw, _ := n.Data.(json.RawMessage)
		switch n.Method {
		case proto.MethodOffer:
			var d proto.SDPData
			if json.Unmarshal(raw, &d) == nil {
				select {
				case <-l.joined: // the offer needs the join answer's ICE servers
				case <-l.ctx.Done():
					continue
				}
				if err := l.onOffer(d.SDP); err != nil && l.ctx.Err() == nil {
					c.notify(NoteOfferFailed, json.RawMessage(strconvQuote(err.Error())))
				}
			}
		case proto.MethodTrickle:
			var d proto.TrickleData
			if json.Unmarshal(raw, &d) == nil {
				l.onTrickle(d)
			}
		case proto.MethodResumeToken:
			var d proto.ResumeToken
			if json.Unmarshal(raw, &d) == nil && d.Token != "" {
				c.mu.Lock()
				if c.seq[l] >= c.seq[c.cur] {
					c.cred = &d
				}
				c.mu.Unlock()
			}
		case proto.MethodProducerAdded, proto.MethodProducerMoved:
			c.subscribePending(l, raw)
		case proto.MethodMigrate:
			var d proto.MigrateData
			if json.Unmarshal(raw, &d) == nil && c.o.Resume && l == c.current() {
				select {
				case c.migrateCh <- d:
				default:
				}
			}
		}
		// An older link's notifications (a migration's old session, a stale copy told it was
		// resumed elsewhere) are not the session's.
		c.mu.Lock()
		mine := c.cur == nil || c.seq[l] >= c.seq[c.cur]
		c.mu.Unlock()
		if mine {
			c.notify(n.Method, raw)
		}
	}
}

func (c *Client) notify(method string, raw json.RawMessage) {
	c.onMediaNote(method, raw)
	if c.o.OnNotification != nil {
		c.o.OnNotification(method, raw)
	}
}

// Publish adds tracks to the send transport (creating it, with a data channel, on first use)
// and negotiates it. It returns the producers of the send transport. With Options.Resume a
// resumed session publishes the same tracks again, under the same producer ids.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) (proto.PublishResult, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	l := c.current()
	if l == nil {
		return proto.PublishResult{}, ErrClosed
	}
	pts := make([]pubTrack, len(tracks))
	for i, t := range tracks {
		pts[i] = pubTrack{track: t}
	}
	res, mids, err := l.publish(ctx, pts, nil)
	if err != nil {
		return res, err
	}
	c.published = true
	for i, t := range pts {
		t.id = producerOf(res, mids[i])
		c.pubs = append(c.pubs, t)
	}
	return res, nil
}

// producerOf is the id of the producer of media section mid in a publish answer.
func producerOf(res proto.PublishResult, mid string) string {
	for _, p := range res.Producers {
		if p.Mid == mid {
			return p.ID
		}
	}
	return ""
}

// SendData sends a message on the send transport's data channel (the data producer). Publish
// must have been called (with or without tracks) and the channel must be open.
func (c *Client) SendData(msg []byte) error {
	l := c.current()
	if l == nil {
		return ErrClosed
	}
	l.pcMu.Lock()
	dc := l.sendDC
	l.pcMu.Unlock()
	if dc == nil {
		return errors.New("no data channel: publish first")
	}
	return dc.Send(msg)
}

// DataOpen tells whether the data producer's channel is open.
func (c *Client) DataOpen() bool {
	l := c.current()
	if l == nil {
		return false
	}
	l.pcMu.Lock()
	defer l.pcMu.Unlock()
	return l.sendDC != nil && l.sendDC.ReadyState() == webrtc.DataChannelStateOpen
}

// SendMessage sends an application (chat) message to the room over signaling.
func (c *Client) SendMessage(ctx context.Context, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return c.Request(ctx, proto.MethodMessage, proto.MessageData{Data: raw}, nil)
}

// Recv is the current receive transport (nil before the first offer).
func (c *Client) Recv() *webrtc.PeerConnection {
	l := c.current()
	if l == nil {
		return nil
	}
	l.pcMu.Lock()
	defer l.pcMu.Unlock()
	return l.recv
}

// Send is the current send transport (nil before Publish).
func (c *Client) Send() *webrtc.PeerConnection {
	l := c.current()
	if l == nil {
		return nil
	}
	l.pcMu.Lock()
	defer l.pcMu.Unlock()
	return l.send
}

// Close leaves the room and closes both transports and the connection. Err then reports
// ErrClosed, or why the node had ended the session before.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.leaving = true
	l := c.cur
	c.mu.Unlock()
	if l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.request(ctx, proto.MethodLeave, struct{}{}, nil)
		cancel()
	}
	c.shutdown()
	return nil
}

// Abort drops the connection without leaving, like a client that vanishes.
func (c *Client) Abort() { c.shutdown() }

// shutdown ends the session: the supervisor ends, every link closes, the dispatcher drains.
func (c *Client) shutdown() {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return
	}
	c.shut, c.closed = true, true
	c.mu.Unlock()
	c.stop()
	c.supWG.Wait() // no new link after this
	c.closeLinks()
	c.end(nil, nil) // no-op when the supervisor ended the session first
	c.wg.Wait()
}

// closeLinks closes every open link.
func (c *Client) closeLinks() {
	c.mu.Lock()
	links := make([]*link, 0, len(c.seq))
	for l := range c.seq {
		links = append(links, l)
	}
	c.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// end ends the session once: l is the link it ended on (nil: the client ended it), resumeErr
// why a resume failed. The dispatcher then handles what is queued and closes Done.
func (c *Client) end(l *link, resumeErr error) {
	var readErr error
	var reason string
	if l != nil {
		l.mu.Lock()
		readErr, reason = l.readErr, l.closedReason
		l.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	if !c.leaving && !c.closed && readErr != nil {
		if resumeErr != nil {
			readErr = &resumeFailed{lost: readErr, err: resumeErr}
		}
		c.endErr, c.endReason = readErr, reason
	}
	close(c.notes)
}
