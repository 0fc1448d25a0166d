package signal_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"
)

// httpResult is a response's status, JSON error code (if the body is one) and cookies.
type httpResult struct {
	status  int
	code    string
	body    string
	cookies []*http.Cookie
}

// request sends method url with Authorization: Bearer token (unless empty) and extra headers.
func request(t *testing.T, method, url, token string, hdr ...string) httpResult {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := httpResult{status: resp.StatusCode, body: string(b), cookies: resp.Cookies()}
	var e proto.Error
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Unmarshal(b, &e) == nil {
		r.code = e.Code
	}
	return r
}

func mint(t *testing.T, k auth.Keys, g auth.Grant, ttl time.Duration) string {
	t.Helper()
	tok, err := k.Mint(g, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDevTokenOnlyInDevMode: /token answers 404 unless the server is in development mode.
func TestDevTokenOnlyInDevMode(t *testing.T) {
	off := startNode(t, node.Options{Workers: 1}, nil)
	if r := request(t, http.MethodGet, off.http.URL+"/token?room=r&identity=i", ""); r.status != http.StatusNotFound {
		t.Errorf("/token without dev mode: %d %s, want 404", r.status, r.body)
	}
	on := startNode(t, node.Options{Workers: 1}, nil, func(o *signal.Options) { o.DevTokens = true })
	r := request(t, http.MethodGet, on.http.URL+"/token?room=r&identity=i", "")
	var v struct{ Token string }
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &v) != nil {
		t.Fatalf("/token in dev mode: %d %s", r.status, r.body)
	}
	if g, err := testKeys.Verify(v.Token); err != nil || g.Room != "r" || g.Identity != "i" || g.Admin {
		t.Errorf("dev token grant %+v, %v", g, err)
	}
}

// TestAdminEndpoints: each admin endpoint answers 401 without a token, with a forged or expired
// one and with the API secret itself, 403 with a token lacking the admin grant, and serves an
// admin token.
func TestAdminEndpoints(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1}, &clusterOpts{}, func(o *signal.Options) { o.Pprof = true })
	admin := adminToken(t)
	user := e.token("r", "alice", true, true)
	forged := mint(t, auth.Keys{Key: testKeys.Key, Secret: "another-secret-of-32-characters!"}, auth.Grant{Admin: true}, time.Minute)
	expired := mint(t, testKeys, auth.Grant{Admin: true}, -time.Hour)
	endpoints := []struct {
		method, path string
		ok           int
	}{
		{http.MethodGet, "/stats", http.StatusOK},
		{http.MethodGet, "/cluster?format=json", http.StatusOK},
		{http.MethodGet, "/debug/pprof/", http.StatusOK},
		{http.MethodGet, "/debug/pprof/symbol", http.StatusOK},
		{http.MethodPost, "/admin/drain", http.StatusAccepted}, // last: it drains
	}
	for _, ep := range endpoints {
		for _, c := range []struct {
			name, token string
			status      int
			code        string
		}{
			{"no token", "", http.StatusUnauthorized, proto.CodeUnauthorized},
			{"forged", forged, http.StatusUnauthorized, proto.CodeUnauthorized},
			{"api secret", testKeys.Secret, http.StatusUnauthorized, proto.CodeUnauthorized},
			{"expired", expired, http.StatusUnauthorized, proto.CodeTokenExpired},
			{"user token", user, http.StatusForbidden, proto.CodeForbidden},
			{"admin", admin, ep.ok, ""},
		} {
			r := request(t, ep.method, e.http.URL+ep.path, c.token)
			if r.status != c.status || r.code != c.code {
				t.Errorf("%s %s with %s: %d %q (%s), want %d %q", ep.method, ep.path, c.name, r.status, r.code,
					strings.TrimSpace(r.body), c.status, c.code)
			}
		}
	}
	if r := request(t, http.MethodGet, e.http.URL+"/readyz", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz after the admin drain: %d, want 503", r.status)
	}
	// /metrics stays open for Prometheus.
	if r := request(t, http.MethodGet, e.http.URL+"/metrics", ""); r.status != http.StatusOK {
		t.Errorf("/metrics: %d", r.status)
	}
}

