// Package executor is the executor service: stateless workers that pull job steps from
// JetStream and run them on ClickHouse. Any number of replicas may run.
//
// The runtime (runtime.go, settle.go) takes a step from the queue, claims it in its job record,
// runs it with its kind's runner (package copypipe, populate, or NOOP here), and writes its
// outcome with one of the job system's transitions (platform/jobs); the runners share the
// delta pattern (package delta) and the step's Context (package step).
//
// Delivery: all executors share one durable pull consumer of the SLUICE_STEPS work-queue
// stream. A step is acknowledged only after its result is committed to the job record, and
// heartbeated (in-progress) every quarter of the ack wait while it runs, so a live step is never
// redelivered and a dead executor's step is redelivered after at most the ack wait (10s by
// default: within the 15s p99 target with the fetch latency).
package executor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
	"github.com/sluicehq/sluice/services/executor/step"
)

// ConsumerExecutors is the durable pull consumer of SLUICE_STEPS every executor shares; the
// executors own it (its ack wait is theirs).
const ConsumerExecutors = "sluice-executors"

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = executorv1.ExecutorService_ServiceDesc.ServiceName

// Config tunes an executor.
type Config struct {
	// Concurrency is how many steps this executor runs at once.
	Concurrency int `yaml:"concurrency"`
	// DrainTimeout is how long running steps may go on after SIGTERM before they are handed back.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// AckWait is how long a step may go without a heartbeat before NATS redelivers it to
	// another executor: the bound on how long a dead executor's step waits. Every executor
	// should use the same value (it is a setting of the shared consumer; the last to start wins).
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxRetries is how many transient failures a step may have before it fails its job.
	MaxRetries int `yaml:"max_retries"`
	// MemoryBudget is the default memory budget of a populate step in bytes (max_memory_usage
	// of each of its statements) when the request gives none; 0 leaves ClickHouse's own limit.
	MemoryBudget uint64 `yaml:"memory_budget"`
	// EventsWait bounds how long the end of a copy or populate waits for its ops events to be
	// readable before the job is reported finished.
	EventsWait time.Duration `yaml:"events_wait"`
}

// RegisterFlags registers the executor's flags; their defaults are its defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Concurrency, "executor.concurrency", 4, "steps this executor runs at once")
	fs.DurationVar(&c.DrainTimeout, "executor.drain-timeout", 30*time.Second, "how long running steps may go on after SIGTERM")
	fs.DurationVar(&c.AckWait, "executor.ack-wait", 10*time.Second, "a step without a heartbeat for this long is redelivered (same on every executor)")
	fs.IntVar(&c.MaxRetries, "executor.max-retries", 8, "transient failures of a step before its job fails")
	fs.Uint64Var(&c.MemoryBudget, "executor.memory-budget", 0, "default memory budget of a populate step in bytes (max_memory_usage of its statements; 0: ClickHouse's limit)")
	fs.DurationVar(&c.EventsWait, "executor.events-wait", 10*time.Second, "how long the end of a copy or populate waits for its ops events to be readable")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.Concurrency < 1 {
		return fmt.Errorf("executor.concurrency: %d must be at least 1", c.Concurrency)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("executor.drain_timeout: %s is negative", c.DrainTimeout)
	}
	if c.AckWait < 200*time.Millisecond {
		return fmt.Errorf("executor.ack_wait: %s is shorter than 200ms", c.AckWait)
	}
	if c.MaxRetries < 0 {
		return fmt.Errorf("executor.max_retries: %d is negative", c.MaxRetries)
	}
	if c.EventsWait < 0 {
		return fmt.Errorf("executor.events_wait: %s is negative", c.EventsWait)
	}
	return nil
}

// Deps are what an executor is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
	Catalog catalogclient.Client
	// Warehouse is the ClickHouse copies and populates run on; without it the executor runs
	// NOOP steps only.
	Warehouse warehouse.Conn
	// WorkspaceUsers runs each workspace's SQL as its own ClickHouse user (nil: on Warehouse).
	WorkspaceUsers *warehouse.WorkspaceUsers
	// Events records the ops events of copies and populates (nil: they are logged).
	Events opsevents.Publisher
	// OpsDatabase holds the ops log: a copy or populate ends once its events are readable there.
	OpsDatabase string
	// Now is the clock for job times (time.Now when nil).
	Now func() time.Time
}

