package node

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/node/rtxbudget"
	"github.com/cascade-sfu/cascade/node/udpbatch"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// jobQueue is the depth of a worker's packet queue; a full queue drops (never blocks the
// producer's read loop).
const jobQueue = 4096

// batchSize is how many datagrams one sendmmsg call carries.
const batchSize = 64

// job is one packet for the consumers of one producer on one worker.
type job struct {
	pipe *pipe
	pkt  *packet
}

// A Worker is a CPU shard of a node: it owns one media UDP socket (ICE over a UDP mux) and one
// fan-out goroutine that writes the packets of the producers piped to it to its consumers.
//
// The UDP socket is dual-stack when the node binds all addresses: IPv4 and IPv6 candidates
// share its port, and one fan-out's datagrams to both families leave in one sendmmsg. Its
// transports also accept ICE over TCP through the node's one ICE-TCP listener (shared by every
// worker, demultiplexed by ufrag), whose writes are buffered by pion and dropped when a
// connection's buffer is full, so a slow TCP subscriber never blocks the fan-out.
type Worker struct {
	index  int
	log    hclog.Logger
	conn   *udpbatch.Conn // one fan-out's datagrams leave in one sendmmsg
	mux    ice.UDPMux
	tcp    ice.TCPMux  // the node's ICE-TCP listener; nil when off
	pubAPI *webrtc.API // send transports: NACK generator and receiver reports for publishers
	subAPI *webrtc.API // receive transports: no interceptors, reports come from the worker

	jobs chan job
	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	consumers map[*Consumer]struct{} // for sender reports; touched on add/remove only
	ccs       ccSet                  // subscriber transports' estimators (bwe.go)

	// Load and counters, read by metrics and placement.
	nProducers atomic.Int64
	nConsumers atomic.Int64
	nRouters   atomic.Int64
	paths      [numPaths]atomic.Int64 // transports by the protocol and family of their selected pair
	packets    atomic.Uint64
	bytes      atomic.Uint64
	dropped    atomic.Uint64
	// junk counts datagrams on the media port that no transport took (see junkLogger).
	junk atomic.Uint64

	// Retransmissions on NACK (written by the consumers' feedback goroutines, not per packet).
	rtxPackets   atomic.Uint64
	rtxBytes     atomic.Uint64
	rtxKeyframes atomic.Uint64                        // keyframe requests instead of retransmissions
	heldPLIs     atomic.Uint64                        // subscribers' keyframe requests held while resends heal (keyframes.go)
	rtxRefused   [rtxbudget.NumVerdicts]atomic.Uint64 // NACKed packets not resent, by reason
}