// TestClusterPageToken: the /cluster page opened with ?token= sets a cookie that authorizes the
// page's own JSON fetches; a non-admin ?token= is refused.
func TestClusterPageToken(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1}, &clusterOpts{})
	if r := request(t, http.MethodGet, e.http.URL+"/cluster?token="+e.token("r", "a", true, true), "", "Accept", "text/html"); r.status != http.StatusForbidden {
		t.Errorf("page with a user token: %d", r.status)
	}
	page := request(t, http.MethodGet, e.http.URL+"/cluster?token="+adminToken(t), "", "Accept", "text/html")
	if page.status != http.StatusOK || !strings.Contains(page.body, "<html") {
		t.Fatalf("page with an admin token: %d %.80q", page.status, page.body)
	}
	var cookie *http.Cookie
	for _, c := range page.cookies {
		if c.Name == "cascade_admin" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/cluster" {
		t.Fatalf("page cookie %+v: want cascade_admin, HttpOnly, SameSite=Strict, Path=/cluster", cookie)
	}
	if r := request(t, http.MethodGet, e.http.URL+"/cluster?format=json", "", "Cookie", cookie.Name+"="+cookie.Value); r.status != http.StatusOK {
		t.Errorf("JSON with the page's cookie: %d %s", r.status, r.body)
	}
	if r := request(t, http.MethodGet, e.http.URL+"/stats", "", "Cookie", cookie.Name+"="+cookie.Value); r.status != http.StatusUnauthorized {
		t.Errorf("/stats with the /cluster cookie: %d, want 401 (the cookie is for /cluster only)", r.status)
	}
}

// TestSeparateMetrics: with a metrics listener, /metrics and pprof leave the main handler.
func TestSeparateMetrics(t *testing.T) {
	e := startNode(t, node.Options{Workers: 1}, nil, func(o *signal.Options) { o.SeparateMetrics, o.Pprof = true, true })
	if r := request(t, http.MethodGet, e.http.URL+"/metrics", ""); r.status != http.StatusNotFound {
		t.Errorf("/metrics on the main listener: %d, want 404", r.status)
	}
	if r := request(t, http.MethodGet, e.http.URL+"/debug/pprof/", adminToken(t)); r.status != http.StatusNotFound {
		t.Errorf("pprof on the main listener: %d, want 404", r.status)
	}
	m := httptest.NewServer(e.srv.MetricsHandler())
	defer m.Close()
	if r := request(t, http.MethodGet, m.URL+"/metrics", ""); r.status != http.StatusOK || !strings.Contains(r.body, "go_goroutines") && !strings.Contains(r.body, "cascade_") {
		t.Errorf("/metrics on the metrics listener: %d", r.status)
	}
	if r := request(t, http.MethodGet, m.URL+"/debug/pprof/", ""); r.status != http.StatusUnauthorized {
		t.Errorf("pprof without a token on the metrics listener: %d, want 401", r.status)
	}
	if r := request(t, http.MethodGet, m.URL+"/debug/pprof/", adminToken(t)); r.status != http.StatusOK {
		t.Errorf("pprof with an admin token on the metrics listener: %d", r.status)
	}
}

