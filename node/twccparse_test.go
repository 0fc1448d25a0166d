package node

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// tccStatus is one status of a transport-cc packet: what both readings must agree on.
type tccStatus struct {
	seq    uint16
	symbol uint8
	delta  int64
}

// walkTCC is the statuses parseTCC's walk reads.
func walkTCC(t tccPacket) []tccStatus {
	var out []tccStatus
	for it := t.iter(); it.next(); {
		out = append(out, tccStatus{it.seq, it.symbol, it.delta})
	}
	return out
}

// pionStatuses is the statuses of pion/rtcp's TransportLayerCC, read as the estimator read
// them before (status count bounding the chunks' symbols, deltas in order).
func pionStatuses(fb *rtcp.TransportLayerCC) []tccStatus {
	var out []tccStatus
	seq, left, di := fb.BaseSequenceNumber, int(fb.PacketStatusCount), 0
	one := func(sym uint16) {
		s := tccStatus{seq: seq, symbol: uint8(sym)}
		if sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta {
			s.delta = fb.RecvDeltas[di].Delta
			di++
		}
		out = append(out, s)
		seq++
		left--
	}
	for _, ch := range fb.PacketChunks {
		switch ch := ch.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(ch.RunLength) && left > 0; i++ {
				one(ch.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range ch.SymbolList {
				if left == 0 {
					break
				}
				one(sym)
			}
		}
	}
	return out
}

// compareTCC fails unless the compound b reads the same in place as through pion/rtcp: the
// same compounds refused, and each transport-cc packet's fields and statuses identical.
func compareTCC(t *testing.T, b []byte) {
	t.Helper()
	pkts, perr := rtcp.Unmarshal(b)
	tcc, others, ok := scanCompound(b)
	var rest []rtcp.Packet
	var rerr error
	if ok && others {
		rest, rerr = unmarshalOthers(b)
	}
	if accepted := ok && rerr == nil; accepted != (perr == nil) {
		t.Fatalf("in place accepts %v (ok %v, others %v: %v), pion/rtcp: %v", accepted, ok, others, rerr, perr)
	}
	if perr != nil {
		return
	}
	var want []rtcp.Packet
	for _, p := range pkts {
		if _, isCC := p.(*rtcp.TransportLayerCC); !isCC {
			want = append(want, p)
		}
	}
	if !reflect.DeepEqual(rest, want) || others != (len(want) > 0) {
		t.Fatalf("the compound's other packets read %#v, pion/rtcp %#v", rest, want)
	}
	var mine []tccPacket
	for rest := b; len(rest) > 0; {
		n, _ := rtcpPacketLen(rest)
		if isTCC(rest) {
			p, valid := parseTCC(rest[:n])
			if !valid {
				t.Fatal("scanCompound accepted a transport-cc packet parseTCC refuses")
			}
			mine = append(mine, p)
		}
		rest = rest[n:]
	}
	var theirs []*rtcp.TransportLayerCC
	for _, p := range pkts {
		if fb, isCC := p.(*rtcp.TransportLayerCC); isCC {
			theirs = append(theirs, fb)
		}
	}
	if len(mine) != len(theirs) || tcc != (len(theirs) > 0) {
		t.Fatalf("%d transport-cc packets in place (tcc %v), %d by pion/rtcp", len(mine), tcc, len(theirs))
	}
	for i, fb := range theirs {
		p := mine[i]
		if p.base() != fb.BaseSequenceNumber || p.count() != int(fb.PacketStatusCount) || p.referenceTime() != fb.ReferenceTime {
			t.Fatalf("packet %d: base %d count %d ref %d, pion/rtcp %d %d %d", i,
				p.base(), p.count(), p.referenceTime(), fb.BaseSequenceNumber, fb.PacketStatusCount, fb.ReferenceTime)
		}
		a, w := walkTCC(p), pionStatuses(fb)
		if fmt.Sprint(a) != fmt.Sprint(w) {
			t.Fatalf("packet %d: statuses in place\n%v\npion/rtcp\n%v", i, a, w)
		}
	}
}

// recorderFeedback is what pion's feedback recorder (the receiver side of transport-cc) builds
// for packets arriving every step, each lost one of every lossEvery (0: none), marshalled.
func recorderFeedback(tb testing.TB, packets, lossEvery int, step time.Duration) []byte {
	tb.Helper()
	rec := twcc.NewRecorder(7)
	for i := range packets {
		if lossEvery > 0 && i%lossEvery == lossEvery-1 {
			continue
		}
		rec.Record(1, uint16(60000+i), int64(i)*step.Microseconds()+5_000_000)
	}
	raw, err := rtcp.Marshal(rec.BuildFeedbackPacket())
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// tccSeeds are feedback packets of every chunk kind and delta size, alone and in compounds.
func tccSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	rr, err := (&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	nack, err := (&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 9}}}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	seeds := [][]byte{
		recorderFeedback(tb, 40, 0, 5*time.Millisecond),   // a run, small deltas
		recorderFeedback(tb, 40, 10, 5*time.Millisecond),  // status vectors with losses
		recorderFeedback(tb, 30, 3, 80*time.Millisecond),  // large deltas
		recorderFeedback(tb, 300, 0, 1*time.Millisecond),  // long runs
		recorderFeedback(tb, 200, 7, 70*time.Millisecond), // two-bit vectors
	}
	// Hand-made: two runs of one lost packet each, the second ending at the packet's end (pion
	// refuses it); the same with a 1-bit and a 2-bit vector and padding after them.
	edge := []byte{0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 1, 0, 0x00, 0x01, 0x00, 0x01}
	vectors := []byte{0x8f, 205, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xf0, 0, 16, 0x80, 0, 0, 0,
		0xa0, 0x01, 0xd8, 0x00, 4, 0xff, 0x38, 0xff, 0x00, 0, 0, 0}
	if _, ok := parseTCC(vectors); !ok {
		tb.Fatal("the hand-made vectors packet does not parse")
	}
	seeds = append(seeds, edge, vectors)
	seeds = append(seeds, append(append([]byte{}, rr...), seeds[1]...), append(append([]byte{}, seeds[2]...), nack...), rr)
	return seeds
}

