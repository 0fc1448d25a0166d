package relay

// maxNackGap is the longest run of missing packets an edge asks its parent to resend; a longer
// gap is an outage, better healed by a keyframe.
const maxNackGap = 64

// missing returns the sequence numbers between last and seq that never arrived (none for an
// in-order, duplicate or late packet, or a gap past maxNackGap).
func missing(last, seq uint16) []uint16 {
	d := seq - last
	if d <= 1 || d > maxNackGap {
		return nil
	}
	out := make([]uint16, 0, d-1)
	for s := last + 1; s != seq; s++ {
		out = append(out, s)
	}
	return out
}

// gaps is an edge's loss detector on one pipe: it sees every packet's sequence number, in
// arrival order, on the relay's read goroutine (which owns it).
type gaps struct {
	started bool
	last    uint16
}

// received notes a packet's sequence number. It returns the sequence numbers lost before it
// (to NACK to the parent), or keyframe when too much was lost to resend. A retransmission or a
// reordered packet changes nothing. It allocates only when packets were lost.
func (g *gaps) received(seq uint16) (lost []uint16, keyframe bool) {
	if !g.started {
		g.started, g.last = true, seq
		return nil, false
	}
	if int16(seq-g.last) <= 0 {
		return nil, false
	}
	gap := seq - g.last
	lost = missing(g.last, seq)
	g.last = seq
	if gap > maxNackGap {
		return nil, true
	}
	return lost, false
}
