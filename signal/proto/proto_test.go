package proto

import (
	"encoding/json"
	"testing"
)

// TestShapes pins the JSON of the messages PROTOCOL.md shows: the wire is a contract with
// cascade.js and every outside client.
func TestShapes(t *testing.T) {
	id := json.Number("7")
	auto := false
	for _, c := range []struct {
		v    any
		want string
	}{
		{Request{ID: &id, Method: MethodJoin, Data: json.RawMessage(`{"token":"t"}`)},
			`{"id":7,"method":"join","data":{"token":"t"}}`},
		{JoinData{Token: "t", AutoSubscribe: &auto, Region: "eu", NoRedirect: true},
			`{"token":"t","autoSubscribe":false,"region":"eu","noRedirect":true}`},
		{Response{ID: &id, OK: true, Data: JoinResult{Room: "r", Redirect: &Redirect{Node: "n2", URL: "ws://h:7880/ws"}}},
			`{"id":7,"ok":true,"data":{"participant":{"id":"","identity":"","joinedAt":0},"room":"r","participants":null,` +
				`"producers":null,"redirect":{"node":"n2","url":"ws://h:7880/ws"}}}`},
		{Response{ID: &id, Error: &Error{Code: CodeBadSDP, Message: "no codec"}},
			`{"id":7,"ok":false,"error":{"code":"bad_sdp","message":"no codec"}}`},
		{PublishResult{SDP: "v=0", Producers: []Producer{{ID: "v1", Participant: "p1", Kind: "video", Mid: "0"}}},
			`{"sdp":"v=0","producers":[{"id":"v1","participant":"p1","kind":"video","mid":"0","muted":false}]}`},
		{Notification{Method: MethodProducerAdded, Data: Producer{ID: "a1", Participant: "p1", Kind: "audio",
			Codec: "audio/opus", ClockRate: 48000, Channels: 2}},
			`{"method":"producerAdded","data":{"id":"a1","participant":"p1","kind":"audio","codec":"audio/opus",` +
				`"muted":false,"clockRate":48000,"channels":2}}`},
		{Notification{Method: MethodParticipantJoined, Data: Participant{ID: "p1", Identity: "alice", JoinedAt: 5}},
			`{"method":"participantJoined","data":{"id":"p1","identity":"alice","joinedAt":5}}`},
		{ProducerRemoved{ID: "v1", Participant: "p1"}, `{"id":"v1","participant":"p1"}`},
		{ProducerMuted{ID: "v1", Muted: true}, `{"id":"v1","muted":true}`},
		{ParticipantLeft{ID: "p1"}, `{"id":"p1"}`},
		{Message{From: "p1", Identity: "alice", Data: json.RawMessage(`{"text":"hi"}`)},
			`{"from":"p1","identity":"alice","data":{"text":"hi"}}`},
		{Closed{Reason: "replaced"}, `{"reason":"replaced"}`},
		{MuteData{Producer: "v1", Muted: true}, `{"producer":"v1","muted":true}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T: got %s (%v), want %s", c.v, b, err, c.want)
		}
	}

	// The browser's RTCIceCandidateInit, as PROTOCOL.md shows it.
	var tr TrickleData
	in := `{"transport":"recv","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`
	if err := json.Unmarshal([]byte(in), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Transport != TransportRecv || tr.Candidate.SDPMid == nil || *tr.Candidate.SDPMid != "0" ||
		tr.Candidate.SDPMLineIndex == nil || *tr.Candidate.SDPMLineIndex != 0 || tr.Candidate.UsernameFragment != nil {
		t.Errorf("decoded %+v", tr)
	}
	if b, _ := json.Marshal(tr); string(b) != in {
		t.Errorf("trickle round trip: %s", b)
	}
}
