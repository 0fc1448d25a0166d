package web

import (
	"os"
	"os/exec"
	"testing"
)

// TestClientSessionUnderNode runs testdata/session.test.mjs under Node: cascade.js with the room
// API's notifications (metadata, a moderator's mute, unmute requests) and the server's final
// close codes (replaced, removed, room deleted) against fake WebSocket and RTCPeerConnection.
// Skipped without node, required under CI.
func TestClientSessionUnderNode(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node not found: %v", err)
		}
		t.Skipf("SKIPPED: node not found (%v): the JavaScript session tests did not run", err)
	}
	out, err := exec.Command(nodeBin, "--test", "testdata/session.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test testdata/session.test.mjs: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
