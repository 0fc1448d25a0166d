package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/webhook"
)

// testKey is a key in the Standard Webhooks form; testKeyBytes is what it decodes to.
const testKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var testKeyBytes, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(testKey, "whsec_"))

// call is one request a receiver got.
type call struct {
	id, ts, sig string
	body        []byte
	ev          webhook.Event
	status      int
}

// receiver is a real HTTP server taking webhook calls: it checks each one's signature with a
// check of its own (not webhook.Sign), answers answer(n) for the n-th call (0-based), and
// keeps every call and the events it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	calls    []call
	accepted []webhook.Event
	bad      []string // why calls were refused
	answer   func(n int) int
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	r := &receiver{t: t, answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	c := call{id: req.Header.Get("webhook-id"), ts: req.Header.Get("webhook-timestamp"), sig: req.Header.Get("webhook-signature"), body: body}
	why := verify(c, time.Now())
	if why == "" {
		if err := json.Unmarshal(body, &c.ev); err != nil {
			why = "body: " + err.Error()
		} else if c.ev.ID != c.id {
			why = fmt.Sprintf("body id %s, header id %s", c.ev.ID, c.id)
		}
	}
	r.mu.Lock()
	n := len(r.calls)
	c.status = http.StatusOK
	if r.answer != nil {
		c.status = r.answer(n)
	}
	if why != "" {
		c.status = http.StatusUnauthorized
		r.bad = append(r.bad, why)
	}
	r.calls = append(r.calls, c)
	if c.status/100 == 2 {
		r.accepted = append(r.accepted, c.ev)
	}
	r.mu.Unlock()
	w.WriteHeader(c.status)
}

// verify is the receiver's own check of a call, as docs/WEBHOOKS.md tells receivers to make it:
// HMAC-SHA256 of "id.timestamp.body" under the decoded key, base64, after "v1,", and a
// timestamp within five minutes. It returns why the call is refused ("" when it is not).
func verify(c call, now time.Time) string {
	if c.id == "" || c.ts == "" || c.sig == "" {
		return "missing header"
	}
	ts, err := strconv.ParseInt(c.ts, 10, 64)
	if err != nil || now.Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return "bad timestamp " + c.ts
	}
	mac := hmac.New(sha256.New, testKeyBytes)
	mac.Write([]byte(c.id + "." + c.ts + "." + string(c.body)))
	want := mac.Sum(nil)
	for _, s := range strings.Fields(c.sig) {
		v, b64, _ := strings.Cut(s, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if v == "v1" && err == nil && hmac.Equal(got, want) {
			return ""
		}
	}
	return "bad signature " + c.sig
}

// events is what the receiver accepted so far.
func (r *receiver) events() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.accepted...)
}

// allCalls is every call so far.
func (r *receiver) allCalls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// noneRefused fails the test if a call did not pass the receiver's check.
func (r *receiver) noneRefused() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		r.t.Fatalf("calls refused by the receiver: %v", r.bad)
	}
}

func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httptestServerAt starts r's server on addr (a receiver coming back where it was).
func httptestServerAt(t *testing.T, addr string, r *receiver) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(r.serve)}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
