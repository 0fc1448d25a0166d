package web

import (
	"os/exec"
	"testing"
)

// The unit tests of cascade.js, under Node with fake WebSocket, RTCPeerConnection and
// MediaStream.

// TestClientLibraryUnderNode runs testdata/cascade.test.mjs, unit tests of cascade.js with fake
// WebSocket and RTCPeerConnection, under Node (skipped without node, required under CI).
func TestClientLibraryUnderNode(t *testing.T) {
	nodeTest(t, "testdata/cascade.test.mjs", "the JavaScript unit tests")
}

// nodeTest runs the tests of file under Node (node --test): without node it skips, saying that
// what did not run, and fails under CI (requireTool).
func nodeTest(t *testing.T, file, what string) {
	t.Helper()
	nodeBin := requireTool(t, "node", what)
	out, err := exec.Command(nodeBin, "--test", file).CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", file, err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}

// TestClientSessionUnderNode runs testdata/session.test.mjs under Node: cascade.js with the room
// API's notifications (metadata, a moderator's mute, unmute requests) and the server's final
// close codes (replaced, removed, room deleted) against fake WebSocket and RTCPeerConnection.
// Skipped without node, required under CI.
func TestClientSessionUnderNode(t *testing.T) {
	nodeTest(t, "testdata/session.test.mjs", "the JavaScript session tests")
}

// TestClientResumeUnderNode runs testdata/resume.test.mjs under Node: cascade.js's resume with
// fake WebSocket, RTCPeerConnection and MediaStream (the join answer's nodes first with the
// latest credential, producer ids on the republish, the same MediaStreams with the new tracks,
// a refused credential, the ping deadline, a redirect to the node that went, migrate).
// Skipped without node, required under CI.
func TestClientResumeUnderNode(t *testing.T) {
	nodeTest(t, "testdata/resume.test.mjs", "the JavaScript resume tests")
}

// TestClientLayersUnderNode runs testdata/layers.test.mjs under Node: cascade.js's simulcast
// sendEncodings, setPreferredLayer (kept and sent again after a resume), fitLayer, layersWanted
// pausing and resuming encodings through setParameters, layerChanged and activeSpeakers, against
// fake WebSocket and RTCPeerConnection. Skipped without node, required under CI.
func TestClientLayersUnderNode(t *testing.T) {
	nodeTest(t, "testdata/layers.test.mjs", "the JavaScript layer tests")
}
