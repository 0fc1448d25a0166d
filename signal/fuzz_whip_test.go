package signal_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// fuzzSDP makes the seeds: a browser-like offer to publish video and audio, and a function
// answering an offer of the node's (as a subscriber does).
func fuzzSDP(tb testing.TB) (offer string, answerFor func(string) (string, error)) {
	offer = localOffer(tb, webrtc.RTPTransceiverDirectionSendonly)
	answerFor = func(o string) (string, error) {
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return "", err
		}
		defer pc.Close()
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o}); err != nil {
			return "", err
		}
		a, err := pc.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		if err := pc.SetLocalDescription(a); err != nil {
			return "", err
		}
		return pc.LocalDescription().SDP, nil
	}
	return offer, answerFor
}

// localOffer is pion's offer for a video and an audio transceiver of direction dir.
func localOffer(tb testing.TB, dir webrtc.RTPTransceiverDirection) string {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			tb.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return o.SDP
}

var whipLocation = regexp.MustCompile(`^/(whip|whep)/` + fuzzRoom + `/[^/]+$`)

// FuzzWHIP posts the fuzzer's body to the real WHIP (publish) and WHEP (watch) handler, with
// a valid token. The node either refuses it with a client error and no participant left
// behind, or creates a resource: 201, application/sdp, a Location under the room, an answer
// that parses as SDP; deleting that resource (with the same token) leaves no participant.
func FuzzWHIP(f *testing.F) {
	f.Add(false, localOffer(f, webrtc.RTPTransceiverDirectionSendonly))
	f.Add(true, localOffer(f, webrtc.RTPTransceiverDirectionRecvonly))
	f.Add(false, "v=0\r\n")
	f.Add(true, "")
	fn := newFuzzNode(f)
	base := fn.n.Stats().Participants
	f.Fuzz(func(t *testing.T, whep bool, body string) {
		kind, tok := "whip", fn.token("w", true, false)
		if whep {
			kind, tok = "whep", fn.token("w", false, true)
		}
		req := httptest.NewRequest(http.MethodPost, "/"+kind+"/"+fuzzRoom, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		fn.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			if rec.Code < 400 || rec.Code >= 500 {
				t.Fatalf("%s refused with %d (want a 4xx): %s", kind, rec.Code, rec.Body)
			}
			fn.participants(t, base, "after a refused "+kind)
			return
		}
		loc := rec.Header().Get("Location")
		var desc sdp.SessionDescription
		if !whipLocation.MatchString(loc) || rec.Header().Get("Content-Type") != "application/sdp" || desc.UnmarshalString(rec.Body.String()) != nil {
			t.Fatalf("%s created %q (%s) with an answer that is not SDP: %q", kind, loc, rec.Header().Get("Content-Type"), rec.Body)
		}
		del := httptest.NewRequest(http.MethodDelete, loc, nil)
		del.Header.Set("Authorization", "Bearer "+tok)
		rec = httptest.NewRecorder()
		fn.handler.ServeHTTP(rec, del)
		if rec.Code/100 != 2 {
			t.Fatalf("DELETE %s: %d %s", loc, rec.Code, rec.Body)
		}
		fn.participants(t, base, "after DELETE "+loc)
	})
}
