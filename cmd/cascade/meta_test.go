package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
)

// TestTokenMetadata: `cascade token --metadata` puts the participant's metadata in the token;
// metadata over the cap is refused with a clear message.
func TestTokenMetadata(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"token", "--room", "r", "--identity", "i", "--metadata", `{"role":"host"}`}, env(nil), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	g, err := auth.DevKeys().Verify(strings.TrimSpace(stdout.String()))
	if err != nil || g.Metadata != `{"role":"host"}` {
		t.Fatalf("grant %+v, %v", g, err)
	}
	stdout.Reset()
	stderr.Reset()
	long := strings.Repeat("m", auth.MaxMetadata+1)
	if code := run([]string{"token", "--room", "r", "--identity", "i", "--metadata", long}, env(nil), &stdout, &stderr); code == exitOK {
		t.Fatal("metadata over the cap accepted")
	}
	if !strings.Contains(stderr.String(), "--metadata is 4097 bytes, at most 4096") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

// TestEmptyRoomTimeoutFlag: --empty-room-timeout (flag, environment) defaults to 0 and refuses
// a negative duration.
func TestEmptyRoomTimeoutFlag(t *testing.T) {
	c, err := loadConfig(nil, env(nil))
	if err != nil || c.EmptyRoomTimeout != 0 {
		t.Fatalf("default %v, %v", c.EmptyRoomTimeout, err)
	}
	c, err = loadConfig([]string{"--empty-room-timeout", "90s"}, env(nil))
	if err != nil || c.EmptyRoomTimeout != 90*time.Second {
		t.Fatalf("flag: %v, %v", c.EmptyRoomTimeout, err)
	}
	c, err = loadConfig(nil, env(map[string]string{"CASCADE_EMPTY_ROOM_TIMEOUT": "2m"}))
	if err != nil || c.EmptyRoomTimeout != 2*time.Minute {
		t.Fatalf("environment: %v, %v", c.EmptyRoomTimeout, err)
	}
	if _, err := loadConfig([]string{"--empty-room-timeout", "-1s"}, env(nil)); err == nil || !strings.Contains(err.Error(), "empty-room-timeout") {
		t.Fatalf("negative: %v", err)
	}
}
