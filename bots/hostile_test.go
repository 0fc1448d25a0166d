package bots_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/coder/websocket"
)

// hostileNode is a node process on loopback and what the test sprays at.
type hostileNode struct {
	base  string // http://127.0.0.1:port
	relay string // its relay UDP address
	media []string
	tcp   string // ICE-TCP
	out   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHostileCluster starts two node processes on loopback, one cluster (embedded NATS
// servers routed to each other, one cluster secret).
func startHostileCluster(t *testing.T) []*hostileNode {
	bin := harness.Cascade(t)
	var sb [32]byte
	_, _ = rand.Read(sb[:])
	secret := hex.EncodeToString(sb[:])
	ports := make([][4]int, 2) // http, relay, nats, route
	for i := range ports {
		for j := range ports[i] {
			ports[i][j] = harness.FreePort(t)
		}
	}
	nodes := make([]*hostileNode, 2)
	for i := range nodes {
		route := fmt.Sprintf("nats-route://127.0.0.1:%d", ports[1-i][3])
		nd := &hostileNode{base: fmt.Sprintf("http://127.0.0.1:%d", ports[i][0]), relay: fmt.Sprintf("127.0.0.1:%d", ports[i][1]), out: &syncBuffer{}}
		cmd := exec.Command(bin, "node", "--loopback-only", "--node-id", fmt.Sprintf("h%d", i), "--http", strings.TrimPrefix(nd.base, "http://"),
			"--udp-port", "0", "--tcp-port", "0", "--relay", nd.relay, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[i][2]),
			"--nats-cluster", fmt.Sprintf("127.0.0.1:%d", ports[i][3]), "--nats-routes", route, "--cluster-secret", secret,
			"--workers", "1", "--api-key", keys.Key, "--api-secret", keys.Secret, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = nd.out, nd.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("node h%d output:\n%s", i, nd.out)
			}
		})
		nodes[i] = nd
	}
	harness.Eventually(t, 30*time.Second, func() error {
		for _, nd := range nodes {
			m, err := bots.ScrapeMetrics(nd.base)
			if err != nil {
				return err
			}
			if m["cascade_cluster_nodes"] < 2 {
				return fmt.Errorf("%s sees %v nodes", nd.base, m["cascade_cluster_nodes"])
			}
		}
		return nil
	})
	for _, nd := range nodes {
		var s struct {
			Workers []struct {
				UDP string `json:"udp"`
			} `json:"workers"`
			ICETCP string `json:"ice_tcp"`
		}
		tok, err := keys.Mint(auth.Grant{Admin: true}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, nd.base+"/stats", nil)
		req.Header.Set("Authorization", "Bearer "+tok) // /stats is an admin endpoint
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || len(s.Workers) == 0 || s.ICETCP == "" {
			t.Fatalf("%s/stats: %v %+v", nd.base, err, s)
		}
		for _, w := range s.Workers {
			nd.media = append(nd.media, w.UDP)
		}
		nd.tcp = s.ICETCP
	}
	return nodes
}

