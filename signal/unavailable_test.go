package signal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// cutOff is the placement of a node that cannot reach the rest of its cluster: it serves only
// the room open on it.
type cutOff struct{}

func (cutOff) Place(string, string, ...string) (string, string, bool)      { return "", "", false }
func (cutOff) Alternatives(string, string, int, ...string) []proto.NodeURL { return nil }
func (cutOff) Available(room string) bool                                  { return room == "open" }

// TestJoinClusterUnavailable: a node cut off from its cluster answers a join it cannot serve
// alone at once with cluster_unavailable, over WebSocket and WHIP/WHEP (503, Retry-After),
// and still serves the room it can.
func TestJoinClusterUnavailable(t *testing.T) {
	n, err := node.New(node.Options{LoopbackOnly: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := signal.NewServer(n, signal.Options{Keys: testKeys, Placement: cutOff{}})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ws := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	token := func(room string, publish bool) string {
		tok, err := testKeys.Mint(auth.Grant{Room: room, Identity: "who", Publish: publish, Subscribe: !publish}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	start := time.Now()
	_, err = client.Dial(context.Background(), ws, client.Options{Token: token("elsewhere", false), LoopbackOnly: true})
	var perr *proto.Error
	if !errors.As(err, &perr) || perr.Code != proto.CodeClusterUnavailable {
		t.Fatalf("join of a room the node cannot serve alone: %v, want %s", err, proto.CodeClusterUnavailable)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
	c, err := client.Dial(context.Background(), ws, client.Options{Token: token("open", false), LoopbackOnly: true})
	if err != nil {
		t.Fatalf("join of the room the node serves: %v", err)
	}
	c.Close()

	for _, kind := range []string{"whip", "whep"} {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/"+kind+"/elsewhere", strings.NewReader("v=0\r\n"))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+token("elsewhere", kind == "whip"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), proto.CodeClusterUnavailable) {
			t.Fatalf("%s: %s, Retry-After %q, %q", kind, resp.Status, resp.Header.Get("Retry-After"), body)
		}
	}
}

// TestLongNamesRefused: a valid token for a room or identity longer than proto.MaxName is
// refused with bad_request (WHIP: 400), and the node serves the next client as before.
func TestLongNamesRefused(t *testing.T) {
	e := newEnv(t, 1, 0)
	long := strings.Repeat("r", proto.MaxName+1)
	for _, c := range []struct{ room, identity string }{{long, "who"}, {"r", long}} {
		r := e.raw()
		r.expect(fmt.Sprintf(`{"id":1,"method":"join","data":{"token":%q}}`, e.token(c.room, c.identity, false, true)), proto.CodeBadRequest)
	}
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/whip/"+long, strings.NewReader("v=0\r\n"))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+e.token(long, "enc", true, false))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("WHIP with a long room name: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	ok, err := client.Dial(context.Background(), e.ws, client.Options{Token: e.token(strings.Repeat("r", proto.MaxName), "who", false, true), LoopbackOnly: true})
	if err != nil {
		t.Fatalf("a room name of exactly %d bytes: %v", proto.MaxName, err)
	}
	ok.Close()
}
