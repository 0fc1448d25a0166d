package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

var testKeys = auth.Keys{Key: "testkey", Secret: "a-test-secret-of-32-characters!!"}

type env struct {
	t       *testing.T
	node    *node.Node
	cluster *cluster.Cluster // nil for a single node, as are the next three
	nats    *cluster.NATS
	pipes   *relay.Pipes
	view    *cluster.Viewer
	srv     *signal.Server
	http    *httptest.Server
	ws      string
	reg     *prometheus.Registry
}

// newEnv starts a node (embedded NATS, loopback media) and its HTTP server.
func newEnv(t *testing.T, workers, workerConsumers int) *env {
	t.Helper()
	return startNode(t, node.Options{Workers: workers, WorkerConsumers: workerConsumers}, nil)
}

// clusterOpts are a clustered test node's NATS, fan-out and heartbeat.
type clusterOpts struct {
	nats      cluster.NATSOptions
	fanout    int
	heartbeat time.Duration
}

// startClustered starts n nodes with start, each given options for an embedded NATS server
// routed to the first node's (the seed) and relay fan-out fanout, and waits until every node
// sees every other.
func startClustered(t *testing.T, n, fanout int, start func(i int, co *clusterOpts) *env) []*env {
	t.Helper()
	var envs []*env
	var seed string
	for i := 0; i < n; i++ {
		co := &clusterOpts{nats: cluster.NATSOptions{Listen: "127.0.0.1:-1", Cluster: "127.0.0.1:0", Secrets: cluster.Secrets{cluster.DevClusterSecret}}, fanout: fanout}
		if seed != "" {
			co.nats.Routes = []string{seed}
		}
		e := start(i, co)
		if seed == "" {
			seed = e.nats.RouteURL()
		}
		envs = append(envs, e)
	}
	checkFor(t, 15*time.Second, func() error {
		for _, e := range envs {
			if got := len(e.cluster.Peers()); got != n-1 {
				return fmt.Errorf("%s sees %d peers, want %d", e.node.ID(), got, n-1)
			}
		}
		return nil
	})
	return envs
}

// startNode starts a node with o (plus loopback media, test logs and metrics); with co it
// starts NATS and the relay and joins the cluster, wired as cmd/cascade wires them.
func startNode(t *testing.T, o node.Options, co *clusterOpts, with ...func(*signal.Options)) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	o.LoopbackOnly, o.Logger, o.Registerer = true, log, reg
	hs := httptest.NewUnstartedServer(nil)
	o.HTTPURL = "http://" + hs.Listener.Addr().String()
	n, err := node.New(o)
	if err != nil {
		hs.Close()
		t.Fatal(err)
	}
	e := &env{t: t, node: n, reg: reg}
	so := signal.Options{Keys: testKeys, Logger: log, Gatherer: reg}
	if co != nil {
		no := co.nats
		no.Name, no.Logger = n.ID(), log
		if no.URL == "" {
			if no.Listen == "" {
				no.Listen = "127.0.0.1:-1"
			}
			no.StoreDir = t.TempDir()
		}
		if e.nats, err = cluster.StartNATS(no); err != nil {
			n.Close()
			t.Fatal(err)
		}
		if e.pipes, err = relay.Open(relay.Options{Self: n.ID(), Region: o.Region, Fanout: co.fanout, Producers: n, Logger: log}); err != nil {
			e.nats.Close()
			n.Close()
			t.Fatal(err)
		}
		if e.cluster, err = cluster.New(n, e.pipes, e.nats.Bus(), cluster.Options{Heartbeat: co.heartbeat, Logger: log, Secrets: cluster.Secrets{cluster.DevClusterSecret}}); err != nil {
			e.pipes.Close()
			e.nats.Close()
			n.Close()
			t.Fatal(err)
		}
		e.nats.OnTrouble(e.cluster.Resync)
		placer := cluster.NewPlacer(e.cluster)
		reg.MustRegister(cluster.NewCollector(e.cluster, placer))
		e.view = cluster.NewViewer(cluster.NewAPI(e.cluster))
		so.Cluster, so.Placement, so.Ready = e.view, placer, e.nats.Ready
	}
	for _, f := range with {
		f(&so)
	}
	e.srv = signal.NewServer(n, so)
	hs.Config.Handler = e.srv.Handler()
	hs.Start()
	e.http, e.ws = hs, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws"
	t.Cleanup(func() {
		e.srv.Close()
		hs.Close()
		e.leave()
		n.Close()
		if e.nats != nil {
			e.nats.Close()
		}
	})
	return e
}

