// Package natsx gives a process its NATS connection: either to an embedded nats-server with
// JetStream (all-in-one mode, data under the process's data directory) or to an external NATS
// server or cluster. Services only ever see the connection.
package natsx

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
)

// Config selects and tunes the NATS connection.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated). Empty runs an embedded server.
	URL string `yaml:"url"`
	// StoreDir is where the embedded server keeps JetStream data.
	StoreDir string `yaml:"store_dir"`
	// Listen is the embedded server's client address (host:port; port 0 picks a free one).
	Listen string `yaml:"listen"`
	// Replicas for the streams and buckets services create (1 for a single server).
	Replicas int `yaml:"replicas"`
	// User and Password authenticate to an external server (also accepted in the URL).
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// CredsFile is a NATS credentials file (user JWT and nkey seed, from nsc).
	CredsFile string `yaml:"creds_file"`
	// NKeyFile is a file holding an nkey seed (a server that authenticates users by nkey).
	NKeyFile string `yaml:"nkey_file"`
	// TLSCA verifies the server's certificate (tls:// URLs, or servers that require TLS).
	TLSCA string `yaml:"tls_ca"`
	// TLSCert and TLSKey are a client certificate for servers that verify clients.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Name identifies the connection in the server's monitoring.
	Name string `yaml:"-"`
}

// Validate checks the values; embedded tells whether the process runs its own server.
func (c Config) Validate(embedded bool) error {
	var errs []error
	if embedded {
		if c.Listen != "" {
			host, _, err := net.SplitHostPort(c.Listen)
			if err != nil {
				errs = append(errs, fmt.Errorf("nats.listen: %q: %w", c.Listen, err))
			} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				errs = append(errs, fmt.Errorf("nats.listen: %q: the embedded NATS server listens on loopback only (127.0.0.1, ::1 or localhost), or nowhere with an empty value; run a NATS server (-nats-url) to reach it from other hosts", c.Listen))
			}
		}
		for key, v := range map[string]string{"nats.user": c.User, "nats.creds_file": c.CredsFile, "nats.nkey_file": c.NKeyFile, "nats.tls_ca": c.TLSCA} {
			if v != "" {
				errs = append(errs, fmt.Errorf("%s: only for an external server (-nats-url); the embedded server makes its own credentials", key))
			}
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("nats.tls_cert and nats.tls_key go together"))
	}
	n := 0
	for _, v := range []string{c.User, c.CredsFile, c.NKeyFile} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("nats: give one of user/password, creds_file or nkey_file"))
	}
	return errors.Join(errs...)
}

// authOptions are the connection options for the configured credentials and TLS.
func (c Config) authOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// Conn is a process's NATS connection with JetStream.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Replicas int

	server *server.Server
	// user and password of the embedded server (random at every start).
	user, password string
	log            *slog.Logger
	url            string
}

// Connect starts the embedded server when cfg.URL is empty, then connects.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	c := &Conn{Replicas: max(cfg.Replicas, 1), log: log}
	url := cfg.URL
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if url == "" {
		// The embedded server takes clients on loopback only, and only with a password made
		// at every start: Sluice's own connection is in-process; tests and tools of the same
		// process get the URL with the password (EmbeddedURL).
		c.user, c.password = "sluice", randomPassword()
		srv, err := startEmbedded(cfg, c.user, c.password)
		if err != nil {
			return nil, err
		}
		c.server = srv
		url = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(srv), nats.UserInfo(c.user, c.password))
		log.Info("embedded nats started", "url", url, "store_dir", cfg.StoreDir, "listening", cfg.Listen != "")
	} else {
		ao, err := cfg.authOptions()
		if err != nil {
			return nil, err
		}
		opts = append(opts, ao...)
	}
	if cfg.URL != "" {
		// An external server may be down when the process starts: the connection is made as
		// soon as it answers (Ready tells when), and the process waits for it meanwhile.
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("connect to nats at %s: %w", redact(url), err)
	}
	if err := checkClusterVersion(nc); err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("nats at %s: %w", redact(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.NC, c.JS, c.url = nc, js, url
	if !nc.IsConnected() {
		// Refused credentials are a configuration error, which waiting does not cure.
		if err := nc.LastError(); authError(err) {
			nc.Close()
			c.shutdownServer()
			return nil, fmt.Errorf("connect to nats at %s: %w", redact(url), err)
		}
		log.Warn("nats is not reachable yet; the services that need it wait for it", "url", redact(url))
		return c, nil
	}
	// Fail early, with a clear message, when the server has no JetStream.
	if err := c.Ready(ctx); err != nil && !errors.Is(err, ErrUnreachable) {
		c.Close()
		return nil, err
	}
	return c, nil
}

// redact hides the passwords of a URL list (user:password@host) for messages and logs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

func randomPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// authError reports whether a connection error is the server refusing the credentials.
func authError(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrAccountAuthExpired) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization violation") || strings.Contains(msg, "authentication")
}

