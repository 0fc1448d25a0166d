package node

import (
	"encoding/binary"

	"github.com/pion/rtcp"
)

// Transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1) read
// in place. A subscriber sends 10 to 20 of these a second; pion/rtcp unmarshals each into a
// TransportLayerCC with one allocation per status chunk and per receive delta, and at N = 100
// that garbage alone raised the GC's heap goal by a tenth of a MiB per subscriber
// (docs/BENCHMARKS-SIMULCAST.md, "RSS, profiled"). Here a packet is validated once and then
// walked status by status with no allocation.
//
// What is accepted is exactly what pion/rtcp accepts (FuzzTransportCC compares the two), quirks
// included: a packet whose last status chunk ends at the packet's end is refused, as pion does,
// so that no feedback the estimator saw before is now read differently.

const (
	rtcpHeaderLen   = 4
	tccFixedLen     = 20  // header, two SSRCs, base sequence, status count, reference time, count
	rtcpTypeRTPFB   = 205 // transport-layer feedback
	tccFormat       = 15  // transport-cc, in the header's count field
	tccDeltaScaleUS = 250 // a receive delta's unit
)

// Packet status symbols: a status chunk's two-bit symbols (a one-bit symbol is 0 or 1).
const (
	tccNotReceived   = 0
	tccSmallDelta    = 1 // received, a one-byte unsigned delta
	tccLargeDelta    = 2 // received, a two-byte signed delta
	tccNoDeltaSymbol = 3 // reserved: no delta, read as not received
)

// rtcpPacketLen is the length of the RTCP packet at the start of b, by its header, and whether
// the header is an RTCP header (version 2) whose packet fits in b (as pion/rtcp checks).
func rtcpPacketLen(b []byte) (int, bool) {
	if len(b) < rtcpHeaderLen || b[0]>>6 != 2 {
		return 0, false
	}
	n := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
	return n, n <= len(b)
}

// isTCC reports whether the RTCP packet p (at least a header) is transport-cc feedback.
func isTCC(p []byte) bool { return p[1] == rtcpTypeRTPFB && p[0]&0x1f == tccFormat }

// scanCompound walks a compound RTCP packet's headers: ok when every packet fits (what
// rtcp.Unmarshal checks before it looks inside) and every transport-cc packet parses, tcc when one is transport-cc feedback, others
// when one is of any other kind.
func scanCompound(b []byte) (tcc, others, ok bool) {
	if len(b) == 0 {
		return false, false, false
	}
	for len(b) > 0 {
		n, fits := rtcpPacketLen(b)
		if !fits {
			return false, false, false
		}
		if isTCC(b) {
			if _, valid := parseTCC(b[:n]); !valid {
				return false, false, false // rtcp.Unmarshal refuses the whole compound
			}
			tcc = true
		} else {
			others = true
		}
		b = b[n:]
	}
	return tcc, others, true
}

// unmarshalOthers is rtcp.Unmarshal of the compound b without its transport-cc packets, which
// are read in place: a browser sends its feedback behind a receiver report (the node negotiates
// no reduced-size RTCP), and unmarshalling the whole compound would allocate the feedback's
// chunks and deltas again. b is a compound scanCompound accepted; the error is rtcp.Unmarshal's
// for the same compound (it unmarshals packet by packet too).
func unmarshalOthers(b []byte) ([]rtcp.Packet, error) {
	var pkts []rtcp.Packet
	for len(b) > 0 {
		n, _ := rtcpPacketLen(b)
		if !isTCC(b) {
			p, err := rtcp.Unmarshal(b[:n])
			if err != nil {
				return nil, err
			}
			pkts = append(pkts, p...)
		}
		b = b[n:]
	}
	return pkts, nil
}

// tccPacket is one transport-cc feedback packet that parseTCC validated.
type tccPacket struct {
	b      []byte // the packet, as long as its header says
	deltas int    // offset of the first receive delta, after the status chunks
}