// leave takes the node out of the cluster without a goodbye: heartbeats, subscriptions and
// relays stop. Its NATS server stays up (it may be the seed of the others' routes).
func (e *env) leave() {
	if e.cluster != nil {
		e.cluster.Close()
		e.pipes.Close()
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (e *env) token(room, identity string, publish, subscribe bool) string {
	e.t.Helper()
	tok, err := testKeys.Mint(auth.Grant{Room: room, Identity: identity, Publish: publish, Subscribe: subscribe}, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// adminToken mints a token with the admin grant of testKeys.
func adminToken(t *testing.T) string {
	t.Helper()
	tok, err := testKeys.Mint(auth.Grant{Admin: true}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// peer is a Go client with counters of what it received.
type peer struct {
	*client.Client
	mu      sync.Mutex
	packets map[string]*atomic.Int64 // by producer (track) id
	ssrc    map[string]uint32        // consumer SSRC by producer id
	lastSeq map[string]uint16
	plis    atomic.Int64 // keyframe requests received as a publisher
	srs     atomic.Int64 // sender reports received as a subscriber
	notes   []note
	data    [][]byte
}

type note struct {
	method string
	data   json.RawMessage
}

func (e *env) join(room, identity string, publish, subscribe bool) *peer {
	e.t.Helper()
	p, err := e.dial(room, identity, publish, subscribe, false)
	if err != nil {
		e.t.Fatalf("join %s: %v", identity, err)
	}
	return p
}

func (e *env) dial(room, identity string, publish, subscribe, noAuto bool) (*peer, error) {
	return e.dialWith(room, identity, publish, subscribe, func(o *client.Options) { o.NoAutoSubscribe = noAuto })
}

// dialWith is dial with options of the caller's on top of the peer's own.
func (e *env) dialWith(room, identity string, publish, subscribe bool, with func(*client.Options)) (*peer, error) {
	p := &peer{packets: make(map[string]*atomic.Int64), ssrc: make(map[string]uint32), lastSeq: make(map[string]uint16)}
	o := client.Options{
		Token: e.token(room, identity, publish, subscribe), LoopbackOnly: true,
		OnTrack: func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
			go func() {
				for {
					pkts, _, err := rcv.ReadRTCP()
					if err != nil {
						return
					}
					for _, x := range pkts {
						if _, ok := x.(*rtcp.SenderReport); ok {
							p.srs.Add(1)
						}
					}
				}
			}()
			ctr := p.counter(tr.ID())
			p.mu.Lock()
			p.ssrc[tr.ID()] = uint32(tr.SSRC())
			p.mu.Unlock()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				p.mu.Lock()
				p.lastSeq[tr.ID()] = pkt.SequenceNumber
				p.mu.Unlock()
				ctr.Add(1)
			}
		},
		OnPublisherRTCP: func(pkts []rtcp.Packet) {
			for _, x := range pkts {
				if _, ok := x.(*rtcp.PictureLossIndication); ok {
					p.plis.Add(1)
				}
			}
		},
		OnNotification: func(m string, d json.RawMessage) {
			p.mu.Lock()
			p.notes = append(p.notes, note{m, d})
			p.mu.Unlock()
		},
		OnData: func(b []byte) {
			p.mu.Lock()
			p.data = append(p.data, append([]byte(nil), b...))
			p.mu.Unlock()
		},
	}
	with(&o)
	c, err := client.Dial(context.Background(), e.ws, o)
	if err != nil {
		return nil, err
	}
	p.Client = c
	e.t.Cleanup(func() { _ = c.Close() })
	return p, nil
}

func (p *peer) counter(id string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.packets[id]
	if c == nil {
		c = new(atomic.Int64)
		p.packets[id] = c
	}
	return c
}

func (p *peer) received(id string) int64 { return p.counter(id).Load() }

func (p *peer) hasNote(method, contains string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.notes {
		if n.method == method && strings.Contains(string(n.data), contains) {
			return true
		}
	}
	return false
}

// source is a synthetic media track: RTP packets at a fixed rate until the test ends.
type source struct {
	track *webrtc.TrackLocalStaticRTP
}

func newSource(t *testing.T, mime, id, stream string) *source {
	t.Helper()
	kind := "video"
	if strings.HasPrefix(mime, "audio") {
		kind = "audio"
	}
	cap := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
	if kind == "audio" {
		cap = webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 48000, Channels: 2}
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(cap, id, stream)
	if err != nil {
		t.Fatal(err)
	}
	s := &source{track: tr}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 400)
		payload[0] = 0x10 // VP8 descriptor: start of partition
		payload[1] = 0x00 // keyframe bit clear: P bit 0 means keyframe
		var seq uint16
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			seq++
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: i * 3000, Marker: true}, Payload: payload})
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return s
}

// checkFor polls f until it returns nil or the timeout passes.
func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	harness.Eventually(t, timeout, f)
}

// publishVideo joins a publisher with a synthetic VP8 track and returns it and its producers.
func publishVideo(t *testing.T, e *env, room, identity string, subscribe bool) (*peer, proto.PublishResult) {
	t.Helper()
	pub := e.join(room, identity, true, subscribe)
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	return pub, res
}

// sendPLIs makes each subscriber send rounds keyframe requests for producer id.
func sendPLIs(t *testing.T, subs []*peer, id string, rounds int) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		for _, s := range subs {
			s.mu.Lock()
			ssrc := s.ssrc[id]
			s.mu.Unlock()
			if err := s.Recv().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