// ErrUnreachable marks an error of Ready that waiting may cure: the server does not answer.
var ErrUnreachable = errors.New("unreachable")

// Ready reports whether NATS is usable now: nil when connected with JetStream answering; an
// error wrapping ErrUnreachable when the server cannot be reached (yet); another error when it
// answers without JetStream, which waiting does not cure.
func (c *Conn) Ready(ctx context.Context) error {
	if !c.NC.IsConnected() {
		return fmt.Errorf("NATS at %s: %w: not connected (%s)", redact(c.url), ErrUnreachable, c.NC.Status())
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.JS.AccountInfo(actx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("nats at %s: jetstream not available (run nats-server with -js): %w", redact(c.url), err)
	}
	return fmt.Errorf("NATS at %s: %w: jetstream does not answer: %w", redact(c.url), ErrUnreachable, err)
}

// checkClusterVersion refuses NATS clusters of servers older than 2.10: a 3-node cluster of
// nats-server 2.9.10 (Debian bookworm's package) accepted 600 concurrent compare-and-set
// updates of one key and kept the effect of about 300 (2.9.25, 2.10.0 and 2.15.2 kept all of
// them). Job records are written with compare-and-set by the scheduler and every executor;
// lost updates leave jobs unfinished. A single server (no cluster) is not affected.
func checkClusterVersion(nc *nats.Conn) error {
	cluster, version := nc.ConnectedClusterName(), nc.ConnectedServerVersion()
	if cluster == "" || versionAtLeast(version, 2, 10) {
		return nil
	}
	return fmt.Errorf("nats-server %s in cluster %s: clusters of nats-server before 2.10 lose concurrent compare-and-set updates of key-value buckets, which Sluice's job records rely on; upgrade the NATS servers to 2.10 or newer", version, cluster)
}

// versionAtLeast reports whether a server version (major.minor.patch[-suffix]) is at least
// major.minor.
func versionAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func startEmbedded(cfg Config, user, password string) (*server.Server, error) {
	host, port := "127.0.0.1", -1
	if cfg.Listen != "" {
		h, p, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: bad port", cfg.Listen)
		}
		host, port = h, n
		if port == 0 {
			port = -1
		}
	}
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats needs a store directory (-data-dir)")
	}
	opts := &server.Options{
		ServerName: "sluice-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(cfg.StoreDir),
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		Users:      []*server.User{{Username: user, Password: password}},
		// A single embedded server holds all of a small installation's control state.
		JetStreamMaxMemory: 256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats did not become ready within 30s")
	}
	return srv, nil
}

// ClientURL is the address of the embedded server (without credentials), or empty.
func (c *Conn) ClientURL() string {
	if c.server == nil {
		return ""
	}
	return c.server.ClientURL()
}

// EmbeddedURL is the URL of the embedded server with its credentials, for tests and tools of
// the same process; empty without an embedded server. Never log it.
func (c *Conn) EmbeddedURL() string {
	if c.server == nil {
		return ""
	}
	u, err := url.Parse(c.server.ClientURL())
	if err != nil {
		return ""
	}
	u.User = url.UserPassword(c.user, c.password)
	return u.String()
}

// Close drains the connection and stops the embedded server, if any.
func (c *Conn) Close() {
	if c.NC != nil {
		if err := c.NC.Drain(); err != nil {
			c.NC.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for !c.NC.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c.NC.Close()
	}
	c.shutdownServer()
}

func (c *Conn) shutdownServer() {
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
		c.server = nil
	}
}