// junk makes one hostile datagram of kind k: random bytes, truncated RTP, truncated RTCP,
// STUN-looking (a binding request for an unknown ufrag, or a broken one), DTLS-looking.
func junk(r *mrand.Rand, k int) []byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	switch k % 6 {
	case 0:
		return rnd(1 + r.IntN(1400))
	case 1: // RTP, cut inside the header or just after it
		b := append([]byte{0x80, 96}, rnd(10+r.IntN(20))...)
		return b[:1+r.IntN(len(b))]
	case 2: // RTCP receiver report or NACK, truncated
		b := append([]byte{0x81, 201 + byte(r.IntN(5)), 0, 7}, rnd(28)...)
		return b[:1+r.IntN(len(b))]
	case 3: // STUN binding request with a USERNAME of a ufrag nobody has
		user := []byte("junkufrag:peer")
		b := make([]byte, 20, 64)
		binary.BigEndian.PutUint16(b[0:], 0x0001)
		binary.BigEndian.PutUint32(b[4:], 0x2112A442)
		copy(b[8:], rnd(12))
		b = binary.BigEndian.AppendUint16(b, 0x0006)
		b = binary.BigEndian.AppendUint16(b, uint16(len(user)))
		b = append(b, user...)
		b = append(b, 0, 0) // pad to 4
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
		return b
	case 4: // STUN-looking: the magic cookie, a length that lies
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], 0x0001)
		binary.BigEndian.PutUint16(b[2:], uint16(4*r.IntN(100)))
		binary.BigEndian.PutUint32(b[4:], 0x2112A442)
		return append(b, rnd(r.IntN(16))...)
	default: // DTLS-looking: a handshake record header and a truncated ClientHello
		b := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 1, 0, 0, 0xf0}
		return append(b, rnd(r.IntN(64))...)[:5+r.IntN(12+1)]
	}
}

