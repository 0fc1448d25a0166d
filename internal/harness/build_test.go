package harness

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaries builds nats-server once and runs it. (Cascade takes the same path; its link alone
// takes about 8 s, so the tests that use it exercise it.)
func TestBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	nats := NATSServer(t)
	if again := NATSServer(t); again != nats {
		t.Fatalf("second NATSServer: %s, first %s", again, nats)
	}
	out, err := exec.Command(nats, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nats-server") {
		t.Fatalf("%s --version: %v: %s", nats, err, out)
	}
}
