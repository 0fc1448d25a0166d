package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestMissing(t *testing.T) {
	for _, c := range []struct {
		last, seq uint16
		want      []uint16
	}{
		{10, 11, nil},
		{10, 10, nil},
		{10, 9, nil},
		{10, 13, []uint16{11, 12}},
		{65534, 2, []uint16{65535, 0, 1}},
		{10, 10 + maxNackGap + 1, nil},
	} {
		if got := missing(c.last, c.seq); !slices.Equal(got, c.want) {
			t.Errorf("missing(%d, %d) = %v, want %v", c.last, c.seq, got, c.want)
		}
	}
}

type rtcpSink chan []rtcp.Packet

func (rtcpSink) HandleRTP(*Link, uint32, []byte)       {}
func (s rtcpSink) HandleRTCP(_ *Link, p []rtcp.Packet) { s <- p }

// TestEdgeNacksParent: a gap in what a relay link delivers makes the edge NACK exactly the
// missing packets to its parent, over the link.
func TestEdgeNacksParent(t *testing.T) {
	parentIn := make(rtcpSink, 4)
	parent, err := Listen("127.0.0.1:0", parentIn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	edge, err := Listen("127.0.0.1:0", rtcpSink(make(chan []rtcp.Packet, 4)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	toParent, err := edge.Expect("P", parent.Addr())
	if err != nil {
		t.Fatal(err)
	}
	toEdge, err := parent.Link("E", edge.Addr(), toParent.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edge.Link("P", parent.Addr(), toEdge.Key()); err != nil {
		t.Fatal(err)
	}
	in := &inPipe{link: toParent, ssrc: 7}
	for _, seq := range []uint16{100, 101, 104, 103} { // 102 and 103 lost; 103 arrives late
		in.received(seq, 0)
	}
	select {
	case pkts := <-parentIn:
		nack, ok := pkts[0].(*rtcp.TransportLayerNack)
		if !ok || nack.MediaSSRC != 7 {
			t.Fatalf("got %v", pkts)
		}
		var seqs []uint16
		for _, n := range nack.Nacks {
			seqs = append(seqs, n.PacketList()...)
		}
		if !slices.Equal(seqs, []uint16{102, 103}) {
			t.Fatalf("nacked %v, want [102 103]", seqs)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no NACK reached the parent")
	}
	select {
	case pkts := <-parentIn:
		t.Fatalf("a late packet caused another NACK: %v", pkts)
	case <-time.After(100 * time.Millisecond):
	}
}
