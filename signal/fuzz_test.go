package signal

import (
	"encoding/json"
	"testing"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
)

// FuzzFrame feeds arbitrary frames to a session that has not joined: every frame must get
// exactly one well-formed response (or close the session), and nothing may panic.
func FuzzFrame(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"method":"join","data":{"token":"a.b.c"}}`,
		`{"id":1,"method":"publish","data":{"sdp":"v=0"}}`,
		`{"id":"x","method":"trickle"}`, `{"id":1e999}`, `[]`, `null`, `{`, ``,
		`{"id":1,"method":"message","data":{"data":{"a":[1,2,{"b":null}]}}}`,
	} {
		f.Add(s)
	}
	srv := NewServer(nil, Options{})
	f.Fuzz(func(t *testing.T, frame string) {
		s := newSession(srv, nil)
		s.limiter.SetBurst(1 << 30)
		s.frame(websocket.MessageText, []byte(frame))
		if q := s.queued(); len(q) > 0 {
			b := q[0]
			var r proto.Response
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("response is not JSON: %q", b)
			}
			if r.OK || r.Error == nil || r.Error.Code == "" {
				t.Fatalf("frame %q: expected an error response, got %s", frame, b)
			}
		} else {
			t.Fatalf("frame %q: no response", frame)
		}
	})
}
