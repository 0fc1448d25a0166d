package node_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Audio levels a talker sends (the RFC 6464 byte: V bit and -dBov).
const (
	loudVoice  = 0x80 | 12 // speech, 12 dB below overload
	quietVoice = 0x80 | 40 // speech, far from the microphone
	silence    = 127       // no V bit, the quietest level
)

// talker is a pion publisher of one Opus track whose packets carry the audio-level extension
// negotiated with the node, at the level it is set to.
type talker struct {
	p     *node.Participant
	level atomic.Uint32
}

// talk joins identity to room on n and publishes an Opus track sending 50 packets a second at
// the level given (changed with talker.level).
func talk(t *testing.T, n *node.Node, room, identity string, level byte) *talker {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	loopbackOnly(&se)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", identity)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.Join(room, identity, node.Grant{Publish: true, Subscribe: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(offer(t, pc), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var ext uint8
	for _, e := range tr.Sender().GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI {
			ext = uint8(e.ID)
		}
	}
	if ext == 0 {
		t.Fatal("the node did not negotiate the audio-level extension")
	}
	tk := &talker{p: p}
	tk.level.Store(uint32(level))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := []byte{0xfc, 0xff, 0xfe} // an Opus frame (its content is not read)
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 960}, Payload: payload}
			if err := pkt.Header.SetExtension(ext, []byte{byte(tk.level.Load())}); err != nil {
				panic(err)
			}
			_ = track.WriteRTP(pkt)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return tk
}

// speakerLog keeps the activeSpeakers notifications a participant gets, as lists of
// participant ids ("" for the empty list).
type speakerLog struct {
	mu    sync.Mutex
	lists []string
	last  proto.ActiveSpeakersData
}

func (l *speakerLog) Notify(method string, data any) {
	if method != proto.MethodActiveSpeakers {
		return
	}
	// Through JSON, as a client gets it.
	b, _ := json.Marshal(data)
	var d proto.ActiveSpeakersData
	if err := json.Unmarshal(b, &d); err != nil || d.Speakers == nil {
		panic(fmt.Sprintf("activeSpeakers %s: %v (the empty list must be [])", b, err))
	}
	var who []string
	for _, s := range d.Speakers {
		who = append(who, s.Participant)
	}
	l.mu.Lock()
	l.lists = append(l.lists, strings.Join(who, ","))
	l.last = d
	l.mu.Unlock()
}

// count is how many notifications arrived; list the i-th.
func (l *speakerLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lists)
}

func (l *speakerLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%q", l.lists)
}

// waitFor waits for a notification (after the first from) whose list is want; it returns
// the index of the one after it.
func (l *speakerLog) waitFor(t *testing.T, from int, want string) int {
	t.Helper()
	next := 0
	checkFor(t, 15*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := from; i < len(l.lists); i++ {
			if l.lists[i] == want {
				next = i + 1
				return nil
			}
		}
		return fmt.Errorf("no activeSpeakers %q yet: %q", want, l.lists)
	})
	return next
}

// noRepeats fails if two notifications in a row carry the same list: they come on changes only.
func (l *speakerLog) noRepeats(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 1; i < len(l.lists); i++ {
		if l.lists[i] == l.lists[i-1] {
			t.Fatalf("activeSpeakers repeated an unchanged list: %q", l.lists)
		}
	}
}

// TestActiveSpeakers: two pion publishers send Opus with the audio-level extension, one loud
// and one silent; a listener hears activeSpeakers with the loud one, then nothing while nothing
// changes; they swap and the listener hears the other lead; a participant joining meanwhile
// hears the current list at once; when both speak, the louder comes first; when both are
// silent, the empty list. Every notification is a change.
func TestActiveSpeakers(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1, TCPPort: node.TCPDisabled, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	heard := &speakerLog{}
	if _, err := n.Join("r", "listener", node.Grant{Subscribe: true}, false, heard); err != nil {
		t.Fatal(err)
	}
	alice := talk(t, n, "r", "alice", loudVoice)
	bob := talk(t, n, "r", "bob", silence)

	next := heard.waitFor(t, 0, alice.p.ID())
	if heard.count() != 1 {
		t.Fatalf("activeSpeakers before alice alone: %s", heard)
	}
	if l := heard.last.Speakers[0]; l.Level < 0.2 || l.Level > 1 || l.Producer == "" {
		t.Fatalf("alice's entry %+v: a loud voice's level is high, with its producer", l)
	}
	// Nothing changes for a while: nothing is sent.
	time.Sleep(1500 * time.Millisecond)
	if c := heard.count(); c != next {
		t.Fatalf("activeSpeakers while nothing changed: %s", heard)
	}

	alice.level.Store(silence)
	bob.level.Store(loudVoice)
	next = heard.waitFor(t, next, bob.p.ID())
	late := &speakerLog{}
	if _, err := n.Join("r", "late", node.Grant{Subscribe: true}, false, late); err != nil {
		t.Fatal(err)
	}
	late.waitFor(t, 0, bob.p.ID())

	// Both speak, alice quietly: the loud one first.
	alice.level.Store(quietVoice)
	next = heard.waitFor(t, next, bob.p.ID()+","+alice.p.ID())

	alice.level.Store(silence)
	bob.level.Store(silence)
	heard.waitFor(t, next, "")
	heard.noRepeats(t)
	if got := metricSum(t, reg, "cascade_active_speakers_notifications_total", nil); got < float64(heard.count()+late.count()) {
		t.Fatalf("cascade_active_speakers_notifications_total %v, below the %d notifications heard", got, heard.count()+late.count())
	}
	t.Logf("listener heard %s", heard)
}
