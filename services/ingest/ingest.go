// Package ingest is the ingest service: the Events API (HTTP, compatible with the hosted
// platform's `/v0/events`) and the gRPC append API put rows into Data Sources. Requests are
// converted and checked at once (bad rows go to quarantine, a malformed request is refused
// whole), stored in JetStream before they are answered, and written to ClickHouse in batches,
// each exactly once, by one writer that holds a lease. See docs/ingestion.md.
package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = ingestv1.IngestService_ServiceDesc.ServiceName

// JetStream names of the ingest service.
const (
	// StreamName is the stream of accepted rows waiting to be written.
	StreamName = "SLUICE_INGEST"
	// SubjectPrefix is followed by workspace and Data Source: sluice.ingest.<ws>.<ds>.
	SubjectPrefix = "sluice.ingest"
	// BucketName holds the writer's lease and its position in the stream.
	BucketName = "sluice_ingest"
	// SubjectCommitted announces (core NATS) the stream sequence up to which rows are visible.
	SubjectCommitted = "sluice.ingest-committed"
)

// Config tunes the ingest service.
type Config struct {
	// EventsAddr is the HTTP listen address of the Events API; empty disables it.
	EventsAddr string `yaml:"events_addr"`
	// FlushInterval is the longest accepted rows wait before their batch is written.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// BatchBytes closes a batch when its rows reach this size.
	BatchBytes int `yaml:"batch_bytes"`
	// MaxRequestBytes bounds one Events API or unary request body (as sent).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// RequestsPerSecond, RowsPerSecond, BytesPerSecond limit each workspace (0: no limit).
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	RowsPerSecond     float64 `yaml:"rows_per_second"`
	BytesPerSecond    float64 `yaml:"bytes_per_second"`
	// LeaseTTL is how long the writer's lease lasts without renewal: the longest pause before
	// another replica takes over the writing when the writer dies.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// WaitTimeout bounds how long wait=true waits for the rows to be visible.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// AbandonAfter is how long the parts of a request whose publisher died are kept waiting for
	// the rest before they are dropped (nothing of such a request is written).
	AbandonAfter time.Duration `yaml:"abandon_after"`
	// MaxStreamBytes bounds the rows waiting in JetStream; past it requests get 503.
	MaxStreamBytes int64 `yaml:"max_stream_bytes"`
}

// RegisterFlags registers the ingest flags; their defaults are its defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.EventsAddr, "events-addr", "127.0.0.1:7183", "HTTP address of the Events API (POST /v0/events); empty disables it")
	fs.DurationVar(&c.FlushInterval, "ingest.flush-interval", 200*time.Millisecond, "longest accepted rows wait before they are written to ClickHouse")
	fs.IntVar(&c.BatchBytes, "ingest.batch-bytes", 64<<20, "a batch is written when its rows reach this many bytes")
	fs.Int64Var(&c.MaxRequestBytes, "ingest.max-request-bytes", 10<<20, "largest Events API or unary append request body (413 above it)")
	fs.Float64Var(&c.RequestsPerSecond, "ingest.requests-per-second", 1000, "Events API requests per second per workspace (429 above it; 0: no limit)")
	fs.Float64Var(&c.RowsPerSecond, "ingest.rows-per-second", 0, "rows per second per workspace (429 above it; 0: no limit)")
	fs.Float64Var(&c.BytesPerSecond, "ingest.bytes-per-second", 20<<20, "bytes per second per workspace (429 above it; 0: no limit)")
	fs.DurationVar(&c.LeaseTTL, "ingest.lease-ttl", 5*time.Second, "writer lease duration: the longest pause before another replica takes over a dead writer")
	fs.DurationVar(&c.WaitTimeout, "ingest.wait-timeout", 60*time.Second, "how long wait=true waits for rows to be visible")
	fs.DurationVar(&c.AbandonAfter, "ingest.abandon-after", time.Minute, "how long parts of an unfinished request wait for the rest before they are dropped")
	fs.Int64Var(&c.MaxStreamBytes, "ingest.max-stream-bytes", 4<<30, "most bytes of accepted rows waiting in JetStream (503 above it)")
}