// Service implements ExecutorService.
type Service struct {
	executorv1.UnimplementedExecutorServiceServer

	cfg      Config
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	instance string
	runners  map[schedulerv1.JobKind]step.Runner
	metrics  *metrics
	draining atomic.Bool
	faults   *step.Faults
	done     atomic.Int64
	failed   atomic.Int64

	jobs      *jobs.System
	fence     *step.Fence
	consumer  jetstream.Consumer
	cancelSub *nats.Subscription

	stopPull context.CancelFunc
	pulled   chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	running map[string]*runningStep
}

// runningStep is a step this executor runs now.
type runningStep struct {
	msg    *persistencev1.StepMessage
	start  time.Time
	tries  int64
	cancel context.CancelCauseFunc
}

// New builds the service and its step runners (runners.go).
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	faults, err := step.ParseFaults(os.Getenv(step.FaultsEnv))
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, metrics: newMetrics(deps.Metrics),
		instance: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), jobs.NewID(time.Now())[12:]),
		running:  map[string]*runningStep{}, faults: faults,
	}
	s.runners = s.buildRunners()
	return s, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { executorv1.RegisterExecutorServiceServer(r, s) }

// Instance is this executor's id, as written in job records.
func (s *Service) Instance() string { return s.instance }

// Start opens the job system, the view fence and the shared consumer, drops the staging tables
// that finished jobs left behind (an executor that died mid-step), then begins pulling steps.
func (s *Service) Start(ctx context.Context) error {
	sys, err := jobs.Open(ctx, s.deps.NATS, s.now)
	if err != nil {
		return err
	}
	s.jobs = sys
	if s.fence, err = step.OpenFence(ctx, s.deps.NATS, s.log, func(ctx context.Context, ws, id string) bool {
		rec, _, err := sys.Store.Get(ctx, ws, id)
		return errors.Is(err, jobs.ErrNotFound) || (err == nil && jobs.Final(rec.GetJob().GetStatus()))
	}); err != nil {
		return err
	}
	if s.deps.Warehouse != nil {
		if err := SweepStaging(ctx, s.deps.Warehouse, sys, s.log); err != nil {
			s.log.Warn("sweeping the staging tables of finished jobs failed", "err", err)
		}
	}
	s.consumer, err = s.deps.NATS.JS.CreateOrUpdateConsumer(ctx, jobs.StreamSteps, jetstream.ConsumerConfig{
		Durable:       ConsumerExecutors,
		Description:   "executors pull job steps",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 65536,
		FilterSubject: jobs.SubjectSteps + ".>",
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerExecutors, err)
	}
	s.cancelSub, err = s.deps.NATS.NC.Subscribe(jobs.SubjectCancel, func(m *nats.Msg) { s.cancelJob(string(m.Data), step.ErrJobCancelled) })
	if err != nil {
		return fmt.Errorf("subscribe to cancel notices: %w", err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopPull, s.pulled = cancel, make(chan struct{})
	go func() {
		defer close(s.pulled)
		s.pull(pctx)
	}()
	return nil
}

// Stop stops pulling, lets running steps finish within the drain timeout, and hands back the
// rest un-acknowledged (NAK: redelivered at once to another executor).
func (s *Service) Stop(ctx context.Context) error {
	s.draining.Store(true)
	if s.stopPull == nil {
		return nil
	}
	s.stopPull()
	<-s.pulled
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	timer := time.NewTimer(s.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		s.handBack()
	case <-ctx.Done():
		s.handBack()
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		s.log.Warn("steps did not stop after drain; NATS redelivers them after the ack wait")
	}
	if s.cancelSub != nil {
		_ = s.cancelSub.Unsubscribe()
	}
	return nil
}

// handBack cancels every running step for the drain; their handlers NAK them.
func (s *Service) handBack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.running {
		r.cancel(step.ErrDrain)
	}
}

// cancelJob stops this executor's running steps of a job.
func (s *Service) cancelJob(key string, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.running {
		if jobs.Key(r.msg.GetWorkspace(), r.msg.GetJobId()) == key {
			r.cancel(cause)
		}
	}
}
