package relay

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// slowParent is a Signaler whose parent "O" (region eu) carries every producer and answers a
// pipe request after delay, as across a region boundary. It records how many requests were
// under way at once, in all and per producer.
type slowParent struct {
	delay time.Duration
	ssrc  atomic.Uint32

	mu         sync.Mutex
	inflight   int
	most       int
	byProducer map[string]int
	overlaps   int
}

func (s *slowParent) RequestPipe(ctx context.Context, parent string, req PipeRequest) (PipeReply, error) {
	s.mu.Lock()
	s.inflight++
	s.most = max(s.most, s.inflight)
	if s.byProducer[req.Producer]++; s.byProducer[req.Producer] > 1 {
		s.overlaps++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.byProducer[req.Producer]--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return PipeReply{}, ctx.Err()
	}
	return PipeReply{OK: true, RelayAddr: "127.0.0.1:9", Key: make([]byte, KeyLen), SSRC: s.ssrc.Add(1)}, nil
}

func (*slowParent) Unpipe(string, PipeRequest)   {}
func (*slowParent) Dropped(string, PipeRequest)  {}
func (*slowParent) Layers(string, PipeRequest)   {}
func (*slowParent) Piped(string, string, string) {}

// farOrigin is the membership: one other node, "O", in region eu.
type farOrigin struct{}

func (farOrigin) Peer(id string) (Peer, bool) {
	return Peer{ID: "O", Region: "eu", RelayAddr: "127.0.0.1:9"}, id == "O"
}
func (farOrigin) Regions() map[string]string { return map[string]string{"O": "eu"} }
func (farOrigin) Draining() []string         { return nil }

type discard struct{}

func (discard) WriteRTP(*rtp.Header, []byte) (int, error) { return 0, nil }
func (discard) Write(b []byte) (int, error)               { return len(b), nil }

// TestSetupsOverlap: a node wanting 40 producers of 40 rooms from a parent that answers each
// pipe request 100 ms later has relay.MaxSetups requests under way at once, never more, and
// never two for one producer; every producer is piped. (The manager once served one producer at
// a time: one request under way.)
func TestSetupsOverlap(t *testing.T) {
	const rooms = 40
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ps, err := Open(Options{Self: "C", Region: "ap", Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ps.Close)
	sig := &slowParent{delay: 100 * time.Millisecond, byProducer: map[string]int{}}
	ps.Start(sig, farOrigin{})
	var prods []*node.Producer
	for i := range rooms {
		p, err := n.Join(fmt.Sprintf("room-%d", i), "viewer", node.Grant{Subscribe: true}, false, quietListener{})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := p.Room().AddRemoteProducer(node.ProducerInfo{ID: fmt.Sprintf("PR%d", i), Mid: "0", Participant: "far", Kind: "audio",
			Codec: webrtc.MimeTypeOpus, ClockRate: 48000}, "O")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pr.Attach(discard{}, uint32(1000+i)); err != nil { // a consumer here: wanted
			t.Fatal(err)
		}
		prods = append(prods, pr)
	}
	for _, pr := range prods {
		ps.Demand(pr)
	}
	eventually(t, func() error {
		if in, _ := ps.Counts(); in != rooms {
			return fmt.Errorf("%d of %d producers piped", in, rooms)
		}
		return nil
	})
	sig.mu.Lock()
	defer sig.mu.Unlock()
	if sig.most < 2 || sig.most != MaxSetups || sig.overlaps != 0 {
		t.Fatalf("at most %d requests under way (want MaxSetups, %d), %d for a producer already asked for", sig.most, MaxSetups, sig.overlaps)
	}
}
