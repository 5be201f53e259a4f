// Package scheduler is the scheduler service: job records, the job queue, copy schedules,
// pause/resume, cancel and per-workspace concurrency limits.
package scheduler

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = schedulerv1.SchedulerService_ServiceDesc.ServiceName

// JetStream resources the scheduler owns.
const (
	StreamSteps     = "SLUICE_STEPS"
	SubjectSteps    = "sluice.steps"
	BucketJobs      = "sluice_jobs"
	BucketSchedules = "sluice_schedules"
	BucketLeases    = "sluice_leases"
)

// Config tunes the scheduler.
type Config struct {
	// JobRetention is how long finished jobs are kept.
	JobRetention time.Duration `yaml:"job_retention"`
	// CopyConcurrency is the default limit of copy jobs working at once per workspace.
	CopyConcurrency int `yaml:"copy_concurrency"`
	// CatchUpWindow is how far back missed schedule ticks are enqueued on recovery.
	CatchUpWindow time.Duration `yaml:"catch_up_window"`
	// MaxExecutionTime is the default maximum execution time of a manual job.
	MaxExecutionTime time.Duration `yaml:"max_execution_time"`
}

// RegisterFlags registers the scheduler's flags; their defaults are the scheduler's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.JobRetention, "scheduler.job-retention", 48*time.Hour, "how long finished jobs are kept")
	fs.IntVar(&c.CopyConcurrency, "scheduler.copy-concurrency", 2, "default copy jobs working at once per workspace")
	fs.DurationVar(&c.CatchUpWindow, "scheduler.catch-up-window", time.Hour, "missed schedule ticks younger than this are enqueued on recovery")
	fs.DurationVar(&c.MaxExecutionTime, "scheduler.max-execution-time", 30*time.Minute, "default maximum execution time of a manual job")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.JobRetention < time.Minute {
		return fmt.Errorf("scheduler.job_retention: %s is shorter than 1m", c.JobRetention)
	}
	if c.CopyConcurrency < 1 {
		return fmt.Errorf("scheduler.copy_concurrency: %d must be at least 1", c.CopyConcurrency)
	}
	if c.CatchUpWindow < 0 {
		return fmt.Errorf("scheduler.catch_up_window: %s is negative", c.CatchUpWindow)
	}
	if c.MaxExecutionTime <= 0 {
		return fmt.Errorf("scheduler.max_execution_time: %s must be positive", c.MaxExecutionTime)
	}
	return nil
}

// Deps are what the scheduler is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
	Catalog catalogclient.Client
}

// Service implements SchedulerService.
type Service struct {
	schedulerv1.UnimplementedSchedulerServiceServer

	cfg  Config
	deps Deps
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	return &Service{cfg: cfg, deps: deps}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { schedulerv1.RegisterSchedulerServiceServer(r, s) }

// Start creates the scheduler's stream and buckets (idempotently).
func (s *Service) Start(ctx context.Context) error {
	if _, err := s.deps.NATS.EnsureStream(ctx, jetstream.StreamConfig{
		Name:        StreamSteps,
		Description: "job steps for executors",
		Subjects:    []string{SubjectSteps + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
	}); err != nil {
		return err
	}
	for _, b := range []jetstream.KeyValueConfig{
		{Bucket: BucketJobs, Description: "job records", History: 1},
		{Bucket: BucketSchedules, Description: "copy schedules: pause state and last tick", History: 1},
		{Bucket: BucketLeases, Description: "leader leases", History: 1, TTL: 30 * time.Second},
	} {
		if _, err := s.deps.NATS.EnsureKV(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends background work.
func (s *Service) Stop(context.Context) error { return nil }
