package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/platform/natsx"
)

func benchVerifier(b *testing.B, cfg Config) (*Verifier, *natsx.Conn) {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: b.TempDir()}, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	cfg.MaxStaleness = time.Minute
	v, err := NewVerifier(cfg, nc, "a-service-credential-of-32-chars!!", log)
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Stop)
	return v, nc
}

func putToken(b *testing.B, nc *natsx.Conn, ws, name string) string {
	b.Helper()
	id, text, hash, _ := NewToken()
	kv, err := nc.EnsureKV(context.Background(), BucketConfig())
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(Record{ID: id, Name: name, Workspace: ws, Kind: KindScoped, Hash: hash, Grants: []Grant{{Scope: "JOBS:READ"}}})
	if _, err := kv.Put(context.Background(), Key(ws, name), raw); err != nil {
		b.Fatal(err)
	}
	return text
}

// BenchmarkAuthenticate is what verifying a call's token costs: a stored token (hash and
// constant-time compare against the local copy), the service credential, and an ES256 JWT.
func BenchmarkAuthenticate(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	v, nc := benchVerifier(b, Config{JWTKeyFile: writePEMB(b, der)})
	stored := putToken(b, nc, "shop", "app")
	jwtText, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"workspace": "shop", "scopes": []string{"JOBS:READ"}, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(key)
	ctx := context.Background()
	for _, c := range []struct{ name, text string }{{"stored", stored}, {"service", "a-service-credential-of-32-chars!!"}, {"jwt-es256", jwtText}} {
		b.Run(c.name, func(b *testing.B) {
			if _, err := v.Authenticate(ctx, c.text); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Authenticate(ctx, c.text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRevocation measures how long after a token's deletion returns a verifier (another
// than the writer's) refuses it: the watch's delivery time.
func BenchmarkRevocation(b *testing.B) {
	v, nc := benchVerifier(b, Config{})
	kv, _ := nc.EnsureKV(context.Background(), BucketConfig())
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		text := putToken(b, nc, "shop", "t")
		if _, err := v.Authenticate(ctx, text); err != nil {
			b.Fatal(err)
		}
		if err := kv.Purge(ctx, Key("shop", "t")); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			v.mu.RLock()
			_, known := v.byKey[Key("shop", "t")]
			v.mu.RUnlock()
			if !known {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-to-refusal")
}

func writePEMB(b *testing.B, der []byte) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}
