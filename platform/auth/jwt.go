package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JSON Web Tokens let operators use their identity provider: a JWT signed with a key Sluice is
// configured with (a PEM public key or certificate: RSA, ECDSA or Ed25519; or a shared HMAC
// secret) is a second way to authenticate. Its claims name the workspace and the scopes:
//
//	{"workspace": "shop", "scopes": ["PIPES:READ:daily", "JOBS:READ"], "exp": 1767225600, "name": "dashboard"}
//
// `workspace_id` is read as well as `workspace`; `scopes` may also be the hosted platform's
// form, [{"type": "PIPES:READ", "resource": "daily"}], or an OAuth-style `scope` string of
// space-separated scopes. `exp` is required. A JWT cannot be the operator or an instance-level
// token: those are the built-in tokens only.

type jwtVerifier struct {
	keys    []crypto.PublicKey
	secret  []byte
	methods []string
	opts    []jwt.ParserOption
}

// newJWTVerifier reads the configured key; it returns nil when JWTs are not configured.
func newJWTVerifier(cfg Config, now func() time.Time) (*jwtVerifier, error) {
	if cfg.JWTKeyFile == "" && cfg.JWTSecretFile == "" {
		return nil, nil
	}
	j := &jwtVerifier{}
	if cfg.JWTKeyFile != "" {
		b, err := os.ReadFile(cfg.JWTKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt_key_file: %w", err)
		}
		if j.keys, err = parsePublicKeys(b); err != nil {
			return nil, fmt.Errorf("auth.jwt_key_file %s: %w", cfg.JWTKeyFile, err)
		}
		for _, k := range j.keys {
			switch k.(type) {
			case *rsa.PublicKey:
				j.methods = append(j.methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
			case *ecdsa.PublicKey:
				j.methods = append(j.methods, "ES256", "ES384", "ES512")
			case ed25519.PublicKey:
				j.methods = append(j.methods, "EdDSA")
			}
		}
	}
	if cfg.JWTSecretFile != "" {
		b, err := os.ReadFile(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt_secret_file: %w", err)
		}
		j.secret = []byte(strings.TrimSpace(string(b)))
		if len(j.secret) < 32 {
			return nil, fmt.Errorf("auth.jwt_secret_file %s: the secret must be at least 32 bytes", cfg.JWTSecretFile)
		}
		j.methods = append(j.methods, "HS256", "HS384", "HS512")
	}
	j.opts = []jwt.ParserOption{jwt.WithValidMethods(j.methods), jwt.WithExpirationRequired(), jwt.WithTimeFunc(now), jwt.WithLeeway(30 * time.Second)}
	if cfg.JWTIssuer != "" {
		j.opts = append(j.opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		j.opts = append(j.opts, jwt.WithAudience(cfg.JWTAudience))
	}
	return j, nil
}

func parsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, c.PublicKey)
		default:
			return nil, fmt.Errorf("PEM block %q: expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", block.Type)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return keys, nil
}

// looksLikeJWT reports whether text has the three base64url parts of a JWS.
func looksLikeJWT(text string) bool {
	return strings.Count(text, ".") == 2 && strings.HasPrefix(text, "eyJ")
}

type jwtClaims struct {
	jwt.RegisteredClaims
	Workspace   string          `json:"workspace"`
	WorkspaceID string          `json:"workspace_id"`
	Name        string          `json:"name"`
	Scopes      json.RawMessage `json:"scopes"`
	Scope       string          `json:"scope"`
}

func (j *jwtVerifier) verify(text string) (*Principal, error) {
	var claims jwtClaims
	_, err := jwt.ParseWithClaims(text, &claims, func(t *jwt.Token) (any, error) {
		if strings.HasPrefix(t.Method.Alg(), "HS") {
			return j.secret, nil
		}
		set := jwt.VerificationKeySet{}
		for _, k := range j.keys {
			set.Keys = append(set.Keys, k)
		}
		return set, nil
	}, j.opts...)
	if err != nil {
		return nil, fmt.Errorf("JWT not accepted: %w", err)
	}
	ws := claims.Workspace
	if ws == "" {
		ws = claims.WorkspaceID
	}
	if ws == "" {
		return nil, errors.New("JWT not accepted: it names no workspace (claim \"workspace\")")
	}
	texts, err := claims.scopeTexts()
	if err != nil {
		return nil, err
	}
	scopes, err := ParseScopes(texts)
	if err != nil {
		return nil, fmt.Errorf("JWT not accepted: %w", err)
	}
	if len(scopes) == 0 {
		return nil, errors.New("JWT not accepted: it grants no scope (claim \"scopes\")")
	}
	for _, s := range scopes {
		if s.Instance() {
			return nil, fmt.Errorf("JWT not accepted: %s is an instance scope; JWTs grant workspace scopes only", s)
		}
	}
	name := claims.Name
	if name == "" {
		name = claims.Subject
	}
	p := &Principal{Kind: KindJWT, Name: name, Workspace: ws, Scopes: scopes}
	if claims.ExpiresAt != nil {
		p.Expires = claims.ExpiresAt.Time
	}
	return p, nil
}

func (c jwtClaims) scopeTexts() ([]string, error) {
	var out []string
	if len(c.Scopes) > 0 && string(c.Scopes) != "null" {
		var strs []string
		if err := json.Unmarshal(c.Scopes, &strs); err == nil {
			out = append(out, strs...)
		} else {
			var objs []struct {
				Type     string `json:"type"`
				Resource string `json:"resource"`
			}
			if err := json.Unmarshal(c.Scopes, &objs); err != nil {
				return nil, errors.New(`JWT not accepted: claim "scopes" must be a list of scopes ("PIPES:READ:name") or of {"type", "resource"} objects`)
			}
			for _, o := range objs {
				if o.Resource != "" {
					out = append(out, o.Type+":"+o.Resource)
				} else {
					out = append(out, o.Type)
				}
			}
		}
	}
	out = append(out, strings.Fields(c.Scope)...)
	return out, nil
}
