package node

import (
	"errors"
	"io"

	"github.com/pion/webrtc/v4"
)

// Receive transports detach their data channels (Worker's subscriber SettingEngine) so that no
// channel holds pion's read buffer: pion's readLoop makes one of 64 KiB per data channel and
// keeps it for the channel's life, which was the largest single item of a subscriber's memory
// (docs/BENCHMARKS-SIMULCAST.md, "RSS, profiled"). The node only writes on a receive transport's
// channel (the data consumer, PROTOCOL.md); whatever a client sends on it means nothing, and is
// read and dropped here with a small buffer, as pion dropped it before (no OnMessage handler).
// A message larger than the buffer stays queued in pion/sctp (pion/datachannel does not report
// its size); the drain reads it again into buffers of twice the size until it fits, as pion's
// readLoop does, and then returns to the small one: no message is left to fill the association's
// receive window, and no large buffer is kept.

// drainBuffer is the drain's buffer: a subscriber has no reason to send anything, so this is
// only the size of what a client sends by mistake, not a bound.
const drainBuffer = 512

// drainDataChannel detaches dc when it opens and reads, and drops, what the client sends on it,
// on a goroutine owned by t: the read ends when t's PeerConnection closes.
func (t *transport) drainDataChannel(dc *webrtc.DataChannel) {
	dc.OnOpen(func() {
		raw, err := dc.Detach()
		if err != nil {
			return // detaching not enabled (a send transport's API): pion reads and drops it
		}
		t.goRead(func() {
			buf := make([]byte, drainBuffer)
			for {
				_, err := raw.Read(buf)
				for size := 2 * len(buf); errors.Is(err, io.ErrShortBuffer); size *= 2 {
					_, err = raw.Read(make([]byte, size))
				}
				if err != nil {
					return
				}
			}
		})
	})
}
