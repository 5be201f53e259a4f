package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/platform/natsx"
)

// Config selects how calls are authenticated.
type Config struct {
	// ServiceTokenFile holds the credential Sluice's services use to call each other. Every
	// process of a split installation reads the same one (a Kubernetes Secret, for example);
	// all-in-one processes make a random one at start when it is unset.
	ServiceTokenFile string `yaml:"service_token_file"`
	// OperatorTokenFile is where the catalog writes the operator token on first start
	// (default <data-dir>/token). A token already in the file when the store has none becomes
	// the operator token, so an installation can bring its own.
	OperatorTokenFile string `yaml:"operator_token_file"`
	// JWTKeyFile is a PEM public key or certificate (RSA, ECDSA, Ed25519) that verifies JWTs.
	JWTKeyFile string `yaml:"jwt_key_file"`
	// JWTSecretFile is a shared secret (at least 32 bytes) that verifies HMAC-signed JWTs.
	JWTSecretFile string `yaml:"jwt_secret_file"`
	// JWTIssuer, when set, must be the JWTs' `iss`.
	JWTIssuer string `yaml:"jwt_issuer"`
	// JWTAudience, when set, must be in the JWTs' `aud`.
	JWTAudience string `yaml:"jwt_audience"`
	// MaxStaleness is how long a process keeps accepting stored tokens while it cannot follow
	// the token store (NATS unreachable): past it, calls fail UNAVAILABLE rather than trust a
	// token that may have been revoked meanwhile.
	MaxStaleness time.Duration `yaml:"max_staleness"`
}

// RegisterFlags registers the auth flags; their defaults are the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ServiceTokenFile, "auth.service-token-file", "", "file holding the credential services use to call each other (required in split mode; the same file for every process)")
	fs.StringVar(&c.OperatorTokenFile, "auth.operator-token-file", "", "where the catalog writes the operator token on first start (default <data-dir>/token)")
	fs.StringVar(&c.JWTKeyFile, "auth.jwt-key-file", "", "PEM public key or certificate that verifies JWTs (RSA, ECDSA, Ed25519)")
	fs.StringVar(&c.JWTSecretFile, "auth.jwt-secret-file", "", "shared secret that verifies HMAC-signed JWTs (at least 32 bytes)")
	fs.StringVar(&c.JWTIssuer, "auth.jwt-issuer", "", "required `iss` of JWTs (empty: not checked)")
	fs.StringVar(&c.JWTAudience, "auth.jwt-audience", "", "required `aud` of JWTs (empty: not checked)")
	fs.DurationVar(&c.MaxStaleness, "auth.max-staleness", 30*time.Second, "how long tokens are accepted while the token store cannot be followed")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.MaxStaleness <= 0 {
		return fmt.Errorf("auth.max_staleness: %s must be positive", c.MaxStaleness)
	}
	if c.ServiceTokenFile != "" {
		if _, err := ReadServiceToken(c.ServiceTokenFile); err != nil {
			return err
		}
	}
	if c.JWTSecretFile != "" || c.JWTKeyFile != "" {
		if _, err := newJWTVerifier(c, time.Now); err != nil {
			return err
		}
	}
	return nil
}

// ReadServiceToken reads the service credential file: its content without surrounding space,
// at least 32 characters.
func ReadServiceToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth.service_token_file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 32 {
		return "", fmt.Errorf("auth.service_token_file %s: the credential must be at least 32 characters (for example: head -c 32 /dev/urandom | base64 > %s)", path, path)
	}
	return s, nil
}

// Verifier turns the bearer token of a call into a Principal. Stored tokens are checked against
// a local copy of the token store, kept current by a KV watch: a token deleted or rotated in
// the store stops working here as soon as the watch delivers the change (milliseconds). A token
// the copy does not know (yet) makes the verifier catch up with the store once before refusing,
// so a token is usable as soon as the call that created it returns.
type Verifier struct {
	cfg         Config
	log         *slog.Logger
	nats        *natsx.Conn
	serviceHash []byte
	jwt         *jwtVerifier
	now         func() time.Time

	mu      sync.RWMutex
	byID    map[string]*Record
	byKey   map[string]string // store key → token id
	lastRev uint64
	loaded  bool
	// changed is closed (and replaced) whenever the copy changes.
	changed chan struct{}
	// freshAt is when the copy was last known to follow the store (UnixNano).
	freshAt atomic.Int64
	kv      jetstream.KeyValue

	syncMu   sync.Mutex
	syncedAt atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
}

