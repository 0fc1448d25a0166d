package web

import (
	"os"
	"os/exec"
	"testing"
)

// TestClientResumeUnderNode runs testdata/resume.test.mjs under Node: cascade.js's resume with
// fake WebSocket, RTCPeerConnection and MediaStream (the join answer's nodes first with the
// latest credential, producer ids on the republish, the same MediaStreams with the new tracks,
// a refused credential, the ping deadline, a redirect to the node that went, migrate).
// Skipped without node, required under CI.
func TestClientResumeUnderNode(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node not found: %v", err)
		}
		t.Skipf("SKIPPED: node not found (%v): the JavaScript resume tests did not run", err)
	}
	out, err := exec.Command(nodeBin, "--test", "testdata/resume.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test testdata/resume.test.mjs: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