// whipPublish publishes a VP8 track over WHIP as identity and returns the resource URL.
func whipPublish(t *testing.T, e *env, room, identity string) string {
	t.Helper()
	pc, err := loopbackAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromTrack(newSource(t, webrtc.MimeTypeVP8, "v", identity).track,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	status, answer, loc := e.post("/whip/"+room, e.token(room, identity, true, false), "application/sdp", vp8pub.Offer(t, pc))
	if status != http.StatusCreated {
		t.Fatalf("whip: %d %s", status, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestWHIPDeleteNeedsItsToken: DELETE of a WHIP resource needs a token of this cluster for the
// session's room and identity (expired is fine) or an admin token.
func TestWHIPDeleteNeedsItsToken(t *testing.T) {
	e := newEnv(t, 1, 100)
	loc := whipPublish(t, e, "live", "obs")
	other := auth.Keys{Key: testKeys.Key, Secret: "another-secret-of-32-characters!"}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "obs", "room": "live",
		"publish": true, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", http.StatusUnauthorized, proto.CodeUnauthorized},
		{"another identity", mint(t, testKeys, auth.Grant{Room: "live", Identity: "mallory", Publish: true}, time.Minute), http.StatusForbidden, proto.CodeForbidden},
		{"another room", mint(t, testKeys, auth.Grant{Room: "other", Identity: "obs", Publish: true}, time.Minute), http.StatusForbidden, proto.CodeForbidden},
		{"another key pair", mint(t, other, auth.Grant{Room: "live", Identity: "obs", Publish: true}, time.Minute), http.StatusUnauthorized, proto.CodeUnauthorized},
		{"RS256", rs256, http.StatusUnauthorized, proto.CodeUnauthorized},
		{"expired admin", mint(t, testKeys, auth.Grant{Admin: true}, -time.Hour), http.StatusUnauthorized, proto.CodeTokenExpired},
	} {
		if r := request(t, http.MethodDelete, e.http.URL+loc, c.token); r.status != c.status || r.code != c.code {
			t.Errorf("DELETE with %s: %d %q (%s), want %d %q", c.name, r.status, r.code, strings.TrimSpace(r.body), c.status, c.code)
		}
	}
	if n := len(e.node.Room("live").Participants()); n != 1 {
		t.Fatalf("%d participants after refused DELETEs, want the publisher", n)
	}
	// The owner's token, expired an hour ago (a long broadcast), still stops it.
	expired := mint(t, testKeys, auth.Grant{Room: "live", Identity: "obs", Publish: true}, -time.Hour)
	if r := request(t, http.MethodDelete, e.http.URL+loc, expired); r.status != http.StatusOK {
		t.Fatalf("DELETE with the owner's expired token: %d %s", r.status, r.body)
	}
	// An admin token stops anyone's.
	loc2 := whipPublish(t, e, "live", "obs2")
	if r := request(t, http.MethodDelete, e.http.URL+loc2, adminToken(t)); r.status != http.StatusOK {
		t.Fatalf("DELETE with an admin token: %d %s", r.status, r.body)
	}
	checkFor(t, 5*time.Second, func() error {
		if s := e.node.Stats(); s.Participants != 0 {
			return fmt.Errorf("%d participants left", s.Participants)
		}
		return nil
	})
}

// wsJoin opens a raw WebSocket, sends a join with token and returns the response's error (nil on
// success) and the connection.
func wsJoin(t *testing.T, url, token string) (*proto.Error, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	b, _ := json.Marshal(map[string]any{"id": 1, "method": "join", "data": map[string]any{"token": token}})
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading the join response: %v", err)
		}
		var r proto.Response
		if json.Unmarshal(msg, &r) == nil && r.ID != nil {
			return r.Error, c
		}
	}
}

// TestHostileTokens: an oversized token and tokens signed with none or RS256 are refused at join
// with unauthorized, and the message says why.
func TestHostileTokens(t *testing.T) {
	e := newEnv(t, 1, 100)
	claims := jwt.MapClaims{"iss": testKeys.Key, "sub": "eve", "room": "r", "publish": true, "subscribe": true,
		"exp": time.Now().Add(time.Hour).Unix()}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	big := jwt.MapClaims{"pad": strings.Repeat("x", auth.MaxTokenLen)}
	for k, v := range claims {
		big[k] = v
	}
	oversized, err := jwt.NewWithClaims(jwt.SigningMethodHS256, big).SignedString([]byte(testKeys.Secret))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, token, msg string }{
		{"alg none", none, "signing method"},
		{"RS256", rs256, "signing method"},
		{"oversized", oversized, fmt.Sprintf("at most %d", auth.MaxTokenLen)},
	} {
		perr, _ := wsJoin(t, e.ws, c.token)
		if perr == nil || perr.Code != proto.CodeUnauthorized || !strings.Contains(perr.Message, c.msg) {
			t.Errorf("join with %s: %+v, want %s mentioning %q", c.name, perr, proto.CodeUnauthorized, c.msg)
		}
		if got, _, _ := e.post("/whip/r", c.token, "application/sdp", "v=0\r\n"); got != http.StatusUnauthorized {
			t.Errorf("WHIP with %s: %d, want 401", c.name, got)
		}
	}
	if s := e.node.Stats(); s.Participants != 0 {
		t.Errorf("%d participants joined with hostile tokens", s.Participants)
	}
}