// NewVerifier builds a verifier. serviceToken is the service credential ("" accepts none).
func NewVerifier(cfg Config, nc *natsx.Conn, serviceToken string, log *slog.Logger) (*Verifier, error) {
	v := &Verifier{cfg: cfg, log: log, nats: nc, now: time.Now, byID: map[string]*Record{}, byKey: map[string]string{}, changed: make(chan struct{})}
	if v.cfg.MaxStaleness <= 0 {
		v.cfg.MaxStaleness = 30 * time.Second
	}
	if serviceToken != "" {
		sum := sha256.Sum256([]byte(serviceToken))
		v.serviceHash = sum[:]
	}
	j, err := newJWTVerifier(cfg, func() time.Time { return v.now() })
	if err != nil {
		return nil, err
	}
	v.jwt = j
	return v, nil
}

// Start loads the token store and follows it in the background. It waits for the first load
// up to ctx's deadline; if the store cannot be read yet, calls are refused UNAVAILABLE until it
// can (the watch keeps retrying).
func (v *Verifier) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.done = make(chan struct{})
	go v.run(runCtx)
	for {
		v.mu.RLock()
		loaded, ch := v.loaded, v.changed
		v.mu.RUnlock()
		if loaded {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			v.log.Warn("token store not loaded yet; calls are refused until it is", "err", ctx.Err())
			return nil
		}
	}
}

// Stop ends the watch.
func (v *Verifier) Stop() {
	if v.cancel != nil {
		v.cancel()
		<-v.done
	}
}

func (v *Verifier) run(ctx context.Context) {
	defer close(v.done)
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := v.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		v.log.Warn("token store watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// watch loads the whole store into a fresh copy, swaps it in, then applies every change.
func (v *Verifier) watch(ctx context.Context) error {
	kv, err := v.nats.EnsureKV(ctx, BucketConfig())
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	byID, byKey, rev := map[string]*Record{}, map[string]string{}, uint64(0)
	initial := true
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if !initial && v.nats.NC.IsConnected() {
				v.freshAt.Store(v.now().UnixNano())
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if initial {
				if e == nil {
					initial = false
					v.mu.Lock()
					v.kv, v.byID, v.byKey, v.lastRev, v.loaded = kv, byID, byKey, max(rev, v.lastRev), true
					v.notifyLocked()
					v.mu.Unlock()
					v.freshAt.Store(v.now().UnixNano())
					v.log.Debug("token store loaded", "tokens", len(byID))
					continue
				}
				rev = max(rev, e.Revision())
				v.apply(byID, byKey, e)
				continue
			}
			if e == nil {
				continue
			}
			v.mu.Lock()
			v.apply(v.byID, v.byKey, e)
			v.lastRev = max(v.lastRev, e.Revision())
			v.notifyLocked()
			v.mu.Unlock()
		}
	}
}

func (v *Verifier) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *Verifier) apply(byID map[string]*Record, byKey map[string]string, e jetstream.KeyValueEntry) {
	if old, ok := byKey[e.Key()]; ok {
		delete(byID, old)
		delete(byKey, e.Key())
	}
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID == "" {
		v.log.Warn("token store: unreadable record ignored", "key", e.Key(), "err", err)
		return
	}
	byID[r.ID] = &r
	byKey[e.Key()] = r.ID
}

