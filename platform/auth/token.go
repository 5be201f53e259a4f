package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// The token store is the KV bucket Bucket. The catalog owns it (it alone writes); every process
// watches it into a local cache to verify tokens (Verifier). One key per token:
//
//	tok.<workspace>.<base64url(name)>   Record (JSON); workspace "_" for instance-level tokens
//
// Creating a token is a KV create (so a name is taken once), rotating is an update at the read
// revision, revoking is a purge.
const Bucket = "sluice_tokens"

// BucketConfig is the token store's configuration; every process ensures it with the same one.
func BucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "access tokens: names, scopes and secret hashes (owned by the catalog)",
		History:     1,
	}
}

// Kind tells tokens apart by what they are for.
type Kind string

// Token kinds. Service and JWT principals are not stored.
const (
	KindOperator Kind = "operator"
	KindAdmin    Kind = "admin"
	KindScoped   Kind = "scoped"
	KindService  Kind = "service"
	KindJWT      Kind = "jwt"
)

// Reserved token names.
const (
	// OperatorTokenName is the instance-level operator token's name.
	OperatorTokenName = "operator"
	// AdminTokenName is the name of every workspace's admin token.
	AdminTokenName = "admin"
	// ScheduledCopyTokenPrefix starts the name of the token push makes for a scheduled copy
	// whose pipe names none (as the hosted platform makes one per scheduled copy).
	ScheduledCopyTokenPrefix = "scheduled_copy_"
)

// tokenPrefix starts every built-in token: sluice_<id>_<secret>.
const tokenPrefix = "sluice_"

// Grant is one scope of a stored token. Datafile grants come from TOKEN lines of deployed
// datafiles (and scheduled copies); push keeps them in step with the files and leaves the
// others alone.
type Grant struct {
	Scope    string `json:"scope"`
	Datafile bool   `json:"datafile,omitempty"`
}

// Record is a stored token. It holds the SHA-256 of the secret, never the secret: secrets are
// 256 random bits, so a fast hash is as safe as a slow one and keeps verification cheap.
type Record struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Workspace string  `json:"workspace,omitempty"`
	Kind      Kind    `json:"kind"`
	Grants    []Grant `json:"grants,omitempty"`
	// Hash is the hex SHA-256 of the whole token text.
	Hash        string `json:"hash"`
	Description string `json:"description,omitempty"`
	// Managed tokens were made by push; push deletes them when no datafile grants remain.
	Managed    bool      `json:"managed,omitempty"`
	CreateTime time.Time `json:"create_time"`
	UpdateTime time.Time `json:"update_time"`
}

// Scopes returns the record's scopes; grants that do not parse (written by a newer version) are
// left out.
func (r *Record) Scopes() []Scope {
	out := make([]Scope, 0, len(r.Grants))
	for _, g := range r.Grants {
		if s, err := ParseScope(g.Scope); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// Key is the store key of a token.
func Key(workspace, name string) string {
	return KeyPrefix(workspace) + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// KeyPrefix starts the keys of a workspace's tokens ("" for instance-level ones).
func KeyPrefix(workspace string) string {
	if workspace == "" {
		workspace = "_"
	}
	return "tok." + workspace + "."
}

// NewToken makes a token: a fresh id and 256 random bits. It returns the text to give the user
// (shown once) and its hash to store.
func NewToken() (id, text, hash string, err error) {
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", "", fmt.Errorf("token id: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", "", "", fmt.Errorf("token secret: %w", err)
	}
	id = hex.EncodeToString(idb)
	text = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	return id, text, HashToken(text), nil
}

// NewSecretFor makes a new secret for an existing token id (rotation).
func NewSecretFor(id string) (text, hash string, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("token secret: %w", err)
	}
	text = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	return text, HashToken(text), nil
}

// HashToken is what the store keeps of a token's text.
func HashToken(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// TokenID returns the id inside a built-in token's text, or false when the text is not one.
func TokenID(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, tokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(secret) < 40 {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

// LooksLikeToken reports whether text has the shape of a built-in token (used to refuse a
// token file that holds something else).
func LooksLikeToken(text string) bool {
	_, ok := TokenID(text)
	return ok
}

// ValidateTokenName checks a token name: letters, digits, `_`, `-`, `.` and spaces, at most 128
// characters, not starting or ending with a space.
func ValidateTokenName(name string) error {
	if name == "" {
		return fmt.Errorf("a token name is required")
	}
	if utf8.RuneCountInString(name) > 128 {
		return fmt.Errorf("token name %q is longer than 128 characters", name)
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("token name %q starts or ends with a space", name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.', r == ' ':
		default:
			return fmt.Errorf("token name %q: %q is not allowed (letters, digits, _, -, . and spaces)", name, r)
		}
	}
	return nil
}
