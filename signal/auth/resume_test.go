package auth

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func testResume() Resume {
	return Resume{Room: "demo", Identity: "alice", Participant: "PA1", Epoch: 3, Publish: true, Subscribe: true,
		Metadata: `{"seat":4}`, Producers: []ResumeProducer{{ID: "PR1", Kind: "video", Mid: "0"}, {ID: "PR2", Kind: "audio", Mid: "1"}},
		Node: "N1", JoinedAt: 1700000000123}
}

func TestResumeRoundTrip(t *testing.T) {
	r := testResume()
	now := time.Now()
	tok, exp, err := testKeys.mintResume(r, 5*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := exp.Sub(now); d < 4*time.Minute || d > 5*time.Minute {
		t.Fatalf("expires in %v, want 5m", d)
	}
	got, err := testKeys.VerifyResume(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
}

func TestResumeRefused(t *testing.T) {
	now := time.Now()
	r := testResume()
	mint := func(k Keys, r Resume, ttl time.Duration, at time.Time) string {
		tok, _, err := k.mintResume(r, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := mint(testKeys, r, time.Minute, now)
	parts := strings.Split(valid, ".")
	// A credential whose typ is wrong, signed with the right (derived) key.
	wrongTyp := sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo", "pid": "PA1",
		"typ": "something", "exp": now.Add(time.Minute).Unix()}, testKeys.resumeKey())
	noTyp := sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo", "pid": "PA1",
		"exp": now.Add(time.Minute).Unix()}, testKeys.resumeKey())
	// An access token's claims with the credential's typ, signed with the API secret itself.
	typedAccess := sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo", "pid": "PA1",
		"typ": ResumeType, "exp": now.Add(time.Minute).Unix()}, []byte(testKeys.Secret))
	access := mustMint(t, testKeys, Grant{Room: "demo", Identity: "alice", Publish: true}, time.Minute, now)
	for _, c := range []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrNoToken},
		{"expired", mint(testKeys, r, time.Minute, now.Add(-time.Hour)), ErrExpired},
		{"forged: another secret", mint(Keys{Key: testKeys.Key, Secret: "another-secret-of-32-bytes-long!"}, r, time.Minute, now), ErrBadToken},
		{"forged: another issuer", mint(Keys{Key: "other", Secret: testKeys.Secret}, r, time.Minute, now), ErrBadToken},
		{"forged: claims changed", parts[0] + "." + strings.Replace(parts[1], parts[1][:8], "eyJleHAi", 1) + "." + parts[2], ErrBadToken},
		{"wrong typ", wrongTyp, ErrBadToken},
		{"no typ", noTyp, ErrBadToken},
		{"access token", access, ErrBadToken},
		{"access token with the credential's typ", typedAccess, ErrBadToken},
		{"garbage", "a.b.c", ErrBadToken},
		{"oversize", strings.Repeat("a", MaxTokenLen+1), ErrBadToken},
	} {
		_, err := testKeys.VerifyResume(c.token)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// TestCredentialIsNotAccessToken: a genuine, valid credential is refused where an access token
// is expected, by every verifier of access tokens.
func TestCredentialIsNotAccessToken(t *testing.T) {
	tok, _, err := testKeys.MintResume(testResume(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testKeys.Verify(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("Verify: %v, want ErrBadToken", err)
	}
	if _, err := testKeys.VerifySignature(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("VerifySignature: %v, want ErrBadToken", err)
	}
	if err := testKeys.VerifyAdmin(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("VerifyAdmin: %v, want ErrBadToken", err)
	}
	// The same claims signed with the API secret itself (a forger holding an access-token
	// signer): refused for its typ.
	forged := sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo",
		"typ": ResumeType, "exp": time.Now().Add(time.Minute).Unix()}, []byte(testKeys.Secret))
	if _, err := testKeys.Verify(forged); !errors.Is(err, ErrBadToken) {
		t.Errorf("Verify of a typed access token: %v, want ErrBadToken", err)
	}
}

func TestMintResumeOversize(t *testing.T) {
	r := testResume()
	for i := 0; i < 2000; i++ {
		r.Producers = append(r.Producers, ResumeProducer{ID: strings.Repeat("P", 20), Kind: "video", Mid: "12"})
	}
	if _, _, err := testKeys.MintResume(r, time.Minute); !errors.Is(err, ErrBadToken) {
		t.Fatalf("oversize credential minted: %v", err)
	}
}

// FuzzVerifyResume: whatever the input, VerifyResume refuses it with a documented error or
// returns a credential that names a room, an identity and a participant.
func FuzzVerifyResume(f *testing.F) {
	tok, _, err := fuzzKeys.mintResume(testResume(), time.Hour, fuzzNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		r, err := fuzzKeys.verifyResume(token, func() time.Time { return fuzzNow.Add(time.Minute) })
		if err != nil {
			if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpired) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if r.Room == "" || r.Identity == "" || r.Participant == "" {
			t.Fatalf("accepted a credential without room, identity or participant: %+v", r)
		}
	})
}