// catchUp waits until the local copy holds every change the store had when it was called (at
// most two seconds). Concurrent callers share one catch-up.
func (v *Verifier) catchUp(ctx context.Context, missedAt time.Time) {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	if v.syncedAt.Load() > missedAt.UnixNano() {
		return // a catch-up that started after the miss has finished
	}
	started := v.now()
	defer func() { v.syncedAt.Store(started.UnixNano()) }()
	v.mu.RLock()
	kv := v.kv
	v.mu.RUnlock()
	if kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return
	}
	target := bs.StreamInfo().State.LastSeq
	for {
		v.mu.RLock()
		rev, ch := v.lastRev, v.changed
		v.mu.RUnlock()
		if rev >= target {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Authenticate verifies a bearer token. Errors are gRPC statuses: UNAUTHENTICATED for a token
// that is not valid (the message never says why a well-formed token failed: unknown, revoked
// and rotated look the same), UNAVAILABLE when the token store cannot be trusted right now.
func (v *Verifier) Authenticate(ctx context.Context, text string) (*Principal, error) {
	if text == "" {
		return nil, status.Error(codes.Unauthenticated, "no token: send `authorization: Bearer <token>` (sluice --token, or SLUICE_TOKEN)")
	}
	if v.serviceHash != nil {
		sum := sha256.Sum256([]byte(text))
		if subtle.ConstantTimeCompare(sum[:], v.serviceHash) == 1 {
			return &Principal{Kind: KindService, Name: "service"}, nil
		}
	}
	if id, ok := TokenID(text); ok {
		return v.stored(ctx, id, text)
	}
	if v.jwt != nil && looksLikeJWT(text) {
		p, err := v.jwt.verify(text)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return p, nil
	}
	return nil, status.Error(codes.Unauthenticated, "invalid token")
}

func (v *Verifier) stored(ctx context.Context, id, text string) (*Principal, error) {
	if err := v.usable(); err != nil {
		return nil, err
	}
	want, _ := hex.DecodeString(HashToken(text))
	check := func() *Principal {
		v.mu.RLock()
		defer v.mu.RUnlock()
		r, ok := v.byID[id]
		if !ok {
			return nil
		}
		have, err := hex.DecodeString(r.Hash)
		if err != nil || subtle.ConstantTimeCompare(have, want) != 1 {
			return nil
		}
		return principalOf(r)
	}
	if p := check(); p != nil {
		return p, nil
	}
	v.catchUp(ctx, v.now())
	if p := check(); p != nil {
		return p, nil
	}
	return nil, status.Error(codes.Unauthenticated, "invalid token (unknown, revoked or rotated)")
}

func (v *Verifier) usable() error {
	v.mu.RLock()
	loaded := v.loaded
	v.mu.RUnlock()
	if !loaded {
		return status.Error(codes.Unavailable, "the token store is not loaded yet (is NATS reachable?); try again")
	}
	if age := v.now().Sub(time.Unix(0, v.freshAt.Load())); age > v.cfg.MaxStaleness {
		return status.Errorf(codes.Unavailable, "the token store has not been reachable for %s (NATS down?): tokens are refused until it is", age.Truncate(time.Second))
	}
	return nil
}

func principalOf(r *Record) *Principal {
	return &Principal{Kind: r.Kind, TokenID: r.ID, Name: r.Name, Workspace: r.Workspace, Scopes: r.Scopes(), Hash: r.Hash}
}

// StillValid reports whether a principal authenticated earlier is still valid: its stored
// token not deleted nor rotated, its JWT not expired. Long streams check it as they go.
func (v *Verifier) StillValid(p *Principal) bool {
	for _, q := range []*Principal{p, p.OnBehalfOf} {
		if q == nil {
			continue
		}
		switch q.Kind {
		case KindService:
		case KindJWT:
			if !q.Expires.IsZero() && v.now().After(q.Expires) {
				return false
			}
		default:
			if v.usable() != nil {
				return false
			}
			v.mu.RLock()
			r, ok := v.byID[q.TokenID]
			v.mu.RUnlock()
			if !ok || r.Hash != q.Hash {
				return false
			}
		}
	}
	return true
}

// Lookup returns the principal of a stored token by workspace and name (for a scheduled copy,
// which runs with the token its pipe names).
func (v *Verifier) Lookup(ctx context.Context, workspace, name string) (*Principal, error) {
	if err := v.usable(); err != nil {
		return nil, err
	}
	find := func() *Principal {
		v.mu.RLock()
		defer v.mu.RUnlock()
		if id, ok := v.byKey[Key(workspace, name)]; ok {
			return principalOf(v.byID[id])
		}
		return nil
	}
	if p := find(); p != nil {
		return p, nil
	}
	v.catchUp(ctx, v.now())
	if p := find(); p != nil {
		return p, nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "token %q of workspace %s does not exist (deleted?)", name, workspace)
}
