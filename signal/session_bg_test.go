package signal_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIdleSessionHoldsOnlyItsReader: a joined session whose client is quiet has no goroutine of
// its own but its reader: the writer, the pinger and the credential refresh start when due
// (session_bg.go). The count of readers proves the stacks are the sessions'.
func TestIdleSessionHoldsOnlyItsReader(t *testing.T) {
	e := newEnv(t, 1, 4)
	const n = 3
	for i := 0; i < n; i++ {
		e.join("r", fmt.Sprint("p", i), true, true)
	}
	checkFor(t, 10*time.Second, func() error {
		readers, others := sessionGoroutines()
		if readers != n || others != 0 {
			return fmt.Errorf("%d session readers (want %d), %d other session goroutines (want 0)", readers, n, others)
		}
		return nil
	})
}

// sessionGoroutines counts the goroutines in a signaling session's reader loop, and those in its
// writer, ping or credential refresh.
func sessionGoroutines() (readers, others int) {
	buf := make([]byte, 8<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		switch {
		case strings.Contains(g, "signal.(*session).reader("):
			readers++
		case strings.Contains(g, "signal.(*session).writer("), strings.Contains(g, "signal.(*session).pingOnce("),
			strings.Contains(g, "signal.(*session).refreshOnce("):
			others++
		}
	}
	return readers, others
}
