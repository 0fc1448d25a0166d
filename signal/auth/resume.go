package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Resume credentials (PROTOCOL.md, "Resume"): what a node hands a session so that its client can
// resume it on another node. A credential is an HS256 JWT like an access token, but signed with
// a key derived from the API secret for this use only (resumeKey) and marked by its typ claim:
// an access token is never a credential, nor the reverse, even if one checker were wrong.

// ResumeType is the typ claim of a resume credential; an access token has none.
const ResumeType = "cascade-resume"

// resumeKeyLabel derives the credentials' signing key from the API secret (HMAC-SHA256 of the
// label under the secret): a leaked credential key does not sign access tokens, and bumping the
// version invalidates every credential at once.
const resumeKeyLabel = "cascade resume credential v1"

// ResumeProducer is one producer of the session, as a credential names it.
type ResumeProducer struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Mid  string `json:"mid,omitempty"`
}

// Resume is what a credential says of a session: its room, identity, participant id and epoch,
// its grants and metadata, its producers, the node that issued it and when the session joined
// (Unix milliseconds).
type Resume struct {
	Room        string
	Identity    string
	Participant string
	Epoch       uint64
	Publish     bool
	Subscribe   bool
	Metadata    string
	Producers   []ResumeProducer
	Node        string
	JoinedAt    int64
}

// resumeClaims is a credential's JSON payload.
type resumeClaims struct {
	jwt.RegisteredClaims
	Typ         string           `json:"typ"`
	Room        string           `json:"room"`
	Participant string           `json:"pid"`
	Epoch       uint64           `json:"epoch"`
	Publish     bool             `json:"publish,omitempty"`
	Subscribe   bool             `json:"subscribe,omitempty"`
	Metadata    string           `json:"metadata,omitempty"`
	Producers   []ResumeProducer `json:"producers,omitempty"`
	Node        string           `json:"node"`
	JoinedAt    int64            `json:"joinedAt"`
}

// resumeKey is the credentials' HMAC key, derived from the API secret.
func (k Keys) resumeKey() []byte {
	m := hmac.New(sha256.New, []byte(k.Secret))
	m.Write([]byte(resumeKeyLabel))
	return m.Sum(nil)
}

// MintResume returns a credential for r, valid from now for ttl, and when it expires. Errors
// wrap ErrNoKey or ErrBadToken (a credential over MaxTokenLen: metadata and producers too large).
func (k Keys) MintResume(r Resume, ttl time.Duration) (string, time.Time, error) {
	return k.mintResume(r, ttl, time.Now())
}

func (k Keys) mintResume(r Resume, ttl time.Duration, now time.Time) (string, time.Time, error) {
	if k.Key == "" || k.Secret == "" {
		return "", time.Time{}, fmt.Errorf("mint resume credential: %w", ErrNoKey)
	}
	if r.Room == "" || r.Identity == "" || r.Participant == "" {
		return "", time.Time{}, errors.New("mint resume credential: room, identity and participant must not be empty")
	}
	if !utf8.ValidString(r.Room) || !utf8.ValidString(r.Identity) {
		return "", time.Time{}, errors.New("mint resume credential: room and identity must be UTF-8")
	}
	if ttl == 0 {
		return "", time.Time{}, errors.New("mint resume credential: ttl must not be zero")
	}
	now = now.Truncate(time.Second)
	exp := now.Add(ttl)
	c := resumeClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: k.Key, Subject: r.Identity, ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now)},
		Typ: ResumeType, Room: r.Room, Participant: r.Participant, Epoch: r.Epoch, Publish: r.Publish, Subscribe: r.Subscribe,
		Metadata: r.Metadata, Producers: r.Producers, Node: r.Node, JoinedAt: r.JoinedAt,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(k.resumeKey())
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint resume credential: %w", err)
	}
	if len(s) > MaxTokenLen {
		return "", time.Time{}, fmt.Errorf("mint resume credential: %w: it would be %d bytes, at most %d are accepted", ErrBadToken, len(s), MaxTokenLen)
	}
	return s, exp, nil
}

// VerifyResume checks a credential: size, signature (HS256, the derived key), issuer, typ, exp
// (required) and nbf, and that it names a room, an identity and a participant. Errors wrap
// ErrNoToken, ErrBadToken (forged, malformed, an access token), ErrExpired or ErrNoKey.
func (k Keys) VerifyResume(token string) (Resume, error) {
	return k.verifyResume(token, time.Now)
}

func (k Keys) verifyResume(token string, now func() time.Time) (Resume, error) {
	var c resumeClaims
	if token == "" {
		return Resume{}, ErrNoToken
	}
	if len(token) > MaxTokenLen { // refused unparsed
		return Resume{}, fmt.Errorf("%w: the credential is %d bytes, at most %d are accepted", ErrBadToken, len(token), MaxTokenLen)
	}
	if k.Key == "" || k.Secret == "" {
		return Resume{}, fmt.Errorf("verify resume credential: %w", ErrNoKey)
	}
	key := k.resumeKey()
	_, err := jwt.ParseWithClaims(token, &c,
		func(t *jwt.Token) (any, error) {
			if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
				return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
			}
			return key, nil
		},
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(k.Key), jwt.WithExpirationRequired(),
		jwt.WithLeeway(ClockSkew), jwt.WithTimeFunc(now))
	if err != nil {
		return Resume{}, classify(err, claims{RegisteredClaims: c.RegisteredClaims})
	}
	switch {
	case c.Typ != ResumeType:
		return Resume{}, fmt.Errorf("%w: not a resume credential (typ %q)", ErrBadToken, c.Typ)
	case c.Room == "" || c.Subject == "" || c.Participant == "":
		return Resume{}, fmt.Errorf("%w: a resume credential names a room, an identity and a participant", ErrBadToken)
	}
	if err := checkMetadata(c.Metadata); err != nil {
		return Resume{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	return Resume{Room: c.Room, Identity: c.Subject, Participant: c.Participant, Epoch: c.Epoch, Publish: c.Publish,
		Subscribe: c.Subscribe, Metadata: c.Metadata, Producers: c.Producers, Node: c.Node, JoinedAt: c.JoinedAt}, nil
}
