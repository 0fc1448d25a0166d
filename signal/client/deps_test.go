package client

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoServer keeps the client (and so the bots) free of server code: it speaks the
// protocol through signal/proto alone.
func TestLinksNoServer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go not found: %v", err)
		}
		t.Skipf("SKIPPED: go not found (%v): the client's dependencies were not checked", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		server := strings.Contains(dep, "nats-server") || dep == "github.com/cascade-sfu/cascade/signal" ||
			strings.HasPrefix(dep, "github.com/cascade-sfu/cascade/node") ||
			strings.HasPrefix(dep, "github.com/cascade-sfu/cascade/cluster") ||
			strings.HasPrefix(dep, "github.com/cascade-sfu/cascade/relay")
		if server {
			t.Errorf("signal/client links %s", dep)
		}
	}
}