// sprayUDP sends junk to addr from fresh sockets (unknown addresses) until stop; it counts
// what it sent.
func sprayUDP(t *testing.T, addr string, stop <-chan struct{}, sent *atomic.Int64, seed uint64) {
	r := mrand.New(mrand.NewPCG(seed, seed))
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Error(err)
		return
	}
	for i := 0; ; i++ {
		c, err := net.DialUDP("udp4", nil, ua)
		if err != nil {
			t.Error(err)
			return
		}
		for j := 0; j < 50; j++ {
			select {
			case <-stop:
				c.Close()
				return
			default:
			}
			if _, err := c.Write(junk(r, i+j)); err == nil {
				sent.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
	}
}

// sprayTCP opens connections to the ICE-TCP port and writes junk into them: random bytes,
// RFC 4571 frames holding junk, a frame length that lies.
func sprayTCP(addr string, stop <-chan struct{}, conns *atomic.Int64, seed uint64) {
	r := mrand.New(mrand.NewPCG(seed, seed))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conns.Add(1)
		p := junk(r, i)
		switch i % 3 {
		case 0:
			_, _ = c.Write(p)
		case 1:
			_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...))
		case 2:
			_, _ = c.Write(append([]byte{0xff, 0xff}, p...))
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = c.Read(make([]byte, 64))
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// sprayWS attacks /ws until stop: HTTP garbage on a raw connection; WebSocket connections
// sending JSON that is not a request, binary frames, invalid UTF-8, an oversized frame; and a
// hand-made upgrade followed by frames no client may send (unmasked, a reserved opcode, a
// length that lies). It counts the connections the node closed (it must close them all).
func sprayWS(t *testing.T, base string, stop <-chan struct{}, attacks, closed *atomic.Int64) {
	host := strings.TrimPrefix(base, "http://")
	ws := "ws://" + host + "/ws"
	var mu sync.Mutex
	kept := map[string]int{}
	keep := func(what string) { mu.Lock(); kept[what]++; mu.Unlock() }
	var slowWG sync.WaitGroup
	defer func() {
		slowWG.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(kept) > 0 {
			t.Logf("%s: connections the node kept: %v", host, kept)
		}
	}()
	raw := func(payload []byte, slow bool) {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		if slow {
			_, _ = c.Write(payload)
			<-stop
			_ = c.SetReadDeadline(time.Now())
			if n, _ := c.Read(make([]byte, 4096)); n == 0 {
				keep(fmt.Sprintf("slow %q (held open until the attack ended)", payload[len(payload)-min(len(payload), 16):]))
			}
			return
		}
		attacks.Add(1)
		_, _ = c.Write(payload)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var got []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if !isTimeout(err) || refused(got) {
					closed.Add(1) // the node hung up, or refused
				} else {
					keep(fmt.Sprintf("raw %q -> %q", payload[len(payload)-min(len(payload), 16):], got))
				}
				return
			}
			if refused(got) {
				closed.Add(1)
				return
			}
		}
	}
	upgrade := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// The last two are slow attacks: a request that never ends (no newline) and a frame header
	// whose payload never comes. A node can only end them with a timeout (an HTTP read header
	// timeout, the WebSocket join deadline), so the test does not wait for that; it sends them
	// to check that what they hold open does not hurt the node, and logs what stayed open.
	bad := [][]byte{
		[]byte("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage"),
		[]byte(upgrade + "\x81\x05hello"),                                            // unmasked client frame
		[]byte(upgrade + "\x83\x80\x00\x00\x00\x00"),                                 // reserved opcode 3
		[]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),                       // slow: TLS on a plain port
		[]byte(upgrade + "\x81\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00"), // slow: a 2^63-byte frame
	}
	const slow = 2 // the last ones of bad
	frames := []struct {
		typ websocket.MessageType
		b   []byte
	}{
		{websocket.MessageText, []byte(`{"id":1,"method":"join","data":{"token":"` + strings.Repeat("A", 5000) + `"}}`)},
		{websocket.MessageText, []byte(`{"id":1,"method":`)},
		{websocket.MessageText, []byte("\xff\xfe not utf-8")},
		{websocket.MessageBinary, []byte{0, 1, 2, 3}},
		{websocket.MessageText, make([]byte, 1<<20)}, // over the frame limit
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if i%2 == 0 {
			k := (i / 2) % len(bad)
			if k >= len(bad)-slow {
				slowWG.Add(1)
				go func() { defer slowWG.Done(); raw(bad[k], true) }() // held open: only its own goroutine waits
			} else {
				raw(bad[k], false)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err != nil {
			cancel()
			continue
		}
		attacks.Add(1)
		f := frames[(i/2)%len(frames)]
		_ = c.Write(ctx, f.typ, f.b)
		// A node answers a bad request with an error and keeps the session (the join
		// deadline ends it later), or closes it: read until one or the other.
		_, b, err := c.Read(ctx)
		if err != nil || strings.Contains(string(b), `"ok":false`) {
			closed.Add(1)
		} else {
			keep(fmt.Sprintf("frame %q -> %q", f.b[:min(len(f.b), 16)], b))
		}
		_ = c.CloseNow()
		cancel()
	}
}

// refused tells whether a node's reply to a raw connection refuses it: an HTTP client error,
// or, after the upgrade, a WebSocket close frame.
func refused(got []byte) bool {
	s := string(got)
	if strings.HasPrefix(s, "HTTP/1.1 4") || strings.HasPrefix(s, "HTTP/1.0 4") {
		return true
	}
	if _, rest, ok := strings.Cut(s, "\r\n\r\n"); ok && strings.HasPrefix(s, "HTTP/1.1 101") {
		return len(rest) > 0 && rest[0] == 0x88
	}
	return false
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestHostileInput: while bots publish (on h0) and subscribe (on h0 and, relayed, on h1),
// junk is sprayed at both nodes' media UDP ports, ICE-TCP ports and relay ports, and
// malformed HTTP, WebSocket frames and JSON at /ws. The nodes stay healthy and ready, every
// bot joins, receives every track and never stalls, and the nodes' counters saw the junk.
func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two node processes and bots for about 20 s")
	}
	nodes := startHostileCluster(t)
	before := make([]map[string]float64, len(nodes))
	for i, nd := range nodes {
		var err error
		if before[i], err = bots.ScrapeMetrics(nd.base); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		rep *bots.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := bots.Run(context.Background(), bots.Options{URLs: []string{nodes[0].base, nodes[1].base}, PublishURL: nodes[0].base,
			Room: "hostile", Publishers: 1, Subscribers: 6, Duration: 12 * time.Second, Rate: 20, Video: true, Audio: true, Keys: keys,
			LoopbackOnly: true, NoRedirect: true, JoinTimeout: 15 * time.Second, MaxStall: 2 * time.Second})
		done <- result{rep, err}
	}()
	time.Sleep(2 * time.Second) // the bots join, then the attack starts

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mediaSent, relaySent, tcpConns, wsAttacks, wsClosed atomic.Int64
	var perNodeMedia [2]atomic.Int64
	for i, nd := range nodes {
		for j, addr := range nd.media {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n atomic.Int64
				sprayUDP(t, addr, stop, &n, uint64(10*i+j))
				mediaSent.Add(n.Load())
				perNodeMedia[i].Add(n.Load())
			}()
		}
		wg.Add(3)
		go func() { defer wg.Done(); sprayUDP(t, nd.relay, stop, &relaySent, uint64(100+i)) }()
		go func() { defer wg.Done(); sprayTCP(nd.tcp, stop, &tcpConns, uint64(200+i)) }()
		go func() { defer wg.Done(); sprayWS(t, nd.base, stop, &wsAttacks, &wsClosed) }()
	}
	// Health during the attack.
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			for _, path := range []string{"/healthz", "/readyz"} {
				c := http.Client{Timeout: 2 * time.Second}
				resp, err := c.Get(nd.base + path)
				if err != nil {
					t.Errorf("%s%s under attack: %v", nd.base, path, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s%s under attack: HTTP %d", nd.base, path, resp.StatusCode)
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rep := res.rep
	t.Logf("sprayed %d datagrams at media ports, %d at relay ports, %d ICE-TCP connections, %d /ws attacks (%d refused or closed); bots: %d joined, %d stalls, longest %.0f ms",
		mediaSent.Load(), relaySent.Load(), tcpConns.Load(), wsAttacks.Load(), wsClosed.Load(), rep.Joined, rep.Stalls, rep.LongestStallMs)
	if !rep.OK() || rep.Stalls > 0 {
		t.Errorf("the bots suffered: %s; stalls %d (longest %.0f ms); errors %v", strings.Join(rep.Problems(), "; "), rep.Stalls, rep.LongestStallMs, rep.Errors)
	}
	if wsAttacks.Load() == 0 || wsClosed.Load() != wsAttacks.Load() {
		t.Errorf("/ws: %d of %d malformed connections were refused or closed", wsClosed.Load(), wsAttacks.Load())
	}
	// The counters saw the junk: every datagram came from an address no transport or link has.
	var relayDropped, tcpRefused float64
	for i, nd := range nodes {
		after, err := bots.ScrapeMetrics(nd.base)
		if err != nil {
			t.Fatal(err)
		}
		media := after["cascade_media_junk_total"] - before[i]["cascade_media_junk_total"]
		t.Logf("%s: media junk counted %.0f of %d sent; relay drops %.0f; ICE-TCP refused %.0f", nd.base, media, perNodeMedia[i].Load(),
			after["cascade_relay_dropped_total"]-before[i]["cascade_relay_dropped_total"], after["cascade_ice_tcp_refused_total"]-before[i]["cascade_ice_tcp_refused_total"])
		if sent := float64(perNodeMedia[i].Load()); sent == 0 || media < sent/2 {
			t.Errorf("%s: cascade_media_junk_total rose by %.0f, but %.0f junk datagrams were sent to its media ports", nd.base, media, sent)
		}
		relayDropped += after["cascade_relay_dropped_total"] - before[i]["cascade_relay_dropped_total"]
		tcpRefused += after["cascade_ice_tcp_refused_total"] - before[i]["cascade_ice_tcp_refused_total"]
	}
	if sent := float64(relaySent.Load()); sent == 0 || relayDropped < sent/2 {
		t.Errorf("cascade_relay_dropped_total rose by %.0f, but %.0f junk datagrams were sent to the relay ports", relayDropped, sent)
	}
	if conns := float64(tcpConns.Load()); conns == 0 || tcpRefused < conns/2 {
		t.Errorf("cascade_ice_tcp_refused_total rose by %.0f, but %.0f junk connections were made to the ICE-TCP ports", tcpRefused, conns)
	}
}
