// Package scheduler is the scheduler service: job records, the job queue, copy schedules,
// pause/resume, cancel and per-workspace concurrency limits.
package scheduler

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = schedulerv1.SchedulerService_ServiceDesc.ServiceName

// The NATS buckets the scheduler owns (the job system's are platform/jobs's).
const (
	BucketSchedules = "sluice_schedules"
	BucketLeases    = "sluice_leases"
	// LeaseTTL is how long a leader's lease outlives its last renewal: after a leader dies,
	// another replica (or the restarted process) takes over within it.
	LeaseTTL = 10 * time.Second
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
	// PopulateStepBytes is how much uncompressed source data one step of a populate holds: small
	// partitions are grouped up to it (see populateSteps); 0 is DefaultPopulateStepBytes.
	PopulateStepBytes uint64 `yaml:"populate_step_bytes"`
	// PopulateParallelism is the steps a populate's data is spread over at least, when a
	// request gives none (PopulateRequest.parallelism); 0 is 1.
	PopulateParallelism int `yaml:"populate_parallelism"`
}

// RegisterFlags registers the scheduler's flags; their defaults are the scheduler's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.JobRetention, "scheduler.job-retention", 48*time.Hour, "how long finished jobs are kept")
	fs.IntVar(&c.CopyConcurrency, "scheduler.copy-concurrency", 2, "default copy jobs working at once per workspace")
	fs.DurationVar(&c.CatchUpWindow, "scheduler.catch-up-window", time.Hour, "missed schedule ticks younger than this are enqueued on recovery")
	fs.DurationVar(&c.MaxExecutionTime, "scheduler.max-execution-time", 30*time.Minute, "default maximum execution time of a manual job")
	fs.Uint64Var(&c.PopulateStepBytes, "scheduler.populate-step-bytes", DefaultPopulateStepBytes, "uncompressed source bytes one populate step holds: smaller partitions are grouped into one step up to it")
	fs.IntVar(&c.PopulateParallelism, "scheduler.populate-parallelism", 1, "steps a populate's data is spread over at least (when it has as many partitions), unless the request gives another")
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
	if c.PopulateParallelism < 0 || c.PopulateParallelism > maxPopulateParallelism {
		return fmt.Errorf("scheduler.populate_parallelism: %d is not between 1 and %d", c.PopulateParallelism, maxPopulateParallelism)
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
	// CopyTokens, when set, finds a scheduled copy's token, to check that it still allows the
	// copy just before a tick rendered ahead of time is enqueued: the process's own copy of the
	// token store (auth.Verifier), so the check costs no call at the tick.
	CopyTokens CopyTokens
	// Now is the clock for job times, retention and maximum execution times (time.Now when
	// nil); tests inject one.
	Now func() time.Time
	// Instance names this replica in its leader lease (host-pid when empty).
	Instance string
}

// CopyTokens finds a stored token by workspace and name (auth.Verifier does).
type CopyTokens interface {
	Lookup(ctx context.Context, workspace, name string) (*auth.Principal, error)
}

// Service implements SchedulerService.
type Service struct {
	schedulerv1.UnimplementedSchedulerServiceServer

	cfg      Config
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	instance string
	metrics  *metrics

	// jobs is the job system: records, queue, commit records (read only here: a job with an
	// unfinished commit is never ended under it), limits.
	jobs   *jobs.System
	store  *jobs.Store
	leases jetstream.KeyValue

	stop    context.CancelFunc
	stopped chan struct{}
	// leader is the running leader loop's state, nil when this replica is not the leader.
	leader atomic.Pointer[leader]
	// sweeps counts the leader's sweeps (tests wait on it instead of sleeping).
	sweeps atomic.Int64
	// copy runs the copy schedules (schedules.go); nil until started.
	copy atomic.Pointer[copySchedules]
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Instance == "" {
		host, _ := os.Hostname()
		deps.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), jobs.NewID(time.Now())[12:])
	}
	return &Service{cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, instance: deps.Instance, metrics: newMetrics(deps.Metrics)}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { schedulerv1.RegisterSchedulerServiceServer(r, s) }

// Start opens the job system and creates the scheduler's buckets (idempotently), then runs the
// leader election loop: the replica holding the lease admits limited jobs, enforces maximum
// execution times, re-queues steps lost between a job's creation and its queueing, and removes
// finished jobs after the retention.
func (s *Service) Start(ctx context.Context) error {
	sys, err := jobs.Open(ctx, s.deps.NATS, s.now)
	if err != nil {
		return err
	}
	s.jobs, s.store = sys, sys.Store
	if s.leases, err = s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: BucketLeases, Description: "leader leases", History: 1, TTL: LeaseTTL}); err != nil {
		return err
	}
	schedules, err := s.deps.NATS.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: BucketSchedules, Description: "copy schedules: pause state and last tick", History: 1})
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.stopped = cancel, make(chan struct{})
	done := s.startCopySchedules(lctx, schedules)
	go func() {
		defer close(s.stopped)
		s.campaign(lctx)
		<-done
	}()
	return nil
}

// Stop ends the leader loop and releases the lease, so that another replica takes over at once.
func (s *Service) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
