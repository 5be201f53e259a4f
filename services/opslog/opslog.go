// Package opslog is the ops-log service: it consumes ops events from JetStream, writes them to
// `datasources_ops_log` in ClickHouse in batches, and answers queries over them.
package opslog

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = opslogv1.OpsLogService_ServiceDesc.ServiceName

// JetStream resources the ops log owns.
const (
	StreamEvents  = "SLUICE_OPS"
	SubjectEvents = "sluice.ops"
)

// Config tunes the ops log.
type Config struct {
	// BatchSize is the most events written in one insert.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest an event waits before its batch is written.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Retention is the TTL of rows in datasources_ops_log.
	Retention time.Duration `yaml:"retention"`
}

// RegisterFlags registers the ops log's flags; their defaults are its defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.BatchSize, "opslog.batch-size", 10000, "most events written in one insert")
	fs.DurationVar(&c.FlushInterval, "opslog.flush-interval", 200*time.Millisecond, "longest an event waits before its batch is written")
	fs.DurationVar(&c.Retention, "opslog.retention", 180*24*time.Hour, "TTL of rows in datasources_ops_log")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.BatchSize < 1 {
		return fmt.Errorf("opslog.batch_size: %d must be at least 1", c.BatchSize)
	}
	if c.FlushInterval <= 0 {
		return fmt.Errorf("opslog.flush_interval: %s must be positive", c.FlushInterval)
	}
	if c.Retention < 24*time.Hour {
		return fmt.Errorf("opslog.retention: %s is shorter than 24h", c.Retention)
	}
	return nil
}

// Deps are what the ops log is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
}

// Service implements OpsLogService.
type Service struct {
	opslogv1.UnimplementedOpsLogServiceServer

	cfg  Config
	deps Deps
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	return &Service{cfg: cfg, deps: deps}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { opslogv1.RegisterOpsLogServiceServer(r, s) }

// Start creates the events stream (idempotently).
func (s *Service) Start(ctx context.Context) error {
	_, err := s.deps.NATS.EnsureStream(ctx, jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "ops events waiting to be written to datasources_ops_log",
		Subjects:    []string{SubjectEvents + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
	})
	return err
}

// Stop ends background work.
func (s *Service) Stop(context.Context) error { return nil }
