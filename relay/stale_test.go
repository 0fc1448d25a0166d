package relay

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/webrtc/v4"
)

// staleRegion is a Signaler for node C of region ap: A, of ap too and in the room, is in C's
// tree view as a carrier but answers "not carried" (it lost its parent in a partition); O, of
// eu, carries. It notes when each was asked.
type staleRegion struct {
	mu    sync.Mutex
	asked map[string][]time.Time
}

func (s *staleRegion) RequestPipe(_ context.Context, parent string, _ PipeRequest) (PipeReply, error) {
	s.mu.Lock()
	s.asked[parent] = append(s.asked[parent], time.Now())
	s.mu.Unlock()
	if parent != "O" {
		return PipeReply{Error: ErrNotCarried.Error()}, nil
	}
	return PipeReply{OK: true, RelayAddr: "127.0.0.1:9", Key: make([]byte, KeyLen), SSRC: 7}, nil
}

func (*staleRegion) Unpipe(string, PipeRequest)   {}
func (*staleRegion) Dropped(string, PipeRequest)  {}
func (*staleRegion) Layers(string, PipeRequest)   {}
func (*staleRegion) Piped(string, string, string) {}
func (*staleRegion) RoomNodes(string) []string    { return []string{"A", "O"} }

type apAndEU struct{}

func (apAndEU) Peer(id string) (Peer, bool) {
	r := map[string]string{"A": "ap", "O": "eu"}[id]
	return Peer{ID: id, Region: r, RelayAddr: "127.0.0.1:9"}, r != ""
}
func (apAndEU) Regions() map[string]string { return map[string]string{"A": "ap", "O": "eu"} }
func (apAndEU) Draining() []string         { return nil }

// TestStaleCarrierNoCrossing: a node whose view of the tree shows a carrier of its region that
// no longer carries the producer (a healed partition) asks it, is refused, forgets that edge,
// and does not walk on across the region boundary in the same try: it waits for its region's
// hub (A, of more weight) for HubWait before it asks the other region's carrier. Before, it
// asked O at once, as every node of a healed region did: one crossing each.
func TestStaleCarrierNoCrossing(t *testing.T) {
	id := ""
	for i := 0; id == ""; i++ { // a producer whose hub in ap is A, not C
		if c := fmt.Sprintf("PR%d", i); weight(c, "A") > weight(c, "C") {
			id = c
		}
	}
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
	p, err := n.Join("room", "viewer", node.Grant{Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.Room().AddRemoteProducer(node.ProducerInfo{ID: id, Mid: "0", Participant: "far", Kind: "audio",
		Codec: webrtc.MimeTypeOpus, ClockRate: 48000}, "O")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Attach(discard{}, 1000); err != nil {
		t.Fatal(err)
	}
	ps.Trees().Piped("room", id, "A", "O") // the stale edge
	sig := &staleRegion{asked: map[string][]time.Time{}}
	ps.Start(sig, apAndEU{})
	ps.Demand(pr)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) { // HubWait and more
		if in, _ := ps.Counts(); in == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not piped after 10 s")
		}
	}
	sig.mu.Lock()
	defer sig.mu.Unlock()
	a, o := sig.asked["A"], sig.asked["O"]
	if len(a) != 1 || len(o) != 1 {
		t.Fatalf("asked A %d times, O %d times; want once each", len(a), len(o))
	}
	if _, ok := ps.Trees().Tree(id)["A"]; ok {
		t.Errorf("A still a carrier in C's view after it said it carries nothing")
	}
	// A timer's lower bound, not a speed: the wait for the hub ran between the two requests.
	if gap := o[0].Sub(a[0]); gap < HubWait/2 {
		t.Errorf("asked O %v after A refused: it crossed without waiting for its region's hub", gap)
	}
}
