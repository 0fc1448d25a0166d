package proto

import (
	"os"
	"strings"
	"testing"
)

// TestEveryCodeDocumented: each error code has its row in PROTOCOL.md's table of error codes.
func TestEveryCodeDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{CodeBadRequest, CodeUnknownMethod, CodeUnauthorized, CodeTokenExpired, CodeForbidden, CodeNotJoined,
		CodeAlreadyJoined, CodeBadSDP, CodeNotFound, CodeBadState, CodeRateLimited, CodeDraining, CodeInternal,
		CodeClusterUnavailable, CodeTooManyRooms, CodeRoomFull, CodeTooManyTracks, CodeResumeRefused} {
		if !strings.Contains(string(doc), "\n| `"+c+"` |") {
			t.Errorf("error code %s has no row in PROTOCOL.md", c)
		}
	}
}
