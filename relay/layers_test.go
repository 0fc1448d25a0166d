package relay

import (
	"testing"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// TestPipeLayerDemand: a pipe request's layers set which relay sinks (one per layer) towards
// the child are open; the child's later demands change it, and the producer's demand here follows (it is
// what this node asks of its own parent). A demand naming the pipe with another SSRC, naming
// a pipe of another child, or demanding nothing changes nothing; one with junk bits past the
// layers is every layer (what a pipe carries before any demand).
func TestPipeLayerDemand(t *testing.T) {
	ps, pr, child, lc := pipingParent(t, []proto.Layer{{Rid: "q"}, {Rid: "h"}, {Rid: "f"}})
	k := lc.Key()
	req := PipeRequest{Room: "room", Producer: "PR", From: "C", RelayAddr: child.Addr().String(), Key: k.Key, KeyEpoch: k.Epoch,
		SSRC: lc.NewSSRC(), Layers: 3, Demand: 0b001}
	if rep := ps.ServePipe(req); !rep.OK {
		t.Fatalf("pipe request: %+v", rep)
	}
	expect := func(want uint8, what string) {
		t.Helper()
		got, ok := ps.PipeLayers("C", "PR")
		if !ok || got != want {
			t.Fatalf("%s: the pipe carries %03b (%v), want %03b", what, got, ok, want)
		}
		if d := pr.DemandedLayers(); d != want {
			t.Fatalf("%s: the producer's demand here is %03b, want %03b", what, d, want)
		}
	}
	expect(0b001, "asked for layer 0")
	demand := func(r PipeRequest, layers uint8) PipeRequest { r.Demand = layers; return r }
	ps.ServeLayers(demand(req, 0b101))
	expect(0b101, "demanded layers 0 and 2")
	bad := demand(req, 0b010)
	bad.SSRC++
	ps.ServeLayers(bad)
	bad = demand(req, 0b010)
	bad.From = "X"
	ps.ServeLayers(bad)
	ps.ServeLayers(demand(req, 0))
	bad = demand(req, 0b010)
	bad.Producer = "PR_other"
	ps.ServeLayers(bad)
	expect(0b101, "after demands naming no pipe of theirs")
	if n := ps.StrayDemands.Load(); n != 4 {
		t.Fatalf("%d stray demands counted, want 4", n)
	}
	ps.ServeLayers(demand(req, 0xf8))
	expect(node.AllLayers, "junk bits")
	ps.Unpiped(req)
	if _, ok := ps.PipeLayers("C", "PR"); ok {
		t.Fatal("the pipe outlived its unpipe")
	}
	if d := pr.DemandedLayers(); d != 0 {
		t.Fatalf("demand %03b after the unpipe", d)
	}
}

// pipingParent is a node carrying a remote producer "PR" (with layers) and its Pipes as node
// "P" (its parent "O" carries it), and a link to it from a child; all closed at the test's end.
func pipingParent(t *testing.T, layers []proto.Layer) (ps *Pipes, pr *node.Producer, child *Transport, lc *Link) {
	t.Helper()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	p, err := n.Join("room", "viewer", node.Grant{Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	pr, err = p.Room().AddRemoteProducer(node.ProducerInfo{ID: "PR", Mid: "0", Participant: "far", Kind: "video",
		Codec: webrtc.MimeTypeVP8, ClockRate: 90000, Layers: layers}, "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	ps, err = Open(Options{Self: "P", Producers: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	ps.in["PR"] = &inPipe{p: pr, parent: "O"} // the parent carries the producer
	child, err = Listen("127.0.0.1:0", &recorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Close() })
	lc, err = child.Expect("P", ps.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return ps, pr, child, lc
}
