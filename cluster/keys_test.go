package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/hashicorp/go-hclog"
)

var (
	secretOld   = Secrets{"cascade-test-secret-old-0123456789abcdef"}
	secretNew   = Secrets{"cascade-test-secret-new-0123456789abcdef"}
	secretWrong = Secrets{"cascade-test-secret-wrong-0123456789abcd"}
)

// skewClock is the wall clock shifted by d.
type skewClock struct{ d time.Duration }

func (c skewClock) Now() time.Time { return time.Now().Add(c.d) }

func mustKeys(t testing.TB, id string, s Secrets) *NodeKeys {
	t.Helper()
	k, err := NewNodeKeys(id, NewIncarnation(), time.Now(), s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed seals a heartbeat of k's node with k, at clock.
func signed(t testing.TB, k *NodeKeys, clock Clock) []byte {
	t.Helper()
	b, err := NewSigningStamper(k, clock).Seal(typeHeartbeat, node.Stats{ID: k.Cert().Node, HTTPURL: "http://evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verify(v *Verifier, b []byte) error {
	e, err := Open(b)
	if err != nil {
		return err
	}
	return v.Verify(&e)
}

// TestVerify: a signed envelope verifies (twice: the second time from the cert cache), and each
// forgery is refused with its own error: no signature, a cert vouched for by another secret, a
// tampered body, type or sequence number, a cert of another node than the envelope's, a time
// outside the freshness window either way.
func TestVerify(t *testing.T) {
	v := NewVerifier(secretOld, WallClock{})
	k := mustKeys(t, "n1", secretOld)
	good := signed(t, k, WallClock{})
	for i := 0; i < 2; i++ {
		if err := verify(v, good); err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	tamper := func(f func(e *Envelope)) []byte {
		e, err := Open(good)
		if err != nil {
			t.Fatal(err)
		}
		f(&e)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unsigned, _ := NewStamper("n1", k.Cert().Inc, WallClock{}).Seal(typeHeartbeat, node.Stats{ID: "n1"})
	tooMany := func() []byte { // a valid voucher behind junk ones, of keys not seen before
		e, err := Open(signed(t, mustKeys(t, "n3", secretOld), WallClock{}))
		if err != nil {
			t.Fatal(err)
		}
		e.Cert.Vouchers = append(make([][]byte, maxVouchers), e.Cert.Vouchers...)
		b, _ := json.Marshal(e)
		return b
	}()
	other := mustKeys(t, "n2", secretOld)
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"unsigned", unsigned, ErrUnsigned},
		{"wrong secret", signed(t, mustKeys(t, "n1", secretWrong), WallClock{}), ErrVoucher},
		{"body", tamper(func(e *Envelope) { e.Body = []byte(`{"id":"n1","http_url":"http://other.example"}`) }), ErrSignature},
		{"type", tamper(func(e *Envelope) { e.Type = typePipe }), ErrSignature},
		{"seq", tamper(func(e *Envelope) { e.Seq++ }), ErrSignature},
		{"time", tamper(func(e *Envelope) { e.Time++ }), ErrSignature},
		{"signature", tamper(func(e *Envelope) { e.Sig[0] ^= 1 }), ErrSignature},
		{"keys swapped", tamper(func(e *Envelope) { c := *e.Cert; c.Sign = other.Cert().Sign; e.Cert = &c }), ErrVoucher},
		{"too many vouchers", tooMany, ErrVoucher},
		{"cert of another node", tamper(func(e *Envelope) { e.Node = "n2" }), ErrCertMismatch},
		{"cert of another incarnation", tamper(func(e *Envelope) { e.Inc = "x" }), ErrCertMismatch},
		{"too old", signed(t, k, skewClock{-Freshness - 5*time.Second}), ErrTime},
		{"from the future", signed(t, k, skewClock{Freshness + 5*time.Second}), ErrTime},
	} {
		if err := verify(v, c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if err := verify(v, signed(t, k, skewClock{-Freshness + 5*time.Second})); err != nil {
		t.Fatalf("a message within the freshness window (clock skew): %v", err)
	}
}

// TestVerifyRotation: during a rotation a node holding [new, old] and one still holding [old]
// accept each other's certs, as do [new, old] and [new]; [new] and [old] do not.
func TestVerifyRotation(t *testing.T) {
	both := Secrets{secretNew[0], secretOld[0]}
	for _, c := range []struct {
		signer, verifier Secrets
		ok               bool
	}{
		{both, secretOld, true}, {secretOld, both, true},
		{both, secretNew, true}, {secretNew, both, true},
		{Secrets{secretOld[0], secretNew[0]}, secretNew, true},
		{secretNew, secretOld, false}, {secretOld, secretNew, false},
	} {
		err := verify(NewVerifier(c.verifier, WallClock{}), signed(t, mustKeys(t, "n1", c.signer), WallClock{}))
		if (err == nil) != c.ok {
			t.Errorf("signed with %d secrets, verified with %d: %v, want ok=%v", len(c.signer), len(c.verifier), err, c.ok)
		}
	}
}

// TestSeal: a sealed body opens for its recipient only, for the type, sender and binding it was
// sealed with, and not once tampered with; the plain text is nowhere in it.
func TestSeal(t *testing.T) {
	a, b := mustKeys(t, "a", secretOld), mustKeys(t, "b", secretOld)
	plain := []byte(`{"key":"c2VjcmV0LWxpbmsta2V5"}`)
	ac, bc := a.Cert(), b.Cert()
	s, err := a.SealTo(&bc, typePipe, pipeBind(7), plain)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(s); bytes.Contains(raw, []byte("c2VjcmV0")) || bytes.Contains(s.Box, plain[:8]) {
		t.Fatalf("plain text readable in %s", raw)
	}
	got, err := b.OpenFrom(&ac, typePipe, pipeBind(7), s)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	c := mustKeys(t, "b", secretOld) // b restarted: another incarnation, other keys
	cc := c.Cert()
	tampered := s
	tampered.Box = append([]byte(nil), s.Box...)
	tampered.Box[3] ^= 1
	for name, f := range map[string]func() ([]byte, error){
		"another incarnation": func() ([]byte, error) { return c.OpenFrom(&ac, typePipe, pipeBind(7), s) },
		"another type":        func() ([]byte, error) { return b.OpenFrom(&ac, typePipeReply, pipeBind(7), s) },
		"another binding":     func() ([]byte, error) { return b.OpenFrom(&ac, typePipe, pipeBind(8), s) },
		"another sender":      func() ([]byte, error) { return b.OpenFrom(&cc, typePipe, pipeBind(7), s) },
		"tampered":            func() ([]byte, error) { return b.OpenFrom(&ac, typePipe, pipeBind(7), tampered) },
	} {
		if _, err := f(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: %v, want ErrSealed", name, err)
		}
	}
}

// TestRejectsLogged: a flood of refused messages is counted by reason, each one, and logged
// once per interval; duplicates (NATS redelivers) are counted, never logged.
func TestRejectsLogged(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	r := &rejects{clock: clock, log: hclog.New(&hclog.LoggerOptions{Output: &out})}
	for i := 0; i < 1000; i++ {
		r.add(rejVoucher, "evil")
		r.add(rejDuplicate, "n2")
	}
	if n := strings.Count(out.String(), "refused control messages"); n != 1 {
		t.Fatalf("%d log lines for 1000 refusals in one interval:\n%s", n, out.String())
	}
	clock.advance(rejectLogInterval)
	r.add(rejSignature, "evil")
	if n := strings.Count(out.String(), "refused control messages"); n != 2 || !strings.Contains(out.String(), "refused_since_last_log=1000") {
		t.Fatalf("after an interval:\n%s", out.String())
	}
	if c := r.counts(); c["voucher"] != 1000 || c["duplicate"] != 1000 || c["signature"] != 1 || c["malformed"] != 0 {
		t.Fatalf("counts %v", c)
	}
}

// BenchmarkSignVerify is the per-message cost of the signature: one node seals a room event
// (a chat message of 100 bytes), another opens and verifies it (cert from the cache).
func BenchmarkSignVerify(b *testing.B) {
	k := mustKeys(b, "n1", secretOld)
	s := NewSigningStamper(k, WallClock{})
	v := NewVerifier(secretOld, WallClock{})
	body := messageBody{From: "PA_0123456789", Identity: "alice", Data: json.RawMessage(`"` + string(bytes.Repeat([]byte("x"), 100)) + `"`)}
	b.ReportAllocs()
	var size int
	defer cpuPerOp(b)()
	for b.Loop() {
		raw, err := s.Seal(evMessage, body)
		if err != nil {
			b.Fatal(err)
		}
		if err := verify(v, raw); err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.ReportMetric(float64(size), "bytes/msg")
}

// BenchmarkVerify is the receiver's part alone: open and verify (cert from the cache).
func BenchmarkVerify(b *testing.B) {
	k := mustKeys(b, "n1", secretOld)
	v := NewVerifier(secretOld, WallClock{})
	raw, err := NewSigningStamper(k, WallClock{}).Seal(evMessage, messageBody{From: "PA_0123456789", Identity: "alice", Data: json.RawMessage(`"hello"`)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		if err := verify(v, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealUnsigned is the same round trip without signature, for comparison.
func BenchmarkSealUnsigned(b *testing.B) {
	s := NewStamper("n1", "inc", WallClock{})
	body := messageBody{From: "PA_0123456789", Identity: "alice", Data: json.RawMessage(`"` + string(bytes.Repeat([]byte("x"), 100)) + `"`)}
	b.ReportAllocs()
	var size int
	defer cpuPerOp(b)()
	for b.Loop() {
		raw, err := s.Seal(evMessage, body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(raw); err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.ReportMetric(float64(size), "bytes/msg")
}

// cpuPerOp starts measuring the benchmark goroutine's thread CPU time; the function it returns
// reports it per operation (cpu-ns/op), the figure to compare on a machine shared with other
// work, where ns/op counts the waits for a core too.
func cpuPerOp(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		if used := threadCPU() - start; start > 0 && b.N > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
		runtime.UnlockOSThread()
	}
}
