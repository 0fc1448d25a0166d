package harness

import (
	"net"
	"testing"
	"time"
)

// Eventually calls f every 25 ms until it returns nil, and fails t with f's last error if that
// has not happened within timeout. Use it instead of a sleep to wait for a state: "the node sees
// the partition", "the process listens".
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// FreePort returns a TCP port free on 127.0.0.1 a moment ago (for a server a test starts and
// restarts on one port). Very likely the UDP port of that number is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
