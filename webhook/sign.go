package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MinKeyLen is the shortest signing key accepted, in bytes (after decoding).
const MinKeyLen = 16

// keyPrefix marks a key in the Standard Webhooks form: whsec_ and the key's bytes in base64.
const keyPrefix = "whsec_"

// Headers of a webhook call (Standard Webhooks).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrKey is returned by ParseKey for a key it cannot use.
var ErrKey = errors.New("bad webhook key")

// ParseKey reads --webhook-key: "whsec_" followed by the key in base64 (standard alphabet,
// padding optional), as the Standard Webhooks tools generate it; any other string is the key
// itself, as its UTF-8 bytes. Either way the key must be at least MinKeyLen bytes.
func ParseKey(s string) ([]byte, error) {
	key := []byte(s)
	if b64, ok := strings.CutPrefix(s, keyPrefix); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
			if key, err = base64.RawStdEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("%w: the part after %s is not base64", ErrKey, keyPrefix)
			}
		}
	}
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeyLen)
	}
	return key, nil
}

// Sign returns the webhook-signature header of a call: "v1," and the base64 HMAC-SHA256, under
// key, of the id, the timestamp (Unix seconds) and the body joined by dots.
func Sign(key []byte, id string, at time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, at.Unix(), 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
