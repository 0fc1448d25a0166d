package node_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// shaper is a small rate-limiting UDP proxy on loopback between a node and one client, for the
// direction node -> client: a FIFO drained at a rate, holding at most maxQueue of backlog (drop
// tail, like tbf with its latency), so the client's path has real queueing delay. The client
// talks to the shaper's address instead of the node's (the node's candidate is rewritten); the
// node sees the shaper's second socket as the client.
type shaper struct {
	client, up  *net.UDPConn
	node        *net.UDPAddr
	peer        atomic.Pointer[net.UDPAddr] // the client's address, once it sent something
	rate        atomic.Int64                // bits/s; 0: no limit
	maxQueue    time.Duration
	queue       chan shaped
	dropped     atomic.Int64 // datagrams
	passed      atomic.Int64
	media       [2]atomic.Int64 // RTP packets with media (not padding only): passed, dropped
	wg, readers sync.WaitGroup
}

type shaped struct {
	b  []byte
	at time.Time
}

func newShaper(t *testing.T, node *net.UDPAddr) *shaper {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	client, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	s := &shaper{client: client, up: up, node: node, maxQueue: 50 * time.Millisecond, queue: make(chan shaped, 8192)}
	s.readers.Add(2)
	s.wg.Add(1)
	go s.fromClient()
	go s.fromNode()
	go s.toClient()
	t.Cleanup(func() {
		_ = client.Close()
		_ = up.Close()
		s.readers.Wait()
		close(s.queue) // the readers are done with it
		s.wg.Wait()
	})
	return s
}

// port is the port the client sends to.
func (s *shaper) port() int { return s.client.LocalAddr().(*net.UDPAddr).Port }

func (s *shaper) fromClient() {
	defer s.readers.Done()
	buf := make([]byte, 1600)
	for {
		n, from, err := s.client.ReadFromUDP(buf)
		if err != nil {
			return
		}
		s.peer.Store(from)
		_, _ = s.up.WriteToUDP(buf[:n], s.node)
	}
}

// fromNode queues what the node sends, each datagram leaving when the rate allows.
func (s *shaper) fromNode() {
	defer s.readers.Done()
	var free time.Time // when the queue drains
	for {
		buf := make([]byte, 1600)
		n, _, err := s.up.ReadFromUDP(buf)
		if err != nil {
			return
		}
		now := time.Now()
		at := now
		if r := s.rate.Load(); r > 0 {
			start := free
			if start.Before(now) {
				start = now
			}
			if start.Sub(now) > s.maxQueue {
				s.dropped.Add(1)
				if isMedia(buf[:n]) {
					s.media[1].Add(1)
				}
				continue
			}
			free = start.Add(time.Duration(float64((n+28)*8) / float64(r) * float64(time.Second)))
			at = free
		}
		select {
		case s.queue <- shaped{buf[:n], at}:
		default:
			s.dropped.Add(1)
		}
	}
}

func (s *shaper) toClient() {
	defer s.wg.Done()
	for d := range s.queue {
		if w := time.Until(d.at); w > 0 {
			time.Sleep(w)
		}
		if p := s.peer.Load(); p != nil {
			_, _ = s.client.WriteToUDP(d.b, p)
			s.passed.Add(1)
			if isMedia(d.b) {
				s.media[0].Add(1)
			}
		}
	}
}

// isMedia tells an SRTP packet that is not padding only (its header is in the clear: version
// 2, not an RTCP packet type, the padding bit clear).
func isMedia(b []byte) bool {
	return len(b) > 12 && b[0]>>6 == 2 && (b[1] < 200 || b[1] > 207) && b[0]&0x20 == 0
}

// mediaLoss is the share of media packets dropped since the counts were m0.
func (s *shaper) mediaLoss(m0 [2]int64) float64 {
	passed, dropped := s.media[0].Load()-m0[0], s.media[1].Load()-m0[1]
	if passed+dropped == 0 {
		return 0
	}
	return float64(dropped) / float64(passed+dropped)
}

func (s *shaper) mediaCounts() [2]int64 { return [2]int64{s.media[0].Load(), s.media[1].Load()} }

var (
	candidateLine = regexp.MustCompile(`(?m)^a=(candidate:.*|end-of-candidates)\r?\n`)
	udpCandidate  = regexp.MustCompile(`(?m)^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) 127\.0\.0\.1 (\d+) (.*)$`)
)

// withoutCandidates strips a client's candidates from its offer: the node learns the client
// only through the shaper (as a peer-reflexive candidate).
func withoutCandidates(sdp string) string { return candidateLine.ReplaceAllString(sdp, "") }

// throughShaper rewrites the node's answer: its UDP candidate points at the shaper, its other
// candidates go.
func throughShaper(t *testing.T, sdp string, s *shaper) string {
	t.Helper()
	var out []string
	found := false
	for _, line := range strings.SplitAfter(sdp, "\n") {
		l := strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, line)
			continue
		}
		m := udpCandidate.FindStringSubmatch(l)
		if m == nil || found {
			continue
		}
		found = true
		out = append(out, "a=candidate:"+m[1]+" "+m[2]+" "+m[3]+" "+m[4]+" 127.0.0.1 "+strconv.Itoa(s.port())+" "+m[6]+"\r\n")
	}
	if !found {
		t.Fatalf("no loopback UDP candidate in the node's answer:\n%s", sdp)
	}
	return strings.Join(out, "")
}
