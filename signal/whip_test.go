package signal_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

func loopbackAPI(t *testing.T) *webrtc.API {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// post sends an SDP offer to a WHIP or WHEP endpoint and returns the status, body and Location.
func (e *env) post(path, token, contentType, body string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// do sends a bodyless request, with Authorization: Bearer token unless token is empty.
func (e *env) do(method, path, token string) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWHIPInWHEPOut(t *testing.T) {
	e := newEnv(t, 2, 100)
	api := loopbackAPI(t)

	// WHIP: an encoder publishes video and audio.
	enc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, s := range []*source{newSource(t, webrtc.MimeTypeVP8, "v", "obs"), newSource(t, webrtc.MimeTypeOpus, "a", "obs")} {
		if _, err := enc.AddTransceiverFromTrack(s.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	obsTok := e.token("live", "obs", true, false)
	status, answer, loc := e.post("/whip/live", obsTok, "application/sdp", vp8pub.Offer(t, enc))
	if status != http.StatusCreated || !strings.HasPrefix(loc, "/whip/live/") {
		t.Fatalf("whip: %d %q %s", status, loc, answer)
	}
	if err := enc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := len(e.node.Room("live").Producers()); n != 2 {
			return fmt.Errorf("%d live producers", n)
		}
		return nil
	})

	// A WebSocket viewer sees the WHIP publisher like any other.
	ws := e.join("live", "ws-viewer", false, true)
	for _, p := range e.node.Room("live").Producers() {
		waitPackets(t, ws, p.ID)
	}

	// WHEP: a player watches.
	player, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer player.Close()
	var video, audio atomic.Int64
	player.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		ctr := &audio
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			ctr = &video
		}
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			ctr.Add(1)
		}
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := player.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	playerTok := e.token("live", "player", false, true)
	status, answer, wloc := e.post("/whep/live", playerTok, "application/sdp", vp8pub.Offer(t, player))
	if status != http.StatusCreated || !strings.HasPrefix(wloc, "/whep/live/") {
		t.Fatalf("whep: %d %q %s", status, wloc, answer)
	}
	if err := player.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if video.Load() < 10 || audio.Load() < 10 {
			return fmt.Errorf("whep player got %d video, %d audio packets", video.Load(), audio.Load())
		}
		return nil
	})

	// Trickle is not supported; DELETE ends the sessions; a second DELETE is 404.
	if s := e.do(http.MethodPatch, wloc, playerTok); s != http.StatusMethodNotAllowed {
		t.Fatalf("PATCH: %d", s)
	}
	if s := e.do(http.MethodDelete, wloc, playerTok); s != http.StatusOK {
		t.Fatalf("DELETE whep: %d", s)
	}
	if s := e.do(http.MethodDelete, wloc, playerTok); s != http.StatusNotFound {
		t.Fatalf("second DELETE whep: %d", s)
	}
	if s := e.do(http.MethodDelete, loc, obsTok); s != http.StatusOK {
		t.Fatalf("DELETE whip: %d", s)
	}
	checkFor(t, 5*time.Second, func() error {
		if !ws.hasNote("producerRemoved", "") {
			return fmt.Errorf("viewer not told the WHIP producers ended")
		}
		if s := e.node.Stats(); s.Producers != 0 || s.Consumers != 0 {
			return fmt.Errorf("left over: %d producers, %d consumers", s.Producers, s.Consumers)
		}
		return nil
	})
}

func TestWHIPBadInput(t *testing.T) {
	e := newEnv(t, 1, 100)
	api := loopbackAPI(t)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer := vp8pub.Offer(t, pc)
	pubTok := e.token("room", "enc", true, false)
	subTok := e.token("room", "viewer", false, true)
	for _, c := range []struct {
		name, path, token, ctype, body string
		want                           int
	}{
		{"no token", "/whip/room", "", "application/sdp", offer, http.StatusUnauthorized},
		{"garbage token", "/whip/room", "xyz", "application/sdp", offer, http.StatusUnauthorized},
		{"wrong room", "/whip/other", pubTok, "application/sdp", offer, http.StatusForbidden},
		{"no publish grant", "/whip/room", subTok, "application/sdp", offer, http.StatusForbidden},
		{"no subscribe grant", "/whep/room", pubTok, "application/sdp", offer, http.StatusForbidden},
		{"content type", "/whip/room", pubTok, "text/plain", offer, http.StatusUnsupportedMediaType},
		{"bad sdp", "/whip/room", pubTok, "application/sdp", "v=0\r\nnonsense", http.StatusBadRequest},
		{"too large", "/whip/room", pubTok, "application/sdp", strings.Repeat("a", 70000), http.StatusRequestEntityTooLarge},
		{"whep with no producer", "/whep/room", subTok, "application/sdp", offer, http.StatusNotFound},
	} {
		if got, body, _ := e.post(c.path, c.token, c.ctype, c.body); got != c.want {
			t.Errorf("%s: status %d (%s), want %d", c.name, got, strings.TrimSpace(body), c.want)
		}
	}
	if s := e.do(http.MethodDelete, "/whip/room/nope", pubTok); s != http.StatusNotFound {
		t.Errorf("DELETE unknown: %d", s)
	}
	if s := e.do(http.MethodDelete, "/whip/room/nope", ""); s != http.StatusUnauthorized {
		t.Errorf("DELETE unknown without a token: %d, want 401 before the lookup", s)
	}
	checkFor(t, 5*time.Second, func() error {
		if s := e.node.Stats(); s.Participants != 0 {
			return fmt.Errorf("%d participants left behind by failed requests", s.Participants)
		}
		return nil
	})
}
