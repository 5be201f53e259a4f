// Package catalog is the catalog service: workspaces, datafiles (every version), the Data
// Sources and Pipes parsed from them, the dependency graph, and the DDL that deploys them.
package catalog

import (
	"context"
	"flag"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = catalogv1.CatalogService_ServiceDesc.ServiceName

// KV buckets the catalog owns.
const (
	BucketResources = "sluice_catalog"
	BucketFiles     = "sluice_files"
)

// Config tunes the catalog.
type Config struct {
	// FileHistory is how many versions of each datafile are kept.
	FileHistory int `yaml:"file_history"`
}

// RegisterFlags registers the catalog's flags; their defaults are the catalog's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.FileHistory, "catalog.file-history", 64, "versions of each datafile kept (1-64)")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.FileHistory < 1 || c.FileHistory > 64 {
		return errRange("catalog.file_history", c.FileHistory, 1, 64)
	}
	return nil
}

// Deps are what the catalog is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
}

// Service implements CatalogService.
type Service struct {
	catalogv1.UnimplementedCatalogServiceServer

	cfg       Config
	deps      Deps
	resources jetstream.KeyValue
	files     jetstream.KeyValue
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	return &Service{cfg: cfg, deps: deps}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { catalogv1.RegisterCatalogServiceServer(r, s) }

// Start creates the catalog's buckets (idempotently) and loads its state.
func (s *Service) Start(ctx context.Context) error {
	var err error
	if s.resources, err = s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketResources, Description: "catalog: workspaces and deployed resources", History: 1,
	}); err != nil {
		return err
	}
	if s.files, err = s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketFiles, Description: "catalog: every version of every datafile", History: uint8(s.cfg.FileHistory),
	}); err != nil {
		return err
	}
	return nil
}

// Stop ends background work.
func (s *Service) Stop(context.Context) error { return nil }
