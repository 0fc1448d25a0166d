// Package client is the Go client of Cascade's signaling protocol (PROTOCOL.md): a real WebRTC
// participant with a send and a receive transport. The tests and the load-test bots use it.
//
// Notifications arrive in order through Options.OnNotification; Decode turns each into its
// proto type (participant and room metadata, a moderator's mute, an unmute request, ...). When
// the node ends the session (replaced, removed, room deleted), Done is closed and Err tells why.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// ErrClosed is returned by requests on a closed client.
var ErrClosed = errors.New("client closed")

// Client is one participant.
type Client struct {
	o    Options
	conn *websocket.Conn
	api  *webrtc.API
	// Join is the server's answer to join.
	Join proto.JoinResult
	// URL is the signaling URL of the node that serves the client: the one given to Dial, or
	// the one the join was redirected to.
	URL string

	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[string]chan proto.Response
	closed  bool
	// Why the connection ended, when the node ended it (see Err): the reader's error and the
	// reason of the closed notification.
	readErr      error
	closedReason string
	leaving      bool // Close sent leave: the node's close that follows is the client's doing

	joined chan struct{}           // closed once Join is set: notifications wait for it
	notes  chan proto.Notification // closed by the reader when the connection ends
	done   chan struct{}           // closed by the dispatcher after the last notification
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	pcMu       sync.Mutex
	send, recv *webrtc.PeerConnection
	sendDC     *webrtc.DataChannel
	// Remote candidates that arrived before their transport had a remote description.
	remoteCands map[string][]webrtc.ICECandidateInit
	// Local candidates held until the server has the transport's description.
	localReady map[string]bool
	localCands map[string][]webrtc.ICECandidateInit
}

