package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// fuzzKeys and fuzzNow are fixed, so that the committed corpus (testdata/fuzz) holds tokens
// that stay valid whatever the date the fuzzer runs.
var (
	fuzzKeys = Keys{Key: "fuzzkey", Secret: "fuzz-secret-0123456789abcdef0123"}
	fuzzNow  = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
)

// FuzzVerify: whatever the token, Verify either refuses it with one of its documented errors
// and an empty grant, or returns the grant the token's signed claims say, and only for a
// token whose HS256 signature, by this key, covers exactly its header and claims.
func FuzzVerify(f *testing.F) {
	for _, g := range []Grant{{Room: "demo", Identity: "alice", Publish: true}, {Room: "r", Identity: "b", Subscribe: true}} {
		tok, err := fuzzKeys.mint(g, time.Hour, fuzzNow)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJyb29tIjoiZGVtbyJ9.")
	f.Fuzz(func(t *testing.T, token string) {
		g, err := fuzzKeys.verify(token, func() time.Time { return fuzzNow.Add(time.Minute) })
		if err != nil {
			if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpired) {
				t.Fatalf("undocumented error %v", err)
			}
			if g != (Grant{}) {
				t.Fatalf("refused token, but a grant %+v", g)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d parts", len(parts))
		}
		mac := hmac.New(sha256.New, []byte(fuzzKeys.Secret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted a token whose signature is not HS256 by the key: %q", token)
		}
		var hdr struct {
			Alg string `json:"alg"`
		}
		if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &hdr) != nil || hdr.Alg != "HS256" {
			t.Fatalf("accepted header %q", parts[0])
		}
		var c struct {
			Iss, Sub, Room     string
			Publish, Subscribe bool
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || json.Unmarshal(b, &c) != nil {
			t.Fatalf("accepted claims that do not decode: %q", parts[1])
		}
		if g.Room == "" || g.Identity == "" || g.Room != c.Room || g.Identity != c.Sub || c.Iss != fuzzKeys.Key ||
			g.Publish != c.Publish || g.Subscribe != c.Subscribe {
			t.Fatalf("grant %+v, but the signed claims say %+v", g, c)
		}
	})
}

// FuzzMintVerify: a token minted for a grant verifies to exactly that grant (the room it
// claims is the room it admits to), and Mint refuses what could not round-trip.
func FuzzMintVerify(f *testing.F) {
	f.Add("demo", "alice", true, false)
	f.Add("room with spaces/and.dots*>", "ünïcödé", false, true)
	f.Add("", "x", true, true)
	f.Fuzz(func(t *testing.T, room, identity string, publish, subscribe bool) {
		in := Grant{Room: room, Identity: identity, Publish: publish, Subscribe: subscribe}
		tok, err := fuzzKeys.mint(in, time.Hour, fuzzNow)
		if err != nil {
			return // refused: nothing to verify
		}
		g, err := fuzzKeys.verify(tok, func() time.Time { return fuzzNow.Add(time.Minute) })
		if err != nil {
			t.Fatalf("minted token for %+v does not verify: %v", in, err)
		}
		if g != in {
			t.Fatalf("minted for %+v, verified as %+v", in, g)
		}
	})
}
