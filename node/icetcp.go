package node

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// A client that can reach the node over UDP usually also connects to its ICE-TCP candidate
// while ICE checks every pair (browsers and pion dial passive TCP candidates). Once the node
// selects a UDP pair, that TCP connection carries nothing for the rest of the session, yet
// pion keeps it, with two goroutines and their 8 KiB buffers, a write buffer and the mux's
// per-ufrag state: about 55 KiB a subscriber (docs/BENCHMARKS-SIMULCAST.md, "RSS, profiled").
// So the transport's TCP connections are closed when a UDP pair is selected. On a receive
// transport the node nominates (it offers, so it is the controlling agent, and pion does not
// renominate): a selected UDP pair stays selected. Where the client nominates (send
// transports, WHEP, a subscriber's own offer) a client that later moves its nomination to TCP,
// as when its UDP stops, finds that path closed and its transport fails (an ICE restart's new
// ufrag is accepted afresh). A transport whose selected pair is TCP keeps its connections.

// releaseTCP closes the transport's ICE-TCP connections when pair, its newly selected candidate
// pair, is UDP. It runs on a goroutine of the transport's: the ICE agent calls the selection's
// handler from its own loop, which the ufrag's lookup waits for.
func (t *transport) releaseTCP(pair *webrtc.ICECandidatePair) {
	mux := t.worker.tcp
	if mux == nil || pair == nil || pair.Local == nil || pair.Local.Protocol != webrtc.ICEProtocolUDP {
		return
	}
	ice := t.pc.SCTP().Transport().ICETransport()
	t.goRead(func() {
		local, err := ice.GetLocalParameters()
		if err != nil || local.UsernameFragment == "" {
			return
		}
		mux.RemoveConnByUfrag(local.UsernameFragment)
		// A client that dials the TCP candidate only after UDP was selected (a loaded client
		// does) makes the mux hold an unclaimed connection for the ufrag until pion's 30 s alive
		// timeout, which counts it as refused: release once more after such a late dial.
		time.AfterFunc(lateTCPDial, func() { mux.RemoveConnByUfrag(local.UsernameFragment) })
	})
}

// lateTCPDial is how long after selecting a UDP pair the transport's ICE-TCP connections are
// released a second time.
const lateTCPDial = 3 * time.Second
