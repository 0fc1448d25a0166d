// Package talker is an audio publisher for tests: a PeerConnection on loopback UDP/IPv4 that
// sends one Opus track, 50 packets a second, each carrying the RFC 6464 audio level (the
// ssrc-audio-level header extension negotiated with the node) at the level it is set to; and
// Heard, a participant's listener that keeps the activeSpeakers notifications it gets.
package talker

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Audio levels a talker sends: the RFC 6464 byte, V bit (voice activity) and level in -dBov.
const (
	Loud    = 0x80 | 12 // speech, 12 dB below overload
	Quiet   = 0x80 | 40 // speech, far from the microphone
	Silence = 127       // no voice, the quietest level
)

// Talker is the publisher's PeerConnection and the goroutine that writes its track.
type Talker struct {
	level atomic.Uint32
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// Start offers a send-only Opus track with the audio-level extension, every candidate
// gathered, to publish, which returns the answer; then it sends at level until Close or the end
// of the test. The node must have negotiated the extension.
func Start(t testing.TB, level byte, publish func(offer string) (answer string, err error)) *Talker {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := vp8pub.LoopbackAPI(me).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "talker")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	vp8pub.Negotiate(t, pc, publish)
	var ext uint8
	for _, e := range tr.Sender().GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI {
			ext = uint8(e.ID)
		}
	}
	if ext == 0 {
		t.Fatal("the node did not negotiate the audio-level extension")
	}
	tk := &Talker{stop: make(chan struct{}), done: make(chan struct{})}
	tk.level.Store(uint32(level))
	go func() {
		defer close(tk.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := []byte{0xfc, 0xff, 0xfe} // an Opus frame (the node does not read it)
		for i := uint32(1); ; i++ {
			select {
			case <-tk.stop:
				return
			case <-tick.C:
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 960}, Payload: payload}
			if pkt.Header.SetExtension(ext, []byte{byte(tk.level.Load())}) == nil {
				_ = track.WriteRTP(pkt)
			}
		}
	}()
	t.Cleanup(tk.Close)
	return tk
}

// Join joins identity to room on n, with l as its listener, and publishes a talker at level.
func Join(t testing.TB, n *node.Node, room, identity string, level byte, l node.Listener) (*node.Participant, *Talker) {
	t.Helper()
	p, err := n.Join(room, identity, node.Grant{Publish: true, Subscribe: true}, false, l)
	if err != nil {
		t.Fatal(err)
	}
	tk := Start(t, level, func(offer string) (string, error) {
		answer, _, err := p.Publish(offer, true)
		return answer, err
	})
	return p, tk
}

// Listen joins identity to room on n as a subscriber whose notifications it keeps.
func Listen(t testing.TB, n *node.Node, room, identity string) *Heard {
	t.Helper()
	h := &Heard{}
	if _, err := n.Join(room, identity, node.Grant{Subscribe: true}, false, h); err != nil {
		t.Fatal(err)
	}
	return h
}

// SetLevel changes the level of the next packets.
func (tk *Talker) SetLevel(level byte) { tk.level.Store(uint32(level)) }

// Close stops sending and waits for the sending goroutine.
func (tk *Talker) Close() {
	tk.once.Do(func() { close(tk.stop) })
	<-tk.done
}

// Heard is a participant's listener that keeps its activeSpeakers notifications, each as the
// list of its participant ids joined by commas ("" for the empty list). Other notifications
// are ignored.
type Heard struct {
	mu    sync.Mutex
	lists []string
	data  []proto.ActiveSpeakersData
	bad   []string
}

// Notify implements the node's Listener. The data goes through JSON, as a client gets it; an
// empty list must be [] (not null).
func (h *Heard) Notify(method string, data any) {
	if method != proto.MethodActiveSpeakers {
		return
	}
	b, _ := json.Marshal(data)
	var d proto.ActiveSpeakersData
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := json.Unmarshal(b, &d); err != nil || d.Speakers == nil {
		h.bad = append(h.bad, string(b))
		return
	}
	who := make([]string, 0, len(d.Speakers))
	for _, s := range d.Speakers {
		who = append(who, s.Participant)
	}
	h.lists = append(h.lists, strings.Join(who, ","))
	h.data = append(h.data, d)
}

// Count is how many notifications arrived.
func (h *Heard) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lists)
}

// Data is the i-th notification's data.
func (h *Heard) Data(i int) proto.ActiveSpeakersData {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.data[i]
}

func (h *Heard) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%q", h.lists)
}

// Find is the index of the first notification at or after from whose list is want (-1: none
// yet).
func (h *Heard) Find(from int, want string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := from; i < len(h.lists); i++ {
		if h.lists[i] == want {
			return i
		}
	}
	return -1
}

// Wait waits up to 15 s for a notification at or after from whose list is want, and returns
// the index after it; who names the listener in the failure.
func (h *Heard) Wait(t testing.TB, who string, from int, want string) int {
	t.Helper()
	i := -1
	harness.Eventually(t, 15*time.Second, func() error {
		if i = h.Find(from, want); i < 0 {
			return fmt.Errorf("%s: no activeSpeakers %q yet: %s", who, want, h)
		}
		return nil
	})
	return i + 1
}

// Check reports a notification that was malformed, or one that repeats the list before it
// (activeSpeakers is sent on changes only).
func (h *Heard) Check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) > 0 {
		return fmt.Errorf("malformed activeSpeakers: %q", h.bad)
	}
	for i := 1; i < len(h.lists); i++ {
		if h.lists[i] == h.lists[i-1] {
			return fmt.Errorf("activeSpeakers repeated an unchanged list: %q", h.lists)
		}
	}
	return nil
}
