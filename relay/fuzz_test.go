package relay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/relay"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// fuzzHandler records what the transport hands up.
type fuzzHandler struct {
	mu   sync.Mutex
	rtp  int
	ssrc uint32
	pkt  []byte
	rtcp int
}

func (h *fuzzHandler) HandleRTP(_ *relay.Link, ssrc uint32, pkt []byte) {
	h.mu.Lock()
	h.rtp++
	h.ssrc, h.pkt = ssrc, append(h.pkt[:0], pkt...)
	h.mu.Unlock()
}

func (h *fuzzHandler) HandleRTCP(*relay.Link, []rtcp.Packet) {
	h.mu.Lock()
	h.rtcp++
	h.mu.Unlock()
}

func (h *fuzzHandler) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rtp, h.rtcp
}

// relayFuzz is a transport with a link to "peer", whose datagrams come from a plain socket
// the test writes to (encrypting with the link's key itself, as the peer would).
type relayFuzz struct {
	t        *relay.Transport
	h        *fuzzHandler
	peer     *net.UDPConn // the peer's address: its datagrams go through the link
	stranger *net.UDPConn // an address no link has
	enc      *srtp.Context
	seq      map[uint32]uint16 // the last sequence number sent, by SSRC
}

func newRelayFuzz(tb testing.TB) *relayFuzz {
	h := &fuzzHandler{}
	tr, err := relay.Listen("127.0.0.1:0", h, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.Close)
	f := &relayFuzz{t: tr, h: h, seq: make(map[uint32]uint16)}
	for _, c := range []**net.UDPConn{&f.peer, &f.stranger} {
		if *c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { (*c).Close() })
	}
	l, err := tr.Expect("peer", f.peer.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		tb.Fatal(err)
	}
	pk := l.Key() // the peer sends with it, under its epoch's MKI
	key, mki := pk.Key, binary.BigEndian.AppendUint32(nil, pk.Epoch)
	if f.enc, err = srtp.CreateContext(key[:16], key[16:], srtp.ProtectionProfileAeadAes128Gcm, srtp.MasterKeyIndicator(mki)); err != nil {
		tb.Fatal(err)
	}

	return f
}

// total is every datagram the transport accounted for: delivered (media is counted in
// PacketsIn, feedback only reaches the handler) or dropped, by reason.
func (f *relayFuzz) total() uint64 {
	_, rtcpIn := f.h.counts()
	n := f.t.PacketsIn.Load() + uint64(rtcpIn)
	for _, d := range f.t.Drops() {
		n += d
	}
	return n
}

