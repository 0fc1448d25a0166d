package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/hashicorp/go-hclog"
)

type nopListener struct{}

func (nopListener) Notify(string, any) {}

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWaitDrained: the shutdown waits until the node has no participant, or until the deadline
// of the drain that began first (not a fresh --drain-timeout from the SIGTERM), and says which.
func TestWaitDrained(t *testing.T) {
	n, err := node.New(node.Options{Workers: 1, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	const timeout = 700 * time.Millisecond
	srv := signal.NewServer(n, signal.Options{DrainTimeout: timeout})
	defer srv.Close()
	p, err := n.Join("r", "stays", node.Grant{Subscribe: true}, false, nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var out syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out})
	srv.Drain() // the preStop hook's POST /admin/drain
	first := srv.DrainDeadline()
	if first.IsZero() {
		t.Fatal("no drain deadline after Drain")
	}
	time.Sleep(timeout / 2)
	srv.Drain() // SIGTERM: the deadline stays the first drain's
	if got := srv.DrainDeadline(); !got.Equal(first) {
		t.Fatalf("a second drain moved the deadline from %v to %v", first, got)
	}
	waitDrained(srv, n, log)
	if time.Now().Before(first) {
		t.Fatalf("returned before the drain deadline %v with a participant left", first)
	}
	if !strings.Contains(out.String(), "drain deadline passed") || !strings.Contains(out.String(), "participants=1") {
		t.Fatalf("log %q, want the deadline and the participant left", out.String())
	}

	// No participant left: it returns at once and says so.
	p.Close()
	out = syncBuffer{}
	waitDrained(srv, n, log)
	if !strings.Contains(out.String(), "drained") || strings.Contains(out.String(), "deadline passed") {
		t.Fatalf("log %q, want drained", out.String())
	}
}