// TestTransportCCMatchesPion: pion's own feedback recorder's packets, alone and in compounds
// with a receiver report or a NACK, read in place exactly as pion/rtcp reads them; so do the
// same packets cut short (each refused by both or by neither).
func TestTransportCCMatchesPion(t *testing.T) {
	for _, b := range tccSeeds(t) {
		compareTCC(t, b)
		for cut := range len(b) {
			compareTCC(t, b[:cut])
		}
	}
}

// TestTransportCCAllocatesNothing: scanning a compound and handing its feedback to the
// estimator allocates nothing once the transport's ack slice has grown.
func TestTransportCCAllocatesNothing(t *testing.T) {
	raw := recorderFeedback(t, 40, 10, 5*time.Millisecond)
	s := newCCSender(time.Now())
	for i := range 40 {
		s.record(1200, s.epoch.Add(time.Duration(i)*5*time.Millisecond))
	}
	now := s.epoch.Add(time.Second)
	s.feedbackCompound(raw, now)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok := scanCompound(raw); !ok {
			t.Fatal("refused")
		}
		s.heard = false // the same feedback again, as if new
		s.feedbackCompound(raw, now)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per feedback, want 0", allocs)
	}
}

// FuzzTransportCC: any datagram a subscriber sends as RTCP is refused in place exactly when
// pion/rtcp refuses it, and otherwise reads to the same transport-cc statuses and deltas.
func FuzzTransportCC(f *testing.F) {
	for _, b := range tccSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		compareTCC(t, b)
	})
}

// BenchmarkTransportCCPion is what reading one feedback packet (60 packets, one in ten lost)
// cost before: pion/rtcp's unmarshalling (the walk of its chunks that followed allocated
// nothing). Compare with BenchmarkTransportCCInPlace in one run.
func BenchmarkTransportCCPion(b *testing.B) {
	raw := recorderFeedback(b, 60, 10, 5*time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rtcp.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransportCCInPlace is scanCompound, parseTCC and the walk of the same packet's
// statuses.
func BenchmarkTransportCCInPlace(b *testing.B) {
	raw := recorderFeedback(b, 60, 10, 5*time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := scanCompound(raw); !ok {
			b.Fatal("refused")
		}
		p, _ := parseTCC(raw)
		for it := p.iter(); it.next(); {
		}
	}
}