// Validate checks the values.
func (c Config) Validate() error {
	var errs []error
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("ingest.flush_interval: %s must be positive", c.FlushInterval))
	}
	if c.BatchBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("ingest.batch_bytes: %d is below 1 KiB", c.BatchBytes))
	}
	if c.MaxRequestBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("ingest.max_request_bytes: %d is below 1 KiB", c.MaxRequestBytes))
	}
	if c.RequestsPerSecond < 0 || c.RowsPerSecond < 0 || c.BytesPerSecond < 0 {
		errs = append(errs, errors.New("ingest: rate limits cannot be negative"))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("ingest.lease_ttl: %s is shorter than 1s", c.LeaseTTL))
	}
	if c.WaitTimeout <= 0 || c.AbandonAfter <= 0 {
		errs = append(errs, errors.New("ingest.wait_timeout and ingest.abandon_after must be positive"))
	}
	if c.MaxStreamBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("ingest.max_stream_bytes: %d is below 1 MiB", c.MaxStreamBytes))
	}
	if c.EventsAddr != "" {
		if _, _, err := net.SplitHostPort(c.EventsAddr); err != nil {
			errs = append(errs, fmt.Errorf("events_addr: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Deps are what the ingest service is given.
type Deps struct {
	Log       *slog.Logger
	Metrics   prometheus.Registerer
	NATS      *natsx.Conn
	Warehouse warehouse.Conn
	Catalog   catalogclient.Client
	Events    opsevents.Publisher
	// Guard wraps the Events API's handler with what its pattern requires (the scope table);
	// nil serves it unguarded (tests of the service alone).
	Guard func(pattern string, h http.Handler) (http.Handler, error)
	// TLS, when set, serves the Events API over TLS.
	TLS *tls.Config
}

// Service implements IngestService and the Events API.
type Service struct {
	ingestv1.UnimplementedIngestServiceServer

	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	schemas *schemas
	limits  *limiter

	stream jetstream.Stream
	kv     jetstream.KeyValue
	subs   []*nats.Subscription
	seen   *committedSeq

	httpSrv  *http.Server
	httpAddr string

	cancel context.CancelFunc
	wg     sync.WaitGroup

	dedupMu      sync.Mutex
	dedupChecked map[string]time.Time
	dedupKnown   int // 1: the engine takes insert_deduplication_token, -1: it does not, 0: not asked yet

	// hooks are test points of the writer.
	hooks hooks
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NATS == nil || deps.Warehouse == nil || deps.Catalog == nil {
		return nil, errors.New("ingest: NATS, ClickHouse and the catalog are required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Log, metrics: newMetrics(deps.Metrics), seen: newCommittedSeq(), dedupChecked: map[string]time.Time{}}
	s.schemas = &schemas{s: s, ttl: 10 * time.Second, m: map[string]*schema{}}
	s.limits = newLimiter(cfg)
	if err := armFaults(os.Getenv(faultsEnv), &s.hooks); err != nil {
		return nil, err
	}
	return s, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { ingestv1.RegisterIngestServiceServer(r, s) }

// EventsAddr is the address the Events API listens on, once started.
func (s *Service) EventsAddr() string { return s.httpAddr }

// Listen opens the Events API's listener (at Init, so the address is known early).
func (s *Service) Listen() error {
	if s.cfg.EventsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.EventsAddr)
	if err != nil {
		return fmt.Errorf("events api: listen on %s: %w", s.cfg.EventsAddr, err)
	}
	h, err := s.httpHandler()
	if err != nil {
		_ = ln.Close()
		return err
	}
	if s.deps.TLS != nil {
		ln = tls.NewListener(ln, s.deps.TLS)
	}
	s.httpAddr = ln.Addr().String()
	s.httpSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("events api stopped", "err", err)
		}
	}()
	return nil
}

// StreamConfig is the definition of SLUICE_INGEST: limits retention, purged by the writer up
// to what it has committed; DiscardNew so that a full stream refuses requests instead of
// dropping accepted rows.
func (s *Service) StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "rows accepted by the ingest service, waiting to be written to ClickHouse",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxBytes:    s.cfg.MaxStreamBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		MaxMsgSize:  -1,
	}
}

// Start creates the stream and bucket and starts the writer (which first waits for the
// lease) and the followers of commits and catalog changes.
func (s *Service) Start(ctx context.Context) error {
	st, err := s.deps.NATS.EnsureStream(ctx, s.StreamConfig())
	if err != nil {
		return err
	}
	s.stream = st
	kv, err := s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: BucketName, Description: "ingest writer lease and stream position", History: 1})
	if err != nil {
		return err
	}
	s.kv = kv
	sub, err := s.deps.NATS.NC.Subscribe(SubjectCommitted, func(m *nats.Msg) { s.seen.observe(parseSeq(m.Data)) })
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	sub, err = s.deps.NATS.NC.Subscribe(catalogclient.ChangedSubjectAll, func(m *nats.Msg) {
		ws := m.Subject[len(catalogclient.ChangedSubject("")):]
		s.schemas.invalidate(ws)
	})
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Go(func() { s.pollCommitted(runCtx) })
	s.wg.Go(func() { s.runWriter(runCtx) })
	return nil
}

// Stop stops accepting requests, then the writer: a batch being written is finished; rows not
// yet written stay in JetStream for the next writer.
func (s *Service) Stop(ctx context.Context) error {
	var errs []error
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	if s.cancel != nil {
		s.cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("ingest: writer did not stop: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}
