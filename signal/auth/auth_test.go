package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testKeys = Keys{Key: "APIkey1", Secret: "0123456789abcdef0123456789abcdef"}

// sign signs arbitrary claims with method and key, for tokens Mint refuses to make.
func sign(t *testing.T, method jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func mustMint(t *testing.T, k Keys, g Grant, ttl time.Duration, at time.Time) string {
	t.Helper()
	s, err := k.mint(g, ttl, at)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return s
}

func TestVerify(t *testing.T) {
	now := time.Now()
	grant := Grant{Room: "demo", Identity: "alice", Publish: true, Subscribe: false}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	fullClaims := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": testKeys.Key, "sub": "alice", "room": "demo", "publish": true, "subscribe": false,
			"exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(),
		}
	}
	without := func(key string) jwt.MapClaims {
		c := fullClaims()
		delete(c, key)
		return c
	}
	valid := mustMint(t, testKeys, grant, time.Hour, now)
	parts := strings.Split(valid, ".")

	tests := []struct {
		name    string
		keys    *Keys // nil means testKeys
		token   string
		want    Grant
		wantErr error
	}{
		{name: "valid", token: valid, want: grant},
		{name: "valid subscribe only", want: Grant{Room: "r", Identity: "bob", Subscribe: true},
			token: mustMint(t, testKeys, Grant{Room: "r", Identity: "bob", Subscribe: true}, time.Minute, now)},
		{name: "valid map claims", token: sign(t, jwt.SigningMethodHS256, fullClaims(), []byte(testKeys.Secret)), want: grant},
		{name: "expired within clock skew", want: grant,
			token: mustMint(t, testKeys, grant, time.Hour, now.Add(-time.Hour-ClockSkew/2))},
		{name: "nbf within clock skew", want: grant,
			token: mustMint(t, testKeys, grant, time.Hour, now.Add(ClockSkew/2))},
		{name: "expired", token: mustMint(t, testKeys, grant, time.Hour, now.Add(-2*time.Hour)), wantErr: ErrExpired},
		{name: "negative ttl", token: mustMint(t, testKeys, grant, -time.Minute, now), wantErr: ErrExpired},
		{name: "nbf in future", token: mustMint(t, testKeys, grant, time.Hour, now.Add(time.Minute)), wantErr: ErrExpired},
		{name: "wrong secret", token: mustMint(t, Keys{Key: testKeys.Key, Secret: "another-secret-of-32-bytes-long!"}, grant, time.Hour, now),
			wantErr: ErrBadToken},
		{name: "wrong issuer", token: mustMint(t, Keys{Key: "other", Secret: testKeys.Secret}, grant, time.Hour, now),
			wantErr: ErrBadToken},
		{name: "expired and wrong issuer", token: mustMint(t, Keys{Key: "other", Secret: testKeys.Secret}, grant, time.Hour, now.Add(-2*time.Hour)),
			wantErr: ErrBadToken},
		{name: "expired and wrong secret", token: mustMint(t, Keys{Key: testKeys.Key, Secret: "another-secret-of-32-bytes-long!"}, grant, time.Hour, now.Add(-2*time.Hour)),
			wantErr: ErrBadToken},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, fullClaims(), jwt.UnsafeAllowNoneSignatureType), wantErr: ErrBadToken},
		{name: "alg RS256", token: sign(t, jwt.SigningMethodRS256, fullClaims(), rsaKey), wantErr: ErrBadToken},
		{name: "alg HS512 same secret", token: sign(t, jwt.SigningMethodHS512, fullClaims(), []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "tampered payload", token: parts[0] + "." + base64.RawURLEncoding.EncodeToString(
			[]byte(`{"iss":"APIkey1","sub":"mallory","room":"demo","publish":true,"subscribe":true,"exp":9999999999}`)) + "." + parts[2],
			wantErr: ErrBadToken},
		{name: "missing exp", token: sign(t, jwt.SigningMethodHS256, without("exp"), []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "missing iss", token: sign(t, jwt.SigningMethodHS256, without("iss"), []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "missing room", token: sign(t, jwt.SigningMethodHS256, without("room"), []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "missing sub", token: sign(t, jwt.SigningMethodHS256, without("sub"), []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "garbage", token: "not-a-token", wantErr: ErrBadToken},
		{name: "oversized", token: sign(t, jwt.SigningMethodHS256, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "demo",
			"exp": now.Add(time.Hour).Unix(), "pad": strings.Repeat("x", MaxTokenLen)}, []byte(testKeys.Secret)), wantErr: ErrBadToken},
		{name: "admin token without room", token: mustMint(t, testKeys, Grant{Admin: true}, time.Hour, now), wantErr: ErrBadToken},
		{name: "admin token with room", token: mustMint(t, testKeys, Grant{Room: "r", Identity: "op", Admin: true}, time.Hour, now),
			want: Grant{Room: "r", Identity: "op", Admin: true}},
		{name: "garbage three parts", token: "a.b.c", wantErr: ErrBadToken},
		{name: "empty", token: "", wantErr: ErrNoToken},
		{name: "verifier without key", keys: &Keys{}, token: valid, wantErr: ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := testKeys
			if tt.keys != nil {
				k = *tt.keys
			}
			got, err := k.verify(tt.token, func() time.Time { return now })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				for _, other := range []error{ErrNoToken, ErrBadToken, ErrExpired, ErrNoKey} {
					if other != tt.wantErr && errors.Is(err, other) {
						t.Errorf("Verify error %v also matches %v", err, other)
					}
				}
				if got != (Grant{}) {
					t.Errorf("Verify returned grant %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tt.want {
				t.Errorf("Verify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMintVerifyNow(t *testing.T) {
	g := Grant{Room: "room-1", Identity: "id-1", Publish: true, Subscribe: true}
	tok, err := testKeys.Mint(g, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testKeys.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got != g {
		t.Errorf("Verify = %+v, want %+v", got, g)
	}
	if _, err := DevKeys().Verify(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("Verify with other keys: %v, want ErrBadToken", err)
	}
}

// TestClaimsJSON pins the payload to the shape documented in PROTOCOL.md.
func TestClaimsJSON(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tok := mustMint(t, testKeys, Grant{Room: "demo", Identity: "alice"}, time.Hour, now)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "HS256" {
		t.Errorf("alg = %v, want HS256", h["alg"])
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"iss": "APIkey1", "sub": "alice", "room": "demo", "publish": false, "subscribe": false,
		"exp": float64(1_700_003_600), "nbf": float64(1_700_000_000), "iat": float64(1_700_000_000),
	}
	if !maps.Equal(got, want) {
		t.Errorf("claims = %v, want %v (keys %v)", got, want, slices.Sorted(maps.Keys(got)))
	}
}

func TestMintErrors(t *testing.T) {
	g := Grant{Room: "r", Identity: "i"}
	tests := []struct {
		name string
		keys Keys
		g    Grant
		ttl  time.Duration
		is   error
	}{
		{name: "no key", keys: Keys{Secret: testKeys.Secret}, g: g, ttl: time.Hour, is: ErrNoKey},
		{name: "no secret", keys: Keys{Key: "k"}, g: g, ttl: time.Hour, is: ErrNoKey},
		{name: "no room", keys: testKeys, g: Grant{Identity: "i"}, ttl: time.Hour},
		{name: "no identity", keys: testKeys, g: Grant{Room: "r"}, ttl: time.Hour},
		{name: "zero ttl", keys: testKeys, g: g, ttl: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tt.keys.Mint(tt.g, tt.ttl)
			if err == nil {
				t.Fatalf("Mint = %q, want an error", tok)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Mint error = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestDevSecretLength(t *testing.T) {
	if len(DevSecret) < 32 {
		t.Errorf("DevSecret is %d bytes, want at least 32", len(DevSecret))
	}
}

func TestVerifyAdmin(t *testing.T) {
	admin, err := testKeys.Mint(Grant{Admin: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	user, err := testKeys.Mint(Grant{Room: "r", Identity: "alice", Publish: true, Subscribe: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := testKeys.Mint(Grant{Admin: true}, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Keys{Key: testKeys.Key, Secret: "another-secret-of-32-bytes-long!"}.Mint(Grant{Admin: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"admin", admin, nil},
		{"no token", "", ErrNoToken},
		{"user token", user, ErrNotAdmin},
		{"expired admin", expired, ErrExpired},
		{"other key pair", other, ErrBadToken},
		{"oversized", admin + strings.Repeat("A", MaxTokenLen), ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := testKeys.VerifyAdmin(tt.token)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("VerifyAdmin = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestVerifySignature: genuine tokens are accepted whatever their times; forged ones are not.
func TestVerifySignature(t *testing.T) {
	g := Grant{Room: "r", Identity: "alice", Publish: true}
	now := time.Now()
	for _, tt := range []struct {
		name  string
		token string
		want  error
	}{
		{"valid", mustMint(t, testKeys, g, time.Hour, now), nil},
		{"expired long ago", mustMint(t, testKeys, g, time.Hour, now.Add(-72*time.Hour)), nil},
		{"not valid yet", mustMint(t, testKeys, g, time.Hour, now.Add(time.Hour)), nil},
		{"other secret", mustMint(t, Keys{Key: testKeys.Key, Secret: "another-secret-of-32-bytes-long!"}, g, time.Hour, now), ErrBadToken},
		{"other issuer", mustMint(t, Keys{Key: "other", Secret: testKeys.Secret}, g, time.Hour, now.Add(-72*time.Hour)), ErrBadToken},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.MapClaims{"iss": testKeys.Key, "sub": "alice", "room": "r"}, jwt.UnsafeAllowNoneSignatureType), ErrBadToken},
		{"empty", "", ErrNoToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testKeys.VerifySignature(tt.token)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("VerifySignature error = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil || got != g {
				t.Errorf("VerifySignature = %+v, %v; want %+v", got, err, g)
			}
		})
	}
}

func TestMintAdminClaim(t *testing.T) {
	tok, err := testKeys.Mint(Grant{Admin: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if got["admin"] != true {
		t.Errorf("admin token claims %v: want \"admin\": true", got)
	}
	if _, ok := got["sub"]; ok {
		t.Errorf("admin token without identity has a sub claim: %v", got)
	}
}

func TestMintRefusesOversizedToken(t *testing.T) {
	keys := Keys{Key: "k", Secret: "0123456789abcdef"}
	if _, err := keys.Mint(Grant{Room: strings.Repeat("r", MaxTokenLen), Identity: "i"}, time.Hour); !errors.Is(err, ErrBadToken) {
		t.Fatalf("minting a token over %d bytes: %v, want ErrBadToken", MaxTokenLen, err)
	}
}