// newWorker starts worker index; tcp is the node's ICE-TCP mux (nil: no ICE-TCP) and public the
// parsed Options.PublicIP.
func newWorker(index int, o Options, tcp ice.TCPMux, public []netip.Addr) (*Worker, error) {
	port := 0
	if o.UDPPort > 0 {
		port = o.UDPPort + index
	}
	addr := &net.UDPAddr{IP: net.ParseIP(o.UDPHost), Port: port}
	udp, err := o.ListenUDP(mediaNetwork("udp", o.UDPHost), addr)
	if err != nil {
		return nil, fmt.Errorf("worker %d: listen udp %s: %w", index, addr, err)
	}
	conn := udpbatch.New(udp, batchSize, o.LoopbackOnly)
	w := &Worker{
		index:     index,
		log:       o.Logger.Named("worker").With("worker", index),
		conn:      conn,
		jobs:      make(chan job, jobQueue),
		stop:      make(chan struct{}),
		consumers: make(map[*Consumer]struct{}),
		ccs:       newCCSet(),
		tcp:       tcp,
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	w.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: junkLogger{lf.NewLogger("udpmux"), &w.junk}, UDPConn: conn,
		OnUnhandledPacket: func([]byte, netip.AddrPort) { w.junk.Add(1) }})

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(w.mux)
	// One list of the host's interfaces per worker, not one per transport: without it every
	// ICE agent enumerates the interfaces (netlink) and keeps its own copy, about 20 KiB a
	// subscriber. The UDP mux already took its addresses once, at start.
	if hostNet, err := stdnet.NewNet(); err == nil {
		se.SetNet(hostNet)
	}
	// Both families: the mux and the listener offer only the addresses they are bound to.
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if tcp != nil {
		se.SetICETCPMux(tcp)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
		// Host pairs over TCP and UDP have one candidate type: without a wait, the controlling
		// side nominates whichever passed its check first, and a lost UDP check leaves a viewer
		// on TCP (more CPU, head-of-line blocking) for the whole session.
		se.SetHostAcceptanceMinWait(HostAcceptanceWait)
	}
	// The node only listens: it never dials a client's passive TCP candidate, which could name
	// any address of the network the node runs in.
	se.DisableActiveTCP(true)
	se.SetNetworkTypes(networks)
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if o.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if len(public) > 0 {
		ext := make([]string, len(public))
		for i, ip := range public {
			ext[i] = ip.String()
		}
		// The host candidates of both protocols carry the public address of their family.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: ext,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
			_ = w.mux.Close()
			return nil, fmt.Errorf("worker %d: public ip: %w", index, err)
		}
	}
	pubME, err := newMediaEngine(true)
	if err != nil {
		_ = w.mux.Close()
		return nil, err
	}
	pubReg := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		_ = w.mux.Close()
		return nil, err
	}
	pubReg.Add(gen)
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		_ = w.mux.Close()
		return nil, err
	}
	pubReg.Add(rr)
	// Transport-wide congestion control feedback to publishers, so browsers ramp their layers.
	fb, err := twcc.NewSenderInterceptor()
	if err != nil {
		_ = w.mux.Close()
		return nil, err
	}
	pubReg.Add(fb)
	// Publishers may send up to ReplayWindow packets out of order: retransmissions inside a
	// keyframe's burst arrive late, and pion's default window (64) would drop them.
	pubSE := se
	pubSE.SetSRTPReplayProtectionWindow(ReplayWindow)
	w.pubAPI = webrtc.NewAPI(webrtc.WithMediaEngine(pubME), webrtc.WithSettingEngine(pubSE), webrtc.WithInterceptorRegistry(pubReg))
	subME, err := newMediaEngine(false)
	if err != nil {
		_ = w.mux.Close()
		return nil, err
	}
	subReg := &interceptor.Registry{}
	if o.Naive {
		if err := webrtc.RegisterDefaultInterceptors(subME, subReg); err != nil {
			_ = w.mux.Close()
			return nil, err
		}
	}
	// Receive transports' data channels are detached: no 64 KiB read buffer each (datachan.go).
	subSE := se
	subSE.DetachDataChannels()
	w.subAPI = webrtc.NewAPI(webrtc.WithMediaEngine(subME), webrtc.WithSettingEngine(subSE), webrtc.WithInterceptorRegistry(subReg))

	w.wg.Add(1)
	go w.run()
	return w, nil
}

// mediaNetwork is the network of a media socket bound to host: proto ("udp" or "tcp") alone, a
// dual-stack socket, for all addresses ("" or "::"); proto4 or proto6 for an address of one
// family (0.0.0.0 too: all IPv4 addresses).
func mediaNetwork(proto, host string) string {
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil || ip == netip.IPv6Unspecified():
		return proto
	case ip.Unmap().Is4():
		return proto + "4"
	default:
		return proto + "6"
	}
}

// Path indexes: the protocol and address family of a transport's selected candidate pair.
const (
	pathUDP4 = iota
	pathUDP6
	pathTCP4
	pathTCP6
	numPaths
)

var pathLabels = [numPaths][2]string{{"udp", "ipv4"}, {"udp", "ipv6"}, {"tcp", "ipv4"}, {"tcp", "ipv6"}}

// pathOf is the path index of a selected candidate pair, from its local candidate.
func pathOf(p *webrtc.ICECandidatePair) int {
	i := pathUDP4
	if p.Local.Protocol == webrtc.ICEProtocolTCP {
		i = pathTCP4
	}
	if ip, err := netip.ParseAddr(p.Local.Address); err == nil && !ip.Unmap().Is4() {
		i++
	}
	return i
}

// Addr is the worker's media socket address.
func (w *Worker) Addr() net.Addr { return w.conn.LocalAddr() }

// load is what placement minimises: consumers dominate the cost of a worker.
func (w *Worker) load() int64 { return w.nConsumers.Load() + w.nProducers.Load() }

