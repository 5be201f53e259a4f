// Package catalog is the catalog service: workspaces, datafiles (every version), the Data
// Sources and Pipes parsed from them, the dependency graph, and the DDL that deploys them.
package catalog

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = catalogv1.CatalogService_ServiceDesc.ServiceName

// BucketCatalog is the KV bucket the catalog owns: workspaces, deployed resources and every
// version of every datafile.
const BucketCatalog = "sluice_catalog"

// Config tunes the catalog.
type Config struct {
	// DatabasePrefix is put before a workspace's name to make its ClickHouse database.
	DatabasePrefix string `yaml:"database_prefix"`
	// QueryMaxRows caps the rows a Query returns.
	QueryMaxRows int64 `yaml:"query_max_rows"`
	// QueryMaxBytes caps the bytes of a Query's result (ClickHouse max_result_bytes).
	QueryMaxBytes int64 `yaml:"query_max_bytes"`
	// QueryTimeout caps a Query's execution time.
	QueryTimeout time.Duration `yaml:"query_timeout"`
}

// RegisterFlags registers the catalog's flags; their defaults are the catalog's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DatabasePrefix, "catalog.database-prefix", "ws_", "prefix of workspace databases in ClickHouse (workspace default → ws_default)")
	fs.Int64Var(&c.QueryMaxRows, "catalog.query-max-rows", 10000, "most rows `sluice sql` returns")
	fs.Int64Var(&c.QueryMaxBytes, "catalog.query-max-bytes", 64<<20, "most bytes of result `sluice sql` reads (ClickHouse max_result_bytes)")
	fs.DurationVar(&c.QueryTimeout, "catalog.query-timeout", 60*time.Second, "longest a `sluice sql` query may run")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.DatabasePrefix != "" && !validName(c.DatabasePrefix) {
		return fmt.Errorf("catalog.database_prefix: %q must be letters, digits and underscores", c.DatabasePrefix)
	}
	if c.QueryMaxRows < 1 {
		return fmt.Errorf("catalog.query_max_rows: %d must be at least 1", c.QueryMaxRows)
	}
	if c.QueryMaxBytes < 1 {
		return fmt.Errorf("catalog.query_max_bytes: %d must be at least 1", c.QueryMaxBytes)
	}
	if c.QueryTimeout <= 0 {
		return fmt.Errorf("catalog.query_timeout: %s must be positive", c.QueryTimeout)
	}
	return nil
}

// Deps are what the catalog is given.
type Deps struct {
	Log       *slog.Logger
	Metrics   prometheus.Registerer
	NATS      *natsx.Conn
	Warehouse warehouse.Conn
	// Events records create/alter/delete operations in the ops log (none when nil).
	Events opsevents.Publisher
	// OpsDatabase holds Sluice's own tables (datasources_ops_log); every workspace gets a view
	// of its rows. Empty: no view.
	OpsDatabase string
	// OperatorTokenFile is where the operator token is written on first start (and read from,
	// when an installation brings its own).
	OperatorTokenFile string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// WorkspaceUsers runs each workspace's SQL (`sluice sql`, rendered nodes) as its own
	// ClickHouse user; nil runs it on Warehouse.
	WorkspaceUsers *warehouse.WorkspaceUsers
	// Instance names this replica in its workspace leases (host-pid-random when empty).
	Instance string
}

// Service implements CatalogService.
type Service struct {
	catalogv1.UnimplementedCatalogServiceServer

	cfg    Config
	deps   Deps
	log    *slog.Logger
	store  *store
	tokens *tokenStore
	caps   engineCaps
	// locks serialise pushes and deletes per workspace within this process; leases across
	// replicas (lease.go).
	locks    sync.Map // workspace -> *sync.Mutex
	leases   jetstream.KeyValue
	instance string
	// projects are the parsed projects of the workspaces, per revision of their records.
	projects projectCache
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Warehouse == nil {
		return nil, errors.New("catalog: no ClickHouse connection")
	}
	if deps.Instance == "" {
		deps.Instance = instanceName()
	}
	return &Service{cfg: cfg, deps: deps, log: deps.Log, instance: deps.Instance}, nil
}

// Register registers the gRPC API: the catalog and the token service.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	catalogv1.RegisterCatalogServiceServer(r, s)
	catalogv1.RegisterTokenServiceServer(r, &tokenService{s: s})
}

// Start creates the catalog's buckets (idempotently) and loads its state.
func (s *Service) Start(ctx context.Context) error {
	kv, err := s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketCatalog, Description: "catalog: workspaces, deployed resources, every version of every datafile", History: 1,
	})
	if err != nil {
		return err
	}
	st, err := s.deps.NATS.JS.Stream(ctx, "KV_"+BucketCatalog)
	if err != nil {
		return fmt.Errorf("stream of bucket %s: %w", BucketCatalog, err)
	}
	s.store = &store{kv: kv, stream: st}
	tkv, err := s.deps.NATS.EnsureKV(ctx, auth.BucketConfig())
	if err != nil {
		return err
	}
	s.tokens = &tokenStore{kv: tkv}
	if err := s.ensureOperatorToken(ctx); err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	if s.leases, err = s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketLeases, Description: "catalog: one lease per workspace, held by the replica changing it", History: 1, TTL: LeaseTTL,
	}); err != nil {
		return err
	}
	if err := s.probeCaps(ctx); err != nil {
		return err
	}
	if err := s.dropScratchDatabases(ctx); err != nil {
		return fmt.Errorf("drop leftover validation databases: %w", err)
	}
	s.recoverInterrupted(ctx)
	return nil
}

// Stop ends background work.
func (s *Service) Stop(context.Context) error { return nil }