// EnsureStream creates the stream or updates it to cfg; it is safe to call at every start from
// every replica of a service.
func (c *Conn) EnsureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = c.Replicas
	}
	var s jetstream.Stream
	err := retryCreate(ctx, func(ctx context.Context) (err error) {
		s, err = CreateOrUpdateStream(ctx, c.JS, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// EnsureKV creates the key-value bucket or updates it to cfg.
func (c *Conn) EnsureKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = c.Replicas
	}
	var kv jetstream.KeyValue
	err := retryCreate(ctx, func(ctx context.Context) (err error) {
		kv, err = CreateOrUpdateKeyValue(ctx, c.JS, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// CreateOrUpdateStream creates the stream, and updates it only when it exists with another
// configuration. The client library's own CreateOrUpdateStream asks for an update first, and
// an update that reaches nats-server 2.9 while another process's creation of the same stream
// is half done (registered, its store not yet open) crashes the server (nil store in
// stream.update); processes that start together create the same streams at once. A creation
// with the configuration the stream already has is answered with the stream, store or not.
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.UpdateStream(ctx, cfg)
	}
	return s, err
}

// CreateOrUpdateKeyValue is CreateOrUpdateStream for a key-value bucket.
func CreateOrUpdateKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// createTimeout bounds the retries of a stream or bucket creation that times out or finds
// too few servers: in a cluster that has just formed, the servers are known to the metadata
// leader one by one, a replicated stream's first creation waits for its Raft group, and the
// replicas of services starting together create the same streams at once, while each request
// gives up after the client's API timeout (5 s).
const createTimeout = time.Minute

// errNoPeers is the JetStream error for too few servers to place a stream's replicas on
// (permanent when the cluster is smaller than the replicas asked for).
const errNoPeers jetstream.ErrorCode = 10005

// errSubjectsOverlap is the JetStream error for a stream whose subjects another stream has;
// maxOverlapRetries is how often a creation that meets it is tried again (see retryCreate).
const errSubjectsOverlap jetstream.ErrorCode = 10065

const maxOverlapRetries = 8

// retryCreate runs create again while it times out or finds too few servers, within
// createTimeout (or ctx).
func retryCreate(ctx context.Context, create func(context.Context) error) error {
	deadline := time.Now().Add(createTimeout)
	overlaps := 0
	for {
		err := create(ctx)
		var apiErr *jetstream.APIError
		isAPI := errors.As(err, &apiErr)
		// Two creations of one stream at once can both pass the server's "exists" check, and
		// the second then meets the first's subjects: a moment later the stream is there and
		// the creation with its configuration succeeds. A real overlap with another stream
		// stays, and is reported after a few tries.
		overlap := isAPI && apiErr.ErrorCode == errSubjectsOverlap && overlaps < maxOverlapRetries
		if overlap {
			overlaps++
		}
		transient := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			(isAPI && apiErr.ErrorCode == errNoPeers) || overlap
		if err == nil || !transient || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// IsConflict reports whether err is a failed compare-and-set write of a key-value bucket: the
// key exists (Create), or has another revision than the one given (Update, and Delete or Purge
// with a last revision). A replicated stream reports a revision conflict with another error
// code (10164) than a single server (10071), and jetstream.ErrKeyExists matches only the
// latter: code that checks only ErrKeyExists treats every conflict on a replicated bucket as a
// failure.
func IsConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// InjectTrace writes the trace context of ctx into NATS message headers, so that one job is one
// trace from the API call through the queue to the executor and the ops log.
func InjectTrace(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) {
	p.Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx carrying the trace context found in NATS message headers.
func ExtractTrace(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return p.Extract(ctx, headerCarrier(h))
}

type headerCarrier nats.Header

func (h headerCarrier) Get(key string) string { return nats.Header(h).Get(key) }
func (h headerCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Unreachable reports whether err says that NATS did not answer (no server, a closed or
// draining connection, a call that timed out, JetStream not answering): worth a retry once
// NATS is back, as opposed to an answer such as a missing key.
func Unreachable(err error) bool {
	for _, e := range []error{
		nats.ErrNoServers, nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrDisconnected,
		nats.ErrTimeout, nats.ErrNoResponders, jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