// Dial connects to a node's /ws URL and joins the room of the token.
func Dial(ctx context.Context, url string, o Options) (*Client, error) {
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
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
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	cctx, stop := context.WithCancel(context.Background())
	c := &Client{o: o, URL: url, conn: conn, api: api, pending: make(map[string]chan proto.Response),
		notes: make(chan proto.Notification, 1024), joined: make(chan struct{}), done: make(chan struct{}), ctx: cctx, stop: stop,
		remoteCands: make(map[string][]webrtc.ICECandidateInit), localReady: make(map[string]bool),
		localCands: make(map[string][]webrtc.ICECandidateInit)}
	c.wg.Add(2)
	go c.reader()
	go c.dispatcher()
	auto := !o.NoAutoSubscribe
	join := proto.JoinData{Token: o.Token, AutoSubscribe: &auto, Region: o.Region, NoRedirect: o.NoRedirect}
	var res proto.JoinResult
	err = c.Request(ctx, proto.MethodJoin, join, &res)
	// The first offer may already be queued: the dispatcher handles it once Join (with the
	// ICE servers of both transports) is set.
	c.Join = res
	close(c.joined)
	if err != nil {
		c.shutdown()
		return nil, err
	}
	if r := c.Join.Redirect; r != nil {
		// The node placed us elsewhere: follow once, and that node keeps us.
		c.shutdown()
		if o.NoRedirect || r.URL == "" {
			return nil, fmt.Errorf("join %s: redirected without a usable node", url)
		}
		o.NoRedirect = true
		return Dial(ctx, r.URL, o)
	}
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

// config is the configuration of both transports: the ICE servers of the join response.
func (c *Client) config() webrtc.Configuration {
	cfg := webrtc.Configuration{ICETransportPolicy: c.o.ICETransportPolicy}
	for _, s := range c.Join.ICEServers {
		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return cfg
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

// Request sends a request and decodes the response's data into result (which may be nil).
// A refused request returns a *proto.Error with the server's code.
func (c *Client) Request(ctx context.Context, method string, data, result any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	id := strconv.FormatInt(c.nextID.Add(1), 10)
	num := json.Number(id)
	b, err := json.Marshal(proto.Request{ID: &num, Method: method, Data: raw})
	if err != nil {
		return err
	}
	ch := make(chan proto.Response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
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
	case <-c.ctx.Done():
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

func (c *Client) reader() {
	defer c.wg.Done()
	defer close(c.notes)
	defer c.stop()
	for {
		_, b, err := c.conn.Read(c.ctx)
		if err != nil {
			c.mu.Lock()
			if !c.closed && !c.leaving {
				c.readErr = err
			}
			c.mu.Unlock()
			return
		}
		var f frame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if f.ID != nil {
			c.mu.Lock()
			ch := c.pending[f.ID.String()]
			c.mu.Unlock()
			if ch != nil {
				ch <- proto.Response{ID: f.ID, OK: f.OK, Data: f.Data, Error: f.Error}
			}
			continue
		}
		select {
		case c.notes <- proto.Notification{Method: f.Method, Data: f.Data}:
		default: // the client cannot keep up; a real client would resync
		}
	}
}

// Done is closed when the connection to the node has ended and every notification received
// before has been handled.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) dispatcher() {
	defer c.wg.Done()
	defer close(c.done)
	<-c.joined
	for n := range c.notes {
		{
			raw, _ := n.Data.(json.RawMessage)
			switch n.Method {
			case proto.MethodOffer:
				var d proto.SDPData
				if json.Unmarshal(raw, &d) == nil {
					if err := c.onOffer(d.SDP); err != nil && c.ctx.Err() == nil {
						c.notify("error", json.RawMessage(strconv.Quote(err.Error())))
					}
				}
			case proto.MethodTrickle:
				var d proto.TrickleData
				if json.Unmarshal(raw, &d) == nil {
					c.onTrickle(d)
				}
			case proto.MethodClosed:
				var d proto.Closed
				if json.Unmarshal(raw, &d) == nil {
					c.mu.Lock()
					c.closedReason = d.Reason
					c.mu.Unlock()
				}
			}
			c.notify(n.Method, raw)
		}
	}
}

func (c *Client) notify(method string, raw json.RawMessage) {
	if c.o.OnNotification != nil {
		c.o.OnNotification(method, raw)
	}
}

func toInit(x proto.ICECandidateInit) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{Candidate: x.Candidate, SDPMid: x.SDPMid, SDPMLineIndex: x.SDPMLineIndex, UsernameFragment: x.UsernameFragment}
}

func fromInit(x webrtc.ICECandidateInit) proto.ICECandidateInit {
	return proto.ICECandidateInit{Candidate: x.Candidate, SDPMid: x.SDPMid, SDPMLineIndex: x.SDPMLineIndex, UsernameFragment: x.UsernameFragment}
}

func (c *Client) pc(transport string) *webrtc.PeerConnection {
	if transport == proto.TransportSend {
		return c.send
	}
	return c.recv
}

func (c *Client) onTrickle(d proto.TrickleData) {
	c.pcMu.Lock()
	defer c.pcMu.Unlock()
	pc := c.pc(d.Transport)
	if pc == nil || pc.RemoteDescription() == nil {
		c.remoteCands[d.Transport] = append(c.remoteCands[d.Transport], toInit(d.Candidate))
		return
	}
	_ = pc.AddICECandidate(toInit(d.Candidate))
}

// remoteDescribed applies the remote candidates held for a transport; pcMu is held.
func (c *Client) remoteDescribed(transport string) {
	pc := c.pc(transport)
	for _, cand := range c.remoteCands[transport] {
		_ = pc.AddICECandidate(cand)
	}
	delete(c.remoteCands, transport)
}

func (c *Client) trickle(transport string) func(*webrtc.ICECandidate) {
	return func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		c.pcMu.Lock()
		if !c.localReady[transport] {
			c.localCands[transport] = append(c.localCands[transport], cand.ToJSON())
			c.pcMu.Unlock()
			return
		}
		c.pcMu.Unlock()
		c.sendCandidates(transport, []webrtc.ICECandidateInit{cand.ToJSON()})
	}
}

// localDescribed marks that the server has the transport's description and sends the local
// candidates held until then.
func (c *Client) localDescribed(transport string) {
	c.pcMu.Lock()
	c.localReady[transport] = true
	held := c.localCands[transport]
	delete(c.localCands, transport)
	c.pcMu.Unlock()
	c.sendCandidates(transport, held)
}

func (c *Client) sendCandidates(transport string, cands []webrtc.ICECandidateInit) {
	for _, cand := range cands {
		_ = c.Request(c.ctx, proto.MethodTrickle, proto.TrickleData{Transport: transport, Candidate: fromInit(cand)}, nil)
	}
}

func (c *Client) onOffer(sdp string) error {
	c.pcMu.Lock()
	if c.recv == nil {
		pc, err := c.api.NewPeerConnection(c.config())
		if err != nil {
			c.pcMu.Unlock()
			return err
		}
		pc.OnICECandidate(c.trickle(proto.TransportRecv))
		if c.o.OnTrack != nil {
			pc.OnTrack(c.o.OnTrack)
		}
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if c.o.OnData != nil {
					c.o.OnData(m.Data)
				}
			})
		})
		c.recv = pc
	}
	pc := c.recv
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
	var answer webrtc.SessionDescription
	if err == nil {
		c.remoteDescribed(proto.TransportRecv)
		answer, err = pc.CreateAnswer(nil)
	}
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	c.pcMu.Unlock()
	if err != nil {
		return fmt.Errorf("receive transport: %w", err)
	}
	if err := c.Request(c.ctx, proto.MethodAnswer, proto.SDPData{SDP: answer.SDP}, nil); err != nil {
		return err
	}
	c.localDescribed(proto.TransportRecv)
	return nil
}

