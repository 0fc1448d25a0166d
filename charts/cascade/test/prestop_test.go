package test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeNode answers what the preStop hook asks of a node: POST /admin/drain and GET /stats, both
// with an admin token signed with the API secret.
type fakeNode struct {
	secret       string
	participants atomic.Int64
	mu           sync.Mutex
	drains       []string // Authorization headers of drain requests
	srv          *httptest.Server
}

func newFakeNode(t *testing.T, secret string, participants int64) *fakeNode {
	f := &fakeNode{secret: secret}
	f.participants.Store(participants)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/drain", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.drains = append(f.drains, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if !adminBearer(r.Header.Get("Authorization"), f.secret) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		if !adminBearer(r.Header.Get("Authorization"), f.secret) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		// The shape of the node's /stats (json.Encoder, no spaces).
		fmt.Fprintf(w, `{"id":"cascade-0","draining":true,"rooms":1,"participants":%d,"producers":0,"consumers":0,"workers":[],"uptime_s":9}`+"\n", f.participants.Load())
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNode) port(t *testing.T) int {
	_, p, err := net.SplitHostPort(f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// runPreStop renders the chart for the fake node's port and runs the preStop hook as the kubelet
// would (its exec command, in the container's environment), returning how long it took.
func runPreStop(t *testing.T, f *fakeNode, drainSeconds int) time.Duration {
	t.Helper()
	return runPreStopAt(t, f.port(t), f.secret, drainSeconds)
}

func runPreStopAt(t *testing.T, httpPort int, secret string, drainSeconds int) time.Duration {
	t.Helper()
	r := render(t, renderOpts{set: []string{
		fmt.Sprintf("node.httpPort=%d", httpPort),
		fmt.Sprintf("drain.timeoutSeconds=%d", drainSeconds),
		"drain.busybox=" + busyboxShim(t),
		"drain.cascade=" + cascadeBinary(t),
		"auth.apiKey=" + preStopKey,
		"auth.apiSecret=" + secret,
	}})
	_, _, tpl := r.workload(t)
	c := container(t, &tpl.Spec, "cascade")
	cmd := c.Lifecycle.PreStop.Exec.Command
	run := exec.Command(cmd[0], cmd[1:]...)
	run.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range r.podEnv(t, c, "cascade-0") {
		run.Env = append(run.Env, k+"="+v)
	}
	start := time.Now()
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("preStop hook failed: %v\n%s", err, out)
	}
	return time.Since(start)
}

func (f *fakeNode) checkDrained(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.drains) != 1 || !adminBearer(f.drains[0], f.secret) {
		t.Errorf("drain requests %q, want one with an admin token", f.drains)
	}
}

// preStopKey is the API key of the rendered Secret in the preStop tests.
const preStopKey = "prestop-key"

// adminBearer tells whether an Authorization header carries a Cascade admin token: an HS256 JWT
// signed with secret, issued by preStopKey, with "admin": true and an exp in the future. (The
// chart's test module does not import the product: it checks the token as documented.)
func adminBearer(header, secret string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 || tok == secret {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	var h struct{ Alg string }
	var c struct {
		Iss   string
		Admin bool
		Exp   int64
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || json.Unmarshal(hb, &h) != nil || json.Unmarshal(cb, &c) != nil {
		return false
	}
	return h.Alg == "HS256" && c.Iss == preStopKey && c.Admin && c.Exp > time.Now().Unix()
}

func TestPreStopDrainsThenWaitsForTheLastParticipant(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, "prestop-secret-0123456789", 3)
	time.AfterFunc(1500*time.Millisecond, func() { f.participants.Store(0) })
	took := runPreStop(t, f, 30)
	f.checkDrained(t)
	if took < time.Second || took > 10*time.Second {
		t.Errorf("hook took %v: want it to end soon after the last participant left (~1.5 s)", took)
	}
}

func TestPreStopEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, "prestop-secret-0123456789", 2)
	took := runPreStop(t, f, 3)
	f.checkDrained(t)
	if took < 2*time.Second || took > 8*time.Second {
		t.Errorf("hook took %v with participants left: want the 3 s deadline", took)
	}
}

func TestPreStopEndsWhenTheNodeIsGone(t *testing.T) {
	t.Parallel()
	f := newFakeNode(t, "prestop-secret-0123456789", 5)
	time.AfterFunc(1200*time.Millisecond, f.srv.Close)
	took := runPreStop(t, f, 30)
	f.checkDrained(t)
	if took > 10*time.Second {
		t.Errorf("hook took %v after the node exited", took)
	}
}

// TestPreStopAgainstTheNode runs the hook against a real `cascade node`: the node accepts the
// drain request (the API secret from the Secret), fails readiness, and the idle node lets the
// hook end at once.
func TestPreStopAgainstTheNode(t *testing.T) {
	t.Parallel()
	bin := cascadeBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	const secret = "node-secret-0123456789abcdef"
	node := exec.Command(bin, "node", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--udp-port", "0", "--tcp-port", "0",
		"--relay", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--loopback-only", "--workers", "1",
		"--api-key", preStopKey, "--api-secret", secret, "--drain-timeout", "5s", "--log-level", "warn")
	node.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
	var logs safeBuffer
	node.Stdout, node.Stderr = &logs, &logs
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	t.Cleanup(func() {
		_ = node.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = node.Process.Kill()
			t.Errorf("the node did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	status := func(path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(20 * time.Second)
	for status("/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := runPreStopAt(t, httpPort, secret, 30)
	if took > 5*time.Second {
		t.Errorf("hook took %v on an idle node", took)
	}
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("after the hook /readyz = %d, want 503 (draining)", got)
	}
}

// safeBuffer is a bytes.Buffer for a child process's output, read by the test.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