// send writes b from c and waits until the transport has accounted for it.
func (f *relayFuzz) send(t *testing.T, c *net.UDPConn, b []byte) {
	before := f.total()
	if _, err := c.WriteToUDPAddrPort(b, f.t.Addr()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.total() == before {
		if time.Now().After(deadline) {
			t.Fatalf("datagram of %d bytes neither delivered nor counted as dropped", len(b))
		}
		time.Sleep(20 * time.Microsecond)
	}
	if n := f.total() - before; n != 1 {
		t.Fatalf("one datagram counted %d times", n)
	}
}

// sealRTP makes an authenticated RTP packet from the fuzzer's bytes: their header when they
// parse as RTP (extensions, CSRCs), else a plain one, with a fresh sequence number and a
// payload type that RFC 5761 demultiplexing cannot take for RTCP. Each SSRC's sequence
// numbers go up by one, as a sender's do (a jump of more than 2^15 would make the two sides
// guess the rollover counter differently).
func (f *relayFuzz) sealRTP(b []byte) (plain, sealed []byte, ssrc uint32, err error) {
	var p rtp.Packet
	if p.Unmarshal(b) != nil {
		p = rtp.Packet{Header: rtp.Header{Version: 2}, Payload: b}
		if len(b) >= 4 {
			p.SSRC = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		}
	}
	f.seq[p.SSRC]++
	p.SequenceNumber = f.seq[p.SSRC]
	p.PayloadType = 96 + p.PayloadType%32
	p.Padding, p.PaddingSize = false, 0
	if plain, err = p.Marshal(); err != nil {
		return nil, nil, 0, err
	}
	if len(plain) > 1400 {
		return nil, nil, 0, fmt.Errorf("too large")
	}
	sealed, err = f.enc.EncryptRTP(nil, plain, nil)
	return plain, sealed, p.SSRC, err
}

// FuzzRelayPacket sends datagrams into a relay transport's receive path (a real UDP socket):
// junk from the peer's address, junk from an unknown address, authenticated RTP and RTCP made
// from the fuzzer's bytes, and authenticated packets with one bit flipped. Every datagram is
// accounted for exactly once (delivered or counted as a drop); nothing unauthenticated or
// tampered with reaches the handler; authenticated RTP arrives intact, under its SSRC.
func FuzzRelayPacket(f *testing.F) {
	rtpSeed, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 3000, SSRC: 0x1234},
		Payload: []byte{0x90, 0x80, 0x01, 0x02}}).Marshal()
	rrSeed, _ := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	nackSeed, _ := (&rtcp.TransportLayerNack{MediaSSRC: 0x1234, Nacks: []rtcp.NackPair{{PacketID: 5, LostPackets: 0xffff}}}).Marshal()
	for mode := uint8(0); mode < 5; mode++ {
		f.Add(mode, rtpSeed)
		f.Add(mode, rrSeed)
		f.Add(mode, nackSeed)
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(0), []byte{0x80, 0xc8, 0, 1})
	rf := newRelayFuzz(f)
	f.Fuzz(func(t *testing.T, mode uint8, b []byte) {
		if len(b) > 1400 {
			return
		}
		rtp0, rtcp0 := rf.h.counts()
		in0 := rf.t.PacketsIn.Load()
		switch mode % 5 {
		case 0: // junk from the peer: never authenticates
			rf.send(t, rf.peer, b)
		case 1: // anything from an unknown address: dropped unread
			before := rf.t.DroppedUnknown.Load()
			rf.send(t, rf.stranger, b)
			if rf.t.DroppedUnknown.Load() != before+1 {
				t.Fatal("a datagram from an unknown address was not counted as unknown_source")
			}
		case 2: // authenticated RTP: delivered intact
			plain, sealed, ssrc, err := rf.sealRTP(b)
			if err != nil {
				return
			}
			rf.send(t, rf.peer, sealed)
			// The transport counts a packet in PacketsIn before its handler has it.
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Microsecond) {
				if r, _ := rf.h.counts(); r != rtp0 || rf.t.PacketsIn.Load() == in0 {
					break
				}
			}
			rf.h.mu.Lock()
			got, gotSSRC, n := append([]byte(nil), rf.h.pkt...), rf.h.ssrc, rf.h.rtp
			rf.h.mu.Unlock()
			if n != rtp0+1 || gotSSRC != ssrc || !bytes.Equal(got, plain) {
				t.Fatalf("authenticated RTP (ssrc %x) not delivered intact: %d delivered, ssrc %x, %x vs %x", ssrc, n-rtp0, gotSSRC, got, plain)
			}
			return
		case 3: // authenticated RTCP: handed up
			pkts, err := rtcp.Unmarshal(b)
			if err != nil {
				return
			}
			raw, err := rtcp.Marshal(pkts)
			if err != nil || len(raw) > 1400 || raw[1] < 192 || raw[1] > 223 {
				return // not RTCP by RFC 5761's demultiplexing (an unknown type): the link takes it for RTP
			}
			sealed, err := rf.enc.EncryptRTCP(nil, raw, nil)
			if err != nil {
				return
			}
			rf.send(t, rf.peer, sealed)
			if _, n := rf.h.counts(); n != rtcp0+1 {
				t.Fatalf("authenticated RTCP not handed up (%d)", n-rtcp0)
			}
			return
		case 4: // authenticated RTP with one bit flipped: dropped
			_, sealed, _, err := rf.sealRTP(b)
			if err != nil || len(b) == 0 {
				return
			}
			i := int(b[0]) * 7 % len(sealed)
			sealed[i] ^= 1 << (b[len(b)-1] % 8)
			rf.send(t, rf.peer, sealed)
		}
		if r, c := rf.h.counts(); r != rtp0 || c != rtcp0 || rf.t.PacketsIn.Load() != in0 {
			t.Fatalf("mode %d: an unauthenticated datagram reached the handler", mode%5)
		}
	})
}
