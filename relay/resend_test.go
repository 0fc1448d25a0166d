package relay

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type quietListener struct{}

func (quietListener) Notify(string, any) {}

// TestRelaySinkRetransmissionsIdentical: a producer's relay sink on a link, as a parent runs it.
// A NACKed packet is resent byte for byte as first sent. After a mute and unmute the sink maps
// its sequence numbers anew, so a NACK for a packet sent before the mute would resend another
// packet under the old (SSRC, index): the link refuses it instead of sealing other bytes under
// a used nonce. No (SSRC, sequence number) appears on the wire with two contents.
func TestRelaySinkRetransmissionsIdentical(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p, err := n.Join("room", "viewer", node.Grant{Subscribe: true}, false, quietListener{})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.Room().AddRemoteProducer(node.ProducerInfo{ID: "PR", Mid: "0", Participant: "far", Kind: "video",
		Codec: webrtc.MimeTypeVP8, ClockRate: 90000}, "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	rb := &recorder{}
	a, tapA := listenTapped(t, &recorder{}, Keying{}, time.Now)
	b, _ := listenTapped(t, rb, Keying{}, time.Now)
	la, lb := link(t, a, b)
	ssrc := lb.NewSSRC()
	cons, err := pr.Attach(la, ssrc)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Detach()
	inject := func(seq uint16) {
		payload := bytes.Repeat([]byte{byte(seq)}, 1000)
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 0xfeed},
			Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		pr.Inject(raw)
	}
	onWire := func(want int) [][]byte {
		t.Helper()
		var d [][]byte
		eventually(t, func() error {
			if d = tapA.datagrams(); len(d) != want {
				return fmt.Errorf("%d datagrams on the wire, want %d", len(d), want)
			}
			return nil
		})
		return d
	}
	for seq := uint16(1000); seq < 1020; seq++ {
		inject(seq)
	}
	d := onWire(20)
	cons.Nack([]uint16{1005}) // out = in before any resync
	d = onWire(21)
	if !bytes.Equal(d[5], d[20]) {
		t.Fatalf("the retransmission differs on the wire")
	}
	p.Room().SetRemoteMuted("PR", true)
	for seq := uint16(1020); seq < 1030; seq++ { // cached, not forwarded
		inject(seq)
	}
	p.Room().SetRemoteMuted("PR", false)
	for seq := uint16(1030); seq < 1035; seq++ { // forwarded as 1020..1024
		inject(seq)
	}
	onWire(26)
	cons.Nack([]uint16{1010}) // sent before the mute; now maps to in 1020, another packet
	eventually(t, func() error {
		if a.RefusedResend.Load() != 1 {
			return fmt.Errorf("refused %d, want 1", a.RefusedResend.Load())
		}
		return nil
	})
	cons.Nack([]uint16{1022}) // sent after the unmute: resent as it was
	d = onWire(27)
	seen := map[wireID][]byte{}
	for _, dg := range d {
		id := idOf(dg)
		if old, ok := seen[id]; ok && !bytes.Equal(old, dg) {
			t.Fatalf("%+v on the wire with two contents", id)
		}
		seen[id] = dg
	}
	if len(seen) != 25 { // 27 datagrams, two of them retransmissions of the same bytes
		t.Fatalf("%d distinct packets on the wire, want 25", len(seen))
	}
	waitCount(t, rb, 25, b)
	eventually(t, func() error { // the two retransmissions of packets received are replays
		if d := b.Drops(); d[DropReplay] != 2 || d[DropAuth]+d[DropKey] != 0 {
			return fmt.Errorf("drops %v, want 2 replays", d)
		}
		return nil
	})
}

// TestServePipeRefusesUsedSSRC: a pipe request naming an SSRC the link already sent under (a
// replayed or forged request; a real child never repeats one) is refused, so a pipe made again
// cannot restart that SSRC's indices under the same key. The reply hands the child a fresh
// SSRC for its feedback, with the parent's key epoch.
func TestServePipeRefusesUsedSSRC(t *testing.T) {
	ps, _, child, lc := pipingParent(t, nil)
	request := func() PipeRequest {
		k := lc.Key()
		return PipeRequest{Room: "room", Producer: "PR", From: "C", RelayAddr: child.Addr().String(), Key: k.Key, KeyEpoch: k.Epoch, SSRC: lc.NewSSRC()}
	}
	req := request()
	rep := ps.ServePipe(req)
	if !rep.OK || rep.SSRC == 0 || len(rep.Key) != KeyLen {
		t.Fatalf("first request: %+v", rep)
	}
	ps.Unpiped(req) // the pipe ends
	if rep := ps.ServePipe(req); rep.OK || rep.Error != ErrSSRCInUse.Error() {
		t.Fatalf("the same request again: %+v, want %v", rep, ErrSSRCInUse)
	}
	if rep2 := ps.ServePipe(request()); !rep2.OK || rep2.SSRC == rep.SSRC {
		t.Fatalf("a new request: %+v (first reply's SSRC %d)", rep2, rep.SSRC)
	}
}