// TestJoinDeadline: a socket that does not join in time is closed with 4008; one that joined
// stays, also past its token's expiry (expiry governs admission, not established sessions).
func TestJoinDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	e := startNode(t, node.Options{Workers: 1}, nil, func(o *signal.Options) { o.JoinDeadline = deadline })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	idle, _, err := websocket.Dial(ctx, e.ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.CloseNow()
	start := time.Now()
	_, _, err = idle.Read(ctx)
	if got := websocket.CloseStatus(err); got != signal.CloseJoinDeadline {
		t.Fatalf("idle socket ended with %v (status %d), want close %d", err, got, signal.CloseJoinDeadline)
	}
	if took := time.Since(start); took < deadline-50*time.Millisecond || took > 3*time.Second {
		t.Errorf("idle socket closed after %v, want about %v", took, deadline)
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) && !strings.Contains(ce.Reason, "join deadline") {
		t.Errorf("close reason %q", ce.Reason)
	}

	// Joined with a token that expires at once: the session outlives both the deadline and the
	// token.
	short := mint(t, testKeys, auth.Grant{Room: "r", Identity: "a", Publish: true, Subscribe: true}, time.Second)
	perr, joined := wsJoin(t, e.ws, short)
	if perr != nil {
		t.Fatalf("join: %+v", perr)
	}
	time.Sleep(auth.ClockSkew + 1500*time.Millisecond) // past the deadline and the token's exp, with skew
	if r := wsRequest(t, joined, "message", map[string]any{"data": "hi"}); !r.OK {
		t.Fatalf("request after the token expired: %+v", r.Error)
	}
	if n := len(e.node.Room("r").Participants()); n != 1 {
		t.Errorf("%d participants, want the joined session", n)
	}
	// A new join with the expired token is refused.
	if perr, _ := wsJoin(t, e.ws, short); perr == nil || perr.Code != proto.CodeTokenExpired {
		t.Errorf("join with the expired token: %+v, want %s", perr, proto.CodeTokenExpired)
	}
}

// TestHTTPTimeouts: with short timeouts, a slow request's headers are cut off, while a WebSocket
// lives on past every timeout.
func TestHTTPTimeouts(t *testing.T) {
	e := newEnv(t, 1, 100)
	to := signal.HTTPTimeouts{ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: 300 * time.Millisecond, Idle: 300 * time.Millisecond}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := to.Server(e.srv.Handler())
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// Slowloris: headers never finish.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(c) // the server closes (after a 408, or silently)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a request with unfinished headers held its connection %v", took)
	}

	// A joined WebSocket outlives the timeouts.
	ws := "ws://" + ln.Addr().String() + "/ws"
	perr, conn := wsJoin(t, ws, e.token("r", "a", true, true))
	if perr != nil {
		t.Fatalf("join: %+v", perr)
	}
	time.Sleep(time.Second)
	if r := wsRequest(t, conn, "message", map[string]any{"data": "hi"}); !r.OK {
		t.Fatalf("request after the HTTP timeouts: %+v", r.Error)
	}
}

// wsRequest sends a request on a joined raw WebSocket and returns its response.
func wsRequest(t *testing.T, c *websocket.Conn, method string, data any) proto.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, _ := json.Marshal(map[string]any{"id": 99, "method": method, "data": data})
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("the WebSocket was closed: %v", err)
	}
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("the WebSocket was closed: %v", err)
		}
		var r proto.Response
		if json.Unmarshal(msg, &r) == nil && r.ID != nil && r.ID.String() == "99" {
			return r
		}
	}
}
