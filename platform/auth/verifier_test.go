package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/natsx"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// store is a token store on a real embedded NATS server, written as the catalog writes it.
type store struct {
	t  *testing.T
	nc *natsx.Conn
}

func newStore(t *testing.T) *store {
	t.Helper()
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &store{t: t, nc: nc}
}

func (s *store) put(r Record) {
	s.t.Helper()
	kv, err := s.nc.EnsureKV(context.Background(), BucketConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	if _, err := kv.Put(context.Background(), Key(r.Workspace, r.Name), b); err != nil {
		s.t.Fatal(err)
	}
}

func (s *store) purge(ws, name string) {
	s.t.Helper()
	kv, _ := s.nc.EnsureKV(context.Background(), BucketConfig())
	if err := kv.Purge(context.Background(), Key(ws, name)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *store) token(ws, name string, kind Kind, scopes ...string) (Record, string) {
	s.t.Helper()
	id, text, hash, err := NewToken()
	if err != nil {
		s.t.Fatal(err)
	}
	r := Record{ID: id, Name: name, Workspace: ws, Kind: kind, Hash: hash, CreateTime: time.Now()}
	for _, sc := range scopes {
		r.Grants = append(r.Grants, Grant{Scope: sc})
	}
	s.put(r)
	return r, text
}

func startVerifier(t *testing.T, s *store, cfg Config, service string) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, s.nc, service, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	return v
}

func code(err error) codes.Code { return status.Code(err) }

// TestVerifierFollowsTheStore checks that a token works as soon as the store holds it (the
// verifier catches up on a miss), and stops working once it is rotated or deleted: the watch
// delivers the change to every verifier.
func TestVerifierFollowsTheStore(t *testing.T) {
	s := newStore(t)
	const service = "a-service-credential-of-32-chars!!"
	v := startVerifier(t, s, Config{MaxStaleness: 30 * time.Second}, service)
	other := startVerifier(t, s, Config{MaxStaleness: 30 * time.Second}, "") // another process
	ctx := context.Background()

	rec, text := s.token("shop", "app", KindScoped, "DATASOURCES:READ:events")
	// No wait: the token the store just took is accepted at once, by every verifier.
	for _, vv := range []*Verifier{v, other} {
		p, err := vv.Authenticate(ctx, text)
		if err != nil {
			t.Fatalf("fresh token refused: %v", err)
		}
		if p.Workspace != "shop" || p.Name != "app" || len(p.Scopes) != 1 || p.Scopes[0] != (Scope{DataSourcesRead, "events"}) {
			t.Fatalf("principal = %+v", p)
		}
	}
	p, _ := v.Authenticate(ctx, text)
	for _, bad := range []string{"", "bogus", text + "x", strings.Replace(text, rec.ID, "0123456789abcdef", 1), "Bearer " + text} {
		if _, err := v.Authenticate(ctx, bad); code(err) != codes.Unauthenticated {
			t.Errorf("Authenticate(%q) = %v, want Unauthenticated", bad, err)
		}
	}

	// Rotation: the old secret stops working everywhere, the new one works at once.
	newText, newHash, _ := NewSecretFor(rec.ID)
	rec.Hash = newHash
	s.put(rec)
	if _, err := other.Authenticate(ctx, newText); err != nil {
		t.Fatalf("rotated secret refused: %v", err)
	}
	for _, vv := range []*Verifier{v, other} {
		checkfor.Eventually(t, 10*time.Second, "the old secret to be refused", func() bool {
			_, err := vv.Authenticate(ctx, text)
			return code(err) == codes.Unauthenticated
		})
	}
	if v.StillValid(p) {
		t.Error("a principal of the old secret is still valid")
	}

	// Revocation.
	np, _ := v.Authenticate(ctx, newText)
	s.purge("shop", "app")
	for _, vv := range []*Verifier{v, other} {
		checkfor.Eventually(t, 10*time.Second, "the deleted token to be refused", func() bool {
			_, err := vv.Authenticate(ctx, newText)
			return code(err) == codes.Unauthenticated
		})
	}
	if v.StillValid(np) {
		t.Error("a principal of a deleted token is still valid")
	}

	// The service credential, compared in constant time, and only where it is configured.
	if p, err := v.Authenticate(ctx, service); err != nil || p.Kind != KindService || !p.Unrestricted() {
		t.Fatalf("service credential: %+v %v", p, err)
	}
	if _, err := other.Authenticate(ctx, service); code(err) != codes.Unauthenticated {
		t.Fatalf("a verifier without a service credential accepted one: %v", err)
	}

	// Lookup by name (a scheduled copy's token), also right after it is made.
	s.token("shop", "copier", KindScoped, "PIPES:READ:daily")
	if p, err := other.Lookup(ctx, "shop", "copier"); err != nil || p.Name != "copier" {
		t.Fatalf("lookup: %+v %v", p, err)
	}
	if _, err := other.Lookup(ctx, "shop", "nobody"); code(err) != codes.PermissionDenied {
		t.Fatalf("lookup of a missing token: %v", err)
	}
}

// TestVerifierRefusesWhenTheStoreCannotBeFollowed checks the fail-closed rule: once NATS has
// been unreachable for longer than MaxStaleness, stored tokens are refused (they may have been
// revoked meanwhile) and the service credential still works.
func TestVerifierRefusesWhenTheStoreCannotBeFollowed(t *testing.T) {
	s := newStore(t)
	const service = "a-service-credential-of-32-chars!!"
	v := startVerifier(t, s, Config{MaxStaleness: 2 * time.Second}, service)
	_, text := s.token("shop", "app", KindScoped, "JOBS:READ")
	if _, err := v.Authenticate(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now.Add(time.Minute) } // the watch has not confirmed for a minute
	v.freshAt.Store(now.UnixNano())
	if _, err := v.Authenticate(context.Background(), text); code(err) != codes.Unavailable {
		t.Fatalf("stale store: %v, want Unavailable", err)
	}
	if _, err := v.Authenticate(context.Background(), service); err != nil {
		t.Fatalf("service credential with a stale store: %v", err)
	}
}

func TestAuthorizeFillsAndChecksTheWorkspace(t *testing.T) {
	reader := &Principal{Kind: KindScoped, Name: "r", Workspace: "shop", Scopes: []Scope{{DataSourcesRead, "events"}}}
	operator := &Principal{Kind: KindOperator, Name: "operator"}
	get := Rules[catalogv1.CatalogService_GetDataSource_FullMethodName]

	req := &catalogv1.GetDataSourceRequest{Name: "events"}
	if err := authorize(reader, "m", get, protoFields{req.ProtoReflect()}); err != nil || req.GetWorkspace() != "shop" {
		t.Fatalf("empty workspace: %v, workspace %q; want the token's filled in", err, req.GetWorkspace())
	}
	if err := authorize(reader, "m", get, protoFields{(&catalogv1.GetDataSourceRequest{Workspace: "other", Name: "events"}).ProtoReflect()}); code(err) != codes.PermissionDenied {
		t.Fatalf("another workspace: %v", err)
	}
	if err := authorize(reader, "m", get, protoFields{(&catalogv1.GetDataSourceRequest{Workspace: "shop", Name: "orders"}).ProtoReflect()}); code(err) != codes.PermissionDenied {
		t.Fatalf("another Data Source: %v", err)
	}
	if err := authorize(operator, "m", get, protoFields{(&catalogv1.GetDataSourceRequest{Name: "events"}).ProtoReflect()}); code(err) != codes.InvalidArgument {
		t.Fatalf("operator without a workspace: %v", err)
	}
	if err := authorize(operator, "m", get, protoFields{(&catalogv1.GetDataSourceRequest{Workspace: "any", Name: "x"}).ProtoReflect()}); err != nil {
		t.Fatalf("operator: %v", err)
	}
	// A nested workspace field (the ops log's filter), created when missing.
	q := &opslogv1.QueryEventsRequest{}
	if err := authorize(&Principal{Kind: KindScoped, Workspace: "shop", Scopes: []Scope{{Type: OpsLogRead}}}, "m",
		Rules[opslogv1.OpsLogService_QueryEvents_FullMethodName], protoFields{q.ProtoReflect()}); err != nil || q.GetFilter().GetWorkspace() != "shop" {
		t.Fatalf("ops log filter: %v %v", err, q)
	}
	if err := authorize(reader, "m", Rules[catalogv1.CatalogService_ListWorkspaces_FullMethodName], nil); code(err) != codes.PermissionDenied {
		t.Fatalf("a workspace token listing workspaces: %v", err)
	}
	if err := authorize(reader, "m", Rules["GET /metrics"], nil); code(err) != codes.PermissionDenied {
		t.Fatalf("a workspace token reading metrics: %v", err)
	}
}

// TestRulesNameRealFields checks that every field the table names (workspace, resource) is a
// string field of its RPC's request.
func TestRulesNameRealFields(t *testing.T) {
	checked := 0
	err := CheckRuleFields(func(method string) (protoreflect.MessageDescriptor, bool) {
		svc, m, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
		if !ok {
			return nil, false
		}
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Errorf("%s: service not registered: %v", method, err)
			return nil, false
		}
		md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(m))
		if md == nil {
			t.Errorf("%s: no such method", method)
			return nil, false
		}
		checked++
		return md.Input(), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 25 {
		t.Fatalf("only %d workspace rules checked", checked)
	}
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJWT(t *testing.T) {
	s := newStore(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret := []byte("a-shared-secret-that-is-long-enough-for-hs256")
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := func(k any) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, "PUBLIC KEY", der)
	}
	exp := time.Now().Add(time.Hour).Unix()
	claims := jwt.MapClaims{"workspace": "shop", "scopes": []string{"PIPES:READ:daily"}, "exp": exp, "name": "dashboard", "iss": "idp"}
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		keyArg Config
		method jwt.SigningMethod
		key    any
	}{
		{"RS256", Config{JWTKeyFile: pub(&rsaKey.PublicKey)}, jwt.SigningMethodRS256, rsaKey},
		{"ES256", Config{JWTKeyFile: pub(&ecKey.PublicKey)}, jwt.SigningMethodES256, ecKey},
		{"EdDSA", Config{JWTKeyFile: pub(edPub)}, jwt.SigningMethodEdDSA, edKey},
		{"HS256", Config{JWTSecretFile: secretFile}, jwt.SigningMethodHS256, secret},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.keyArg
			cfg.JWTIssuer = "idp"
			v := startVerifier(t, s, cfg, "")
			sign := func(cl jwt.MapClaims, m jwt.SigningMethod, key any) string {
				t.Helper()
				tok, err := jwt.NewWithClaims(m, cl).SignedString(key)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			p, err := v.Authenticate(ctx, sign(claims, c.method, c.key))
			if err != nil || p.Kind != KindJWT || p.Workspace != "shop" || p.Name != "dashboard" || !p.Allows("shop", Scope{PipesRead, "daily"}) || p.Allows("shop", Scope{PipesRead, "other"}) {
				t.Fatalf("valid JWT: %+v %v", p, err)
			}
			with := func(k string, val any) jwt.MapClaims {
				m := jwt.MapClaims{}
				for kk, vv := range claims {
					m[kk] = vv
				}
				if val == nil {
					delete(m, k)
				} else {
					m[k] = val
				}
				return m
			}
			refused := map[string]string{
				"expired":         sign(with("exp", time.Now().Add(-time.Hour).Unix()), c.method, c.key),
				"no expiry":       sign(with("exp", nil), c.method, c.key),
				"no workspace":    sign(with("workspace", nil), c.method, c.key),
				"other issuer":    sign(with("iss", "evil"), c.method, c.key),
				"instance scope":  sign(with("scopes", []string{"METRICS:READ"}), c.method, c.key),
				"unknown scope":   sign(with("scopes", []string{"ROOT"}), c.method, c.key),
				"no scope":        sign(with("scopes", []string{}), c.method, c.key),
				"other key":       sign(claims, jwt.SigningMethodES256, otherKey),
				"alg none":        sign(claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
				"tampered":        tamper(sign(claims, c.method, c.key)),
				"hs with the key": sign(claims, jwt.SigningMethodHS256, []byte(c.keyArg.JWTKeyFile)),
			}
			for what, tok := range refused {
				if _, err := v.Authenticate(ctx, tok); code(err) != codes.Unauthenticated {
					t.Errorf("%s: %v, want Unauthenticated", what, err)
				}
			}
			// The hosted platform's scope objects.
			hosted := with("scopes", []map[string]string{{"type": "DATASOURCES:READ", "resource": "events"}})
			if p, err := v.Authenticate(ctx, sign(hosted, c.method, c.key)); err != nil || !p.Allows("shop", Scope{DataSourcesRead, "events"}) {
				t.Fatalf("scope objects: %+v %v", p, err)
			}
		})
	}
}

// tamper changes the payload of a JWT, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := jwt.NewParser().DecodeSegment(parts[1])
	b = []byte(strings.Replace(string(b), `"shop"`, `"evil"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}