// post queues a packet for this worker's fan-out; it never blocks.
func (w *Worker) post(j job) bool {
	select {
	case w.jobs <- j:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

func (w *Worker) run() {
	defer w.wg.Done()
	reports := time.NewTicker(time.Second)
	defer reports.Stop()
	for {
		select {
		case <-w.stop:
			return
		case j := <-w.jobs:
			w.fanOut(j)
		case now := <-reports.C:
			w.sendReports(now)
		case f := <-w.ccs.feedback: // transport-cc (twcc.go)
			f.handle(&w.ccs)
		}
	}
}

// fanOut writes one packet to every consumer of its producer on this worker. This is the hot
// path: no allocation, no lock shared with other workers, no logging.
func (w *Worker) fanOut(j job) {
	cs := j.pipe.consumers.Load()
	if cs != nil {
		var n, b uint64
		now := time.Now() // once per packet, not per consumer
		w.conn.Begin()
		for _, c := range *cs {
			if c.forward(j.pkt, now) {
				n++
				b += uint64(j.pkt.size)
			}
		}
		w.conn.End()
		j.pipe.note(j.pkt) // after its consumers: a switch reads the old source's last
		w.packets.Add(n)
		w.bytes.Add(b)
	}
	j.pkt.release()
}

func (w *Worker) sendReports(now time.Time) {
	w.mu.Lock()
	cs := make([]*Consumer, 0, len(w.consumers))
	for c := range w.consumers {
		cs = append(cs, c)
	}
	w.mu.Unlock()
	for _, c := range cs {
		c.sendReport(now)
		c.refreshTarget() // the layers that flow change: a simulcast consumer's target follows
	}
}

func (w *Worker) addConsumer(c *Consumer) {
	w.mu.Lock()
	w.consumers[c] = struct{}{}
	w.mu.Unlock()
	w.nConsumers.Add(1)
}

func (w *Worker) removeConsumer(c *Consumer) {
	w.mu.Lock()
	_, ok := w.consumers[c]
	delete(w.consumers, c)
	w.mu.Unlock()
	if ok {
		w.nConsumers.Add(-1)
	}
}

func (w *Worker) close() {
	close(w.stop)
	w.wg.Wait()
	_ = w.mux.Close()
	_ = w.conn.Close()
}

// ReplayWindow is the SRTP replay window of client transports, in packets.
const ReplayWindow = 1024

// newMediaEngine registers the codecs Cascade forwards: Opus, VP8 and H264 (baseline and
// constrained baseline, packetization-mode 1), with transport-cc feedback. No RTX:
// retransmissions reuse the media SSRC. A publisher's engine (pub) also takes the header
// extensions simulcast needs (mid, rid, repaired rid) and the audio level (RFC 6464); a
// subscriber's negotiates transport-cc, which the worker stamps as it forwards, and mid, which
// it never sends: negotiated, it tells the receiver to map an SSRC its description lacks by
// mid, never by payload type. Without it, the late packets of a consumer removed by the last
// renegotiation made a pion receiver take the removed consumer's media section (found by
// payload type) and add a transceiver of its own outside the negotiation (latepackets_test.go).
func newMediaEngine(pub bool) (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBTransportCC}}
	audioFB := []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}
	codecs := []struct {
		kind webrtc.RTPCodecType
		p    webrtc.RTPCodecParameters
	}{
		{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecParameters{PayloadType: 111, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: audioFB}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: 96, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: 102, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: fb,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: 104, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: fb,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"}}},
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(c.p, c.kind); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", c.p.MimeType, err)
		}
	}
	type ext struct {
		uri   string
		kinds []webrtc.RTPCodecType
	}
	both := []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}
	video, audio := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}
	exts := []ext{{sdp.TransportCCURI, both}, {sdp.SDESMidURI, both}}
	if pub {
		exts = append(exts, ext{sdp.SDESRTPStreamIDURI, video},
			ext{sdp.SDESRepairRTPStreamIDURI, video}, ext{sdp.AudioLevelURI, audio})
	}
	for _, e := range exts {
		for _, k := range e.kinds {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
				return nil, fmt.Errorf("register header extension %s: %w", e.uri, err)
			}
		}
	}
	return me, nil
}

// sameCodec tells whether a negotiated codec can carry a producer's packets unchanged.
func sameCodec(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) || a.ClockRate != b.ClockRate {
		return false
	}
	if strings.EqualFold(a.MimeType, webrtc.MimeTypeH264) {
		return fmtpValue(a.SDPFmtpLine, "packetization-mode") == fmtpValue(b.SDPFmtpLine, "packetization-mode")
	}
	return true
}

func fmtpValue(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}