// Publish adds tracks to the send transport (creating it, with a data channel, on first use)
// and negotiates it. It returns the producers of the send transport.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) (proto.PublishResult, error) {
	var res proto.PublishResult
	c.pcMu.Lock()
	if c.send == nil {
		pc, err := c.api.NewPeerConnection(c.config())
		if err != nil {
			c.pcMu.Unlock()
			return res, err
		}
		pc.OnICECandidate(c.trickle(proto.TransportSend))
		dc, err := pc.CreateDataChannel("data", nil)
		if err != nil {
			c.pcMu.Unlock()
			_ = pc.Close()
			return res, err
		}
		c.send, c.sendDC = pc, dc
	}
	pc := c.send
	for _, t := range tracks {
		sender, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			c.pcMu.Unlock()
			return res, err
		}
		go c.readSenderRTCP(sender.Sender())
	}
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	c.pcMu.Unlock()
	if err != nil {
		return res, fmt.Errorf("send transport: %w", err)
	}
	if err := c.Request(ctx, proto.MethodPublish, proto.SDPData{SDP: offer.SDP}, &res); err != nil {
		return res, err
	}
	c.pcMu.Lock()
	err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP})
	if err == nil {
		c.remoteDescribed(proto.TransportSend)
	}
	c.pcMu.Unlock()
	if err != nil {
		return res, fmt.Errorf("send transport answer: %w", err)
	}
	c.localDescribed(proto.TransportSend)
	return res, nil
}

func (c *Client) readSenderRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if c.o.OnPublisherRTCP != nil {
			c.o.OnPublisherRTCP(pkts)
		}
	}
}

// SendData sends a message on the send transport's data channel (the data producer). Publish
// must have been called (with or without tracks) and the channel must be open.
func (c *Client) SendData(msg []byte) error {
	c.pcMu.Lock()
	dc := c.sendDC
	c.pcMu.Unlock()
	if dc == nil {
		return errors.New("no data channel: publish first")
	}
	return dc.Send(msg)
}

// DataOpen tells whether the data producer's channel is open.
func (c *Client) DataOpen() bool {
	c.pcMu.Lock()
	defer c.pcMu.Unlock()
	return c.sendDC != nil && c.sendDC.ReadyState() == webrtc.DataChannelStateOpen
}

// SendMessage sends an application (chat) message to the room over signaling.
func (c *Client) SendMessage(ctx context.Context, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return c.Request(ctx, proto.MethodMessage, proto.MessageData{Data: raw}, nil)
}

// Recv is the receive transport (nil before the first offer).
func (c *Client) Recv() *webrtc.PeerConnection {
	c.pcMu.Lock()
	defer c.pcMu.Unlock()
	return c.recv
}

// Send is the send transport (nil before Publish).
func (c *Client) Send() *webrtc.PeerConnection {
	c.pcMu.Lock()
	defer c.pcMu.Unlock()
	return c.send
}

// Close leaves the room and closes both transports and the connection. Err then reports
// ErrClosed, or why the node had ended the session before.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	_ = c.Request(ctx, proto.MethodLeave, struct{}{}, nil)
	cancel()
	c.shutdown()
	return nil
}

// Abort drops the connection without leaving, like a client that vanishes.
func (c *Client) Abort() { c.shutdown() }

func (c *Client) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	_ = c.conn.CloseNow()
	c.wg.Wait()
	c.pcMu.Lock()
	send, recv := c.send, c.recv
	c.pcMu.Unlock()
	for _, pc := range []*webrtc.PeerConnection{send, recv} {
		if pc != nil {
			_ = pc.Close()
		}
	}
}
