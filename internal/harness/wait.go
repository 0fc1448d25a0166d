package harness

import (
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
