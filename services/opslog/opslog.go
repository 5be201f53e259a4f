// Package opslog is the ops-log service: it consumes ops events from JetStream, writes them to
// `datasources_ops_log` in ClickHouse in batches, and answers queries over them.
package opslog

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

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = opslogv1.OpsLogService_ServiceDesc.ServiceName

// JetStream names of the ops log. The stream itself is defined in platform/opsevents, shared
// with the publishers.
const (
	StreamEvents  = opsevents.StreamName
	SubjectEvents = opsevents.SubjectPrefix
	// ConsumerName is the durable pull consumer that writes the stream to ClickHouse.
	ConsumerName = "opslog-writer"
	// SubjectWritten is followed by the workspace: after a batch is committed to ClickHouse the
	// writer publishes its events there (core NATS), which is what TailEvents follows.
	SubjectWritten = opsevents.WrittenPrefix
)

// Config tunes the ops log.
type Config struct {
	// BatchSize is the most events written in one insert.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest an event waits before its batch is written.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Retention is the TTL of rows in datasources_ops_log.
	Retention time.Duration `yaml:"retention"`
	// AckWait is how long a fetched event may stay unacknowledged before JetStream gives it to
	// another writer (a writer that died); a live writer extends it while it retries.
	AckWait time.Duration `yaml:"ack_wait"`
}

// RegisterFlags registers the ops log's flags; their defaults are its defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.BatchSize, "opslog.batch-size", 10000, "most events written in one insert")
	fs.DurationVar(&c.FlushInterval, "opslog.flush-interval", 200*time.Millisecond, "longest an event waits before its batch is written")
	fs.DurationVar(&c.Retention, "opslog.retention", 180*24*time.Hour, "TTL of rows in datasources_ops_log")
	fs.DurationVar(&c.AckWait, "opslog.ack-wait", time.Minute, "how long a fetched event stays with a writer that does not report before it is redelivered")
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
	if c.AckWait < time.Second {
		return fmt.Errorf("opslog.ack_wait: %s is shorter than 1s", c.AckWait)
	}
	return nil
}

// Deps are what the ops log is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
	// Warehouse is the ClickHouse the table lives in.
	Warehouse warehouse.Conn
	// Database is Sluice's own database (-clickhouse-database), created when missing.
	Database string
}

// Service implements OpsLogService.
type Service struct {
	opslogv1.UnimplementedOpsLogServiceServer

	cfg     Config
	deps    Deps
	log     *slog.Logger
	db      string
	table   string // quoted `db`.`datasources_ops_log`
	metrics *metrics

	cancel context.CancelFunc
	done   chan struct{}
	// dropByPartition: the server has no TTL, retain drops expired months.
	dropByPartition bool
	// stopping is closed by Stop; it ends the TailEvents streams, which would otherwise hold
	// the gRPC server's graceful stop.
	stopping     chan struct{}
	stoppingOnce sync.Once

	// hooks let tests stop the writer at the points where a crash matters.
	hooks hooks
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NATS == nil {
		return nil, errors.New("opslog: no NATS connection")
	}
	if deps.Warehouse == nil {
		return nil, errors.New("opslog: no ClickHouse connection")
	}
	if deps.Database == "" {
		deps.Database = "sluice"
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, deps: deps, log: log, db: deps.Database, stopping: make(chan struct{}),
		table:   warehouse.QualifiedName(deps.Database, TableName),
		metrics: newMetrics(deps.Metrics),
	}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { opslogv1.RegisterOpsLogServiceServer(r, s) }

// Database is the database that holds the table.
func (s *Service) Database() string { return s.db }

// Start creates the events stream, the table and the durable consumer (all idempotently),
// then starts the writer.
func (s *Service) Start(ctx context.Context) error {
	stream, err := opsevents.EnsureStream(ctx, s.deps.NATS)
	if err != nil {
		return err
	}
	if err := s.ensureTable(ctx); err != nil {
		return err
	}
	if err := s.ensureJobsLog(ctx); err != nil {
		return err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "writes ops events to datasources_ops_log",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * s.cfg.BatchSize,
		MaxWaiting:    512,
		FilterSubject: SubjectEvents + ".>",
		Replicas:      s.deps.NATS.Replicas,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerName, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	if s.dropByPartition {
		wg.Go(func() { s.retain(runCtx) })
	}
	wg.Go(func() { s.run(runCtx, cons) })
	wg.Go(func() { s.keepJobsLog(runCtx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return nil
}

// Stop ends the writer: a batch being inserted is finished and acknowledged; one waiting for
// ClickHouse to come back is left unacknowledged, and JetStream redelivers it.
func (s *Service) Stop(ctx context.Context) error {
	s.stoppingOnce.Do(func() { close(s.stopping) })
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("opslog: writer did not stop: %w", ctx.Err())
	}
}
