package client_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// freezer is a TCP proxy in front of a node whose connections can be frozen: every byte is
// then dropped in both directions while the TCP connections stay open, as when a machine
// vanishes without a reset (a blackholed path). Connections accepted after a freeze flow.
type freezer struct {
	ln       net.Listener
	target   string
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []*frozenPair
}

type frozenPair struct {
	a, b   net.Conn
	frozen atomic.Bool
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// frozenNode starts an example node, closed with the test, behind a freezer.
func frozenNode(t *testing.T) (*exampleNode, *freezer) {
	t.Helper()
	n := testNode(t)
	return n, newFreezer(t, strings.TrimSuffix(strings.TrimPrefix(n.URL, "ws://"), "/ws"))
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

// url is the node's WebSocket URL through f.
func (f *freezer) url() string { return "ws://" + f.addr() + "/ws" }

func (f *freezer) accept() {
	defer f.wg.Done()
	for {
		a, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		b, err := net.Dial("tcp", f.target)
		if err != nil {
			_ = a.Close()
			continue
		}
		p := &frozenPair{a: a, b: b}
		f.mu.Lock()
		f.conns = append(f.conns, p)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(p, a, b)
		go f.pipe(p, b, a)
	}
}

// pipe copies from src to dst until either closes, dropping what it reads while frozen.
func (f *freezer) pipe(p *frozenPair, src, dst net.Conn) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF || !p.frozen.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}

// freeze drops everything on the connections open now.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.conns {
		p.frozen.Store(true)
	}
}

func (f *freezer) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for _, p := range f.conns {
		_ = p.a.Close()
		_ = p.b.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
