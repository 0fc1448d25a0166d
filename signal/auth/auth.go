// Package auth mints and verifies Cascade access tokens: HS256 JWTs signed with the node's API
// secret, whose claims name the room, the identity and the grants, or carry the admin grant
// (see PROTOCOL.md, "Tokens").
package auth

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Development key pair, used by `cascade node` and `cascade token` when no key is configured.
// Anyone can mint tokens with it: never use it on a reachable deployment.
const (
	DevKey    = "devkey"
	DevSecret = "cascade-development-secret-do-not-use-in-production"
)

// ClockSkew is the tolerance applied to exp and nbf when verifying, so that a token minted on a
// machine whose clock is slightly ahead is not refused.
const ClockSkew = 5 * time.Second

// MaxTokenLen is the longest token accepted, in bytes: a Cascade token is about 300 bytes, or
// up to about 33 KiB with the largest metadata claim (4096 bytes, each of which JSON may escape
// to six, in base64); nothing larger is parsed.
const MaxTokenLen = 36 << 10

// Errors returned by Verify (wrapped, test with errors.Is), and ErrNoKey by Mint and Verify when
// the Keys are incomplete.
var (
	ErrNoToken  = errors.New("no token")
	ErrBadToken = errors.New("bad token")
	ErrExpired  = errors.New("token expired")
	ErrNoKey    = errors.New("no API key or secret configured")
	// ErrNotAdmin: a genuine, valid token without the admin grant, presented to an admin endpoint.
	ErrNotAdmin = errors.New("the token lacks the admin grant")
)

// Grant is what a token allows: which identity may join which room, and what it may do there;
// Admin allows the node's admin endpoints (drain, /cluster, /stats, pprof, deleting any WHIP or
// WHEP resource). An admin token needs no room or identity, and cannot join without them.
type Grant struct {
	Room      string
	Identity  string
	Publish   bool
	Subscribe bool
	Admin     bool
	// Metadata is the participant's first metadata (the room API may change it later): at most
	// MaxMetadata bytes of UTF-8.
	Metadata string
}

// MaxMetadata is the longest metadata claim, in bytes (proto.MaxMetadata).
const MaxMetadata = 4096

// Keys are an API key (the token's issuer) and its secret (the HMAC key).
type Keys struct {
	Key    string
	Secret string
}

// DevKeys returns the development key pair.
func DevKeys() Keys { return Keys{Key: DevKey, Secret: DevSecret} }

// claims is the token's JSON payload.
type claims struct {
	jwt.RegisteredClaims
	Room      string `json:"room"`
	Publish   bool   `json:"publish"`
	Subscribe bool   `json:"subscribe"`
	Admin     bool   `json:"admin,omitempty"`
	Metadata  string `json:"metadata,omitempty"`
	// Typ is empty in an access token: a resume credential (ResumeType) is refused as one.
	Typ string `json:"typ,omitempty"`
}

// Mint returns a signed token for g, valid from now for ttl. A negative ttl mints a token that
// has already expired (useful in tests); a zero ttl is an error.
func (k Keys) Mint(g Grant, ttl time.Duration) (string, error) {
	return k.mint(g, ttl, time.Now())
}

func (k Keys) mint(g Grant, ttl time.Duration, now time.Time) (string, error) {
	if k.Key == "" || k.Secret == "" {
		return "", fmt.Errorf("mint token: %w", ErrNoKey)
	}
	if !g.Admin && (g.Room == "" || g.Identity == "") {
		return "", errors.New("mint token: room and identity must not be empty (unless the token is an admin token)")
	}
	if !utf8.ValidString(g.Room) || !utf8.ValidString(g.Identity) {
		// JSON would turn the bad bytes into U+FFFD: the token would admit to another room.
		return "", errors.New("mint token: room and identity must be UTF-8")
	}
	if err := checkMetadata(g.Metadata); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	if ttl == 0 {
		return "", errors.New("mint token: ttl must not be zero")
	}
	now = now.Truncate(time.Second)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    k.Key,
			Subject:   g.Identity,
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		Room:      g.Room,
		Publish:   g.Publish,
		Subscribe: g.Subscribe,
		Admin:     g.Admin,
		Metadata:  g.Metadata,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(k.Secret))
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	if len(s) > MaxTokenLen { // Verify would refuse it: a room or identity far too long
		return "", fmt.Errorf("mint token: %w: the token would be %d bytes, at most %d are accepted", ErrBadToken, len(s), MaxTokenLen)
	}
	return s, nil
}

// Verify checks a join token: its signature (HS256 only), issuer (must be k.Key), exp (required)
// and nbf, and that it names a room and an identity; it returns the grant. Errors wrap
// ErrNoToken, ErrBadToken, ErrExpired or ErrNoKey.
func (k Keys) Verify(token string) (Grant, error) {
	return k.verify(token, time.Now)
}