// parseTCC validates p, one RTCP packet as long as its header says, as transport-cc feedback:
// its status chunks cover its status count and its receive deltas fit. It refuses what
// pion/rtcp's TransportLayerCC.Unmarshal refuses.
func parseTCC(p []byte) (tccPacket, bool) {
	n, fits := rtcpPacketLen(p)
	if !fits || n != len(p) || n < tccFixedLen || !isTCC(p) {
		return tccPacket{}, false
	}
	count := int(binary.BigEndian.Uint16(p[14:]))
	pos, deltaBytes := tccFixedLen, 0
	for done := 0; done < count; pos += 2 {
		if pos+2 >= n { // not >: pion refuses a chunk that ends at the packet's end
			return tccPacket{}, false
		}
		c := binary.BigEndian.Uint16(p[pos:])
		k := min(count-done, chunkStatuses(c))
		if c>>15 == 0 { // a run: k statuses of one symbol
			deltaBytes += k * deltaLen(chunkSymbol(c, 0))
		} else {
			for i := range k {
				deltaBytes += deltaLen(chunkSymbol(c, i))
			}
		}
		done += k
	}
	if pos+deltaBytes > n {
		return tccPacket{}, false
	}
	return tccPacket{b: p, deltas: pos}, true
}

// deltaLen is the length of the receive delta of a status with symbol sym.
func deltaLen(sym uint8) int {
	switch sym {
	case tccSmallDelta:
		return 1
	case tccLargeDelta:
		return 2
	}
	return 0
}

// chunkStatuses is how many statuses the status chunk c holds.
func chunkStatuses(c uint16) int {
	switch {
	case c>>15 == 0: // run length
		return int(c & 0x1fff)
	case c>>14&1 == 0: // status vector of 14 one-bit symbols
		return 14
	default: // status vector of 7 two-bit symbols
		return 7
	}
}

// chunkSymbol is the symbol of status i of the status chunk c.
func chunkSymbol(c uint16, i int) uint8 {
	switch {
	case c>>15 == 0:
		return uint8(c >> 13 & 3)
	case c>>14&1 == 0:
		return uint8(c >> (13 - i) & 1)
	default:
		return uint8(c >> (12 - 2*i) & 3)
	}
}

// base is the transport-wide sequence number of the packet's first status.
func (t tccPacket) base() uint16 { return binary.BigEndian.Uint16(t.b[12:]) }

// count is the number of statuses the packet reports.
func (t tccPacket) count() int { return int(binary.BigEndian.Uint16(t.b[14:])) }

// referenceTime is the packet's reference time, in units of 64 ms (24 bits, unsigned as pion
// reads it).
func (t tccPacket) referenceTime() uint32 {
	return uint32(t.b[16])<<16 | uint32(t.b[17])<<8 | uint32(t.b[18])
}

// tccIter walks a tccPacket's statuses in order: after next reports true, seq, symbol and
// delta describe one status.
type tccIter struct {
	t      tccPacket
	pos    int // the next status chunk
	dpos   int // the next receive delta
	left   int // statuses of the packet not yet in a chunk
	chunk  uint16
	n, i   int    // the current chunk's statuses to walk, and walked
	seq    uint16 // the sequence number of the status
	symbol uint8  // tccNotReceived ... tccNoDeltaSymbol
	delta  int64  // µs since the previous received packet (0 unless received)
}

func (t tccPacket) iter() tccIter {
	return tccIter{t: t, pos: tccFixedLen, dpos: t.deltas, left: t.count(), seq: t.base() - 1}
}

// next moves to the next status; it reports false after the last.
func (it *tccIter) next() bool {
	for it.i == it.n {
		if it.left == 0 {
			return false
		}
		it.chunk = binary.BigEndian.Uint16(it.t.b[it.pos:])
		it.pos += 2
		it.n, it.i = min(it.left, chunkStatuses(it.chunk)), 0
		it.left -= it.n
	}
	it.symbol = chunkSymbol(it.chunk, it.i)
	it.i++
	it.seq++
	it.delta = 0
	switch it.symbol {
	case tccSmallDelta:
		it.delta = tccDeltaScaleUS * int64(it.t.b[it.dpos])
		it.dpos++
	case tccLargeDelta:
		it.delta = tccDeltaScaleUS * int64(int16(binary.BigEndian.Uint16(it.t.b[it.dpos:])))
		it.dpos += 2
	}
	return true
}

// received reports whether the status is of a packet that arrived (and has a delta).
func (it *tccIter) received() bool {
	return it.symbol == tccSmallDelta || it.symbol == tccLargeDelta
}
