package node

import (
	"testing"
	"time"
)

// layeredConsumers is benchConsumers for a three-layer producer whose n consumers forward
// layer 0 (switched to it: the fast path), and a packet of layer layer.
func layeredConsumers(n int, layer uint8) (*Worker, *pipe, *packet) {
	w, pp, pkt := benchConsumers(n)
	cs := *pp.consumers.Load()
	cs[0].producer.setRids([]string{"q", "h", "f"})
	for _, c := range cs {
		c.sw.layer, c.sw.chosen = 0, true
		c.lay.target.Store(0)
	}
	pkt.layer = layer
	return w, pp, pkt
}

// BenchmarkForwardOneLayered is BenchmarkForwardOne for a consumer of a simulcast producer,
// forwarding its layer: the same path (one comparison of generation and layer).
func BenchmarkForwardOneLayered(b *testing.B) {
	_, pp, pkt := layeredConsumers(1, 0)
	benchForward(b, pp, pkt)
}

// BenchmarkFanOut100OtherLayer is a packet of a layer none of a worker's 100 consumers
// forwards: what the fan-out pays per packet of the layers a consumer does not take.
func BenchmarkFanOut100OtherLayer(b *testing.B) {
	w, pp, pkt := layeredConsumers(100, 2)
	benchFanOut(b, w, pp, pkt)
}

// TestLayeredForwardAllocatesNothing: forwarding a layer, and dropping the others, allocates
// nothing.
func TestLayeredForwardAllocatesNothing(t *testing.T) {
	for _, layer := range []uint8{0, 2} {
		_, pp, pkt := layeredConsumers(1, layer)
		c := (*pp.consumers.Load())[0]
		now := time.Now()
		if a := testing.AllocsPerRun(1000, func() { pkt.header.SequenceNumber++; c.forward(pkt, now) }); a != 0 {
			t.Fatalf("layer %d: %v allocations per packet", layer, a)
		}
	}
}