func (k Keys) verify(token string, now func() time.Time) (Grant, error) {
	c, err := k.parse(token, now, true)
	if err != nil {
		return Grant{}, err
	}
	if c.Room == "" && c.Admin {
		return Grant{}, fmt.Errorf("%w: an admin token without a room cannot join", ErrBadToken)
	}
	if c.Room == "" {
		return Grant{}, fmt.Errorf("%w: missing room claim", ErrBadToken)
	}
	if c.Subject == "" {
		return Grant{}, fmt.Errorf("%w: missing sub claim", ErrBadToken)
	}
	if err := checkMetadata(c.Metadata); err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	return c.grant(), nil
}

// VerifyAdmin checks a token presented to an admin endpoint: valid as for Verify (room and
// identity not required) and carrying the admin grant. Errors wrap ErrNoToken, ErrBadToken,
// ErrExpired, ErrNoKey or, for a valid token without the grant, ErrNotAdmin.
func (k Keys) VerifyAdmin(token string) error {
	c, err := k.parse(token, time.Now, true)
	if err != nil {
		return err
	}
	if !c.Admin {
		return ErrNotAdmin
	}
	return nil
}

// VerifySignature checks that token was signed by k (HS256, issuer k.Key) and returns its grant,
// whatever its exp and nbf: it proves who a token was given to, not that it is still valid. For
// stopping a session the token's holder started (a WHIP publisher outlives its token). Errors
// wrap ErrNoToken, ErrBadToken or ErrNoKey.
func (k Keys) VerifySignature(token string) (Grant, error) {
	c, err := k.parse(token, time.Now, false)
	if err != nil {
		return Grant{}, err
	}
	return c.grant(), nil
}

// parse checks token's size, signature, algorithm and issuer, and with validity also its exp
// (required) and nbf.
func (k Keys) parse(token string, now func() time.Time, validity bool) (claims, error) {
	var c claims
	if token == "" {
		return c, ErrNoToken
	}
	if len(token) > MaxTokenLen {
		return c, fmt.Errorf("%w: the token is %d bytes, at most %d are accepted", ErrBadToken, len(token), MaxTokenLen)
	}
	if k.Key == "" || k.Secret == "" {
		return c, fmt.Errorf("verify token: %w", ErrNoKey)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(k.Key),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(ClockSkew),
		jwt.WithTimeFunc(now),
	}
	if !validity {
		// The library validates iss with the times: check it here instead.
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	_, err := jwt.ParseWithClaims(token, &c,
		func(t *jwt.Token) (any, error) {
			if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
				return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
			}
			return []byte(k.Secret), nil
		}, opts...)
	if err != nil {
		return claims{}, classify(err, c)
	}
	if c.Typ != "" {
		return claims{}, fmt.Errorf("%w: not an access token (typ %q)", ErrBadToken, c.Typ)
	}
	if !validity && c.Issuer != k.Key {
		return claims{}, fmt.Errorf("%w: issuer %q is not this cluster's API key", ErrBadToken, c.Issuer)
	}
	return c, nil
}

func (c claims) grant() Grant {
	return Grant{Room: c.Room, Identity: c.Subject, Publish: c.Publish, Subscribe: c.Subscribe, Admin: c.Admin, Metadata: c.Metadata}
}

// checkMetadata refuses a metadata claim longer than MaxMetadata bytes.
func checkMetadata(m string) error {
	if len(m) > MaxMetadata {
		return fmt.Errorf("the metadata claim is %d bytes, at most %d are accepted", len(m), MaxMetadata)
	}
	return nil
}

// classify maps a jwt error to ErrExpired when time is the only problem, else to ErrBadToken.
// The signature is checked before the claims, so an expired token is known to be genuine.
func classify(err error, c claims) error {
	timeOnly := (errors.Is(err, jwt.ErrTokenExpired) || errors.Is(err, jwt.ErrTokenNotValidYet)) &&
		!errors.Is(err, jwt.ErrTokenInvalidIssuer) &&
		!errors.Is(err, jwt.ErrTokenRequiredClaimMissing) &&
		!errors.Is(err, jwt.ErrTokenMalformed) &&
		!errors.Is(err, jwt.ErrTokenSignatureInvalid) &&
		!errors.Is(err, jwt.ErrTokenUnverifiable)
	if timeOnly {
		if errors.Is(err, jwt.ErrTokenNotValidYet) && c.NotBefore != nil {
			return fmt.Errorf("%w: not valid before %s", ErrExpired, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if c.ExpiresAt != nil {
			return fmt.Errorf("%w: expired at %s", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %v", ErrExpired, err)
	}
	return fmt.Errorf("%w: %v", ErrBadToken, err)
}
