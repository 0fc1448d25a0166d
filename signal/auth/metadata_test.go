package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestMetadataClaim: a token carries the participant's metadata; the largest allowed (even
// when JSON escapes every byte) mints and verifies; a longer one is refused at both ends.
func TestMetadataClaim(t *testing.T) {
	g := Grant{Room: "r", Identity: "alice", Publish: true, Metadata: `{"role":"host"}`}
	tok, err := testKeys.Mint(g, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testKeys.Verify(tok)
	if err != nil || got != g {
		t.Fatalf("verified %+v, %v; want %+v", got, err, g)
	}
	worst := Grant{Room: "r", Identity: "alice", Metadata: strings.Repeat("\x01", MaxMetadata)}
	tok, err = testKeys.Mint(worst, time.Hour)
	if err != nil {
		t.Fatalf("the largest metadata, every byte escaped: %v", err)
	}
	if got, err := testKeys.Verify(tok); err != nil || got.Metadata != worst.Metadata {
		t.Fatalf("verify the largest metadata: %v", err)
	}
	long := Grant{Room: "r", Identity: "alice", Metadata: strings.Repeat("m", MaxMetadata+1)}
	if _, err := testKeys.Mint(long, time.Hour); err == nil || !strings.Contains(err.Error(), "metadata claim is 4097 bytes, at most 4096") {
		t.Fatalf("minting metadata over the cap: %v", err)
	}
	forged := sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "r",
		"exp": time.Now().Add(time.Hour).Unix(), "metadata": long.Metadata}, []byte(testKeys.Secret))
	if _, err := testKeys.Verify(forged); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "at most 4096") {
		t.Fatalf("a signed token with metadata over the cap: %v, want ErrBadToken", err)
	}
}
