package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// A process starts whether or not NATS and ClickHouse answer. A service whose dependencies do
// not answer yet waits for them: its health is NOT_SERVING, its calls are refused with
// Unavailable and the reason, a log line says what it waits for, and it starts as soon as they
// answer, with no restart by hand. After that, the health of every service follows its
// dependencies (checked every readinessInterval), and so do /ready and the process's health.
// A dependency that answers wrongly (NATS without JetStream, a refused ClickHouse login) is a
// configuration error: the process exits with it, as it does when a service fails to start
// with its dependencies answering.

// readinessInterval is how often the dependencies of running services are checked.
const readinessInterval = 5 * time.Second

// errUnreachable marks a dependency that does not answer (yet): waiting may cure it.
var errUnreachable = errors.New("unreachable")

// dependency is something a service needs to start and to serve.
type dependency struct {
	name  string
	ready func(ctx context.Context) error
}

func (a *App) natsDependency() dependency {
	return dependency{name: "NATS", ready: a.nats.Ready}
}

// unreachable reports whether a dependency's error is one that waiting may cure.
func unreachable(err error) bool {
	return errors.Is(err, errUnreachable) || errors.Is(err, natsx.ErrUnreachable)
}

func (a *App) clickhouseDependency() dependency {
	where := "embedded ClickHouse"
	if !a.cfg.EmbeddedClickHouse() {
		where = "ClickHouse at " + a.cfg.ClickHouse.Addrs.String()
	}
	return dependency{name: "ClickHouse", ready: func(ctx context.Context) error {
		if a.warehouse.Engine() == warehouse.EngineEmbedded {
			return nil // in this process
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := a.warehouse.Ping(pctx)
		switch c := warehouse.ClassOf(err); {
		case err == nil:
			return nil
		case c == warehouse.ClassRetryable, c == warehouse.ClassTimeout, c == warehouse.ClassCancelled:
			return fmt.Errorf("%s: %w: %w", where, errUnreachable, err)
		}
		return fmt.Errorf("%s: %w", where, err)
	}}
}

// dependenciesReady checks deps in order and returns the first that is not ready.
func dependenciesReady(ctx context.Context, deps []dependency) error {
	for _, d := range deps {
		if err := d.ready(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readiness tracks which services have started and whether their dependencies answer.
type readiness struct {
	mu      sync.Mutex
	deps    map[string][]dependency // by gRPC service name
	started map[string]bool
	serving map[string]bool
	ready   bool

	ctx     context.Context // ends when the process stops
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan error
	monitor sync.Once
}

func (a *App) initReadiness() {
	ctx, cancel := context.WithCancel(context.Background())
	a.ready = &readiness{
		deps: map[string][]dependency{}, started: map[string]bool{}, serving: map[string]bool{},
		ctx: ctx, cancel: cancel, failed: make(chan error, 1),
	}
}

// Failed delivers the error of a service that could not start after waiting for its
// dependencies: the process should stop and exit with it.
func (a *App) Failed() <-chan error { return a.ready.failed }

// startService starts a service (module mod, gRPC service name) with start once deps answer:
// at once if they do (an error of start then fails the process's start), else in the
// background.
func (a *App) startService(ctx context.Context, mod, name string, deps []dependency, start func(context.Context) error) error {
	r := a.ready
	r.mu.Lock()
	r.deps[name] = deps
	r.mu.Unlock()
	err := dependenciesReady(ctx, deps)
	if err == nil {
		if err = start(ctx); err == nil {
			a.serviceStarted(name)
			return nil
		}
		if derr := dependenciesReady(ctx, deps); derr == nil {
			return err
		} else {
			err = derr // a dependency went away meanwhile
		}
	}
	if !unreachable(err) {
		return err
	}
	a.log.Warn("service waits for its dependencies", "service", mod, "waiting_for", err.Error())
	a.server.SetWaiting(name, "waiting for "+err.Error())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		a.waitAndStart(mod, name, deps, start)
	}()
	return nil
}

func (a *App) waitAndStart(mod, name string, deps []dependency, start func(context.Context) error) {
	r := a.ready
	logged := time.Now()
	for n := 1; ; n++ {
		err := dependenciesReady(r.ctx, deps)
		if err == nil {
			if err = start(r.ctx); err == nil {
				a.log.Info("service started: its dependencies answer", "service", mod)
				a.serviceStarted(name)
				return
			}
			if r.ctx.Err() != nil {
				return
			}
			if dependenciesReady(r.ctx, deps) == nil {
				select {
				case r.failed <- fmt.Errorf("module %s: start: %w", mod, err):
				default:
				}
				return
			}
		}
		if r.ctx.Err() != nil {
			return
		}
		a.server.SetWaiting(name, "waiting for "+err.Error())
		if time.Since(logged) > 30*time.Second {
			a.log.Warn("service still waits for its dependencies", "service", mod, "waiting_for", err.Error())
			logged = time.Now()
		}
		t := time.NewTimer(min(time.Duration(n)*250*time.Millisecond, 2*time.Second))
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// serviceStarted opens a service to calls and marks it serving; the process is ready when
// every service is.
func (a *App) serviceStarted(name string) {
	r := a.ready
	a.server.SetWaiting(name, "")
	r.mu.Lock()
	r.started[name] = true
	r.mu.Unlock()
	a.setServing(name, true)
}

// setServing records a service's health and derives the process's.
func (a *App) setServing(name string, serving bool) {
	r := a.ready
	r.mu.Lock()
	changed := r.serving[name] != serving
	r.serving[name] = serving
	all := len(a.services) > 0
	for _, s := range a.services {
		all = all && r.serving[s]
	}
	wasReady := r.ready
	r.ready = all
	r.mu.Unlock()
	if changed && a.server != nil {
		a.server.SetServing(name, serving)
	}
	if all != wasReady && a.server != nil {
		a.server.SetOverall(all)
		a.tel.SetReady(all)
		if all {
			a.log.Info("sluiced ready", "grpc_addr", a.server.Addr(), "http_addr", a.httpAddr, "services", a.services, "tls", a.cfg.TLS.Enabled())
		}
	}
}

// watchDependencies keeps each started service's health in line with its dependencies until
// the process stops.
func (a *App) watchDependencies() {
	r := a.ready
	r.monitor.Do(func() {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			t := time.NewTicker(readinessInterval)
			defer t.Stop()
			for {
				select {
				case <-r.ctx.Done():
					return
				case <-t.C:
				}
				for _, name := range a.services {
					r.mu.Lock()
					started, deps, was := r.started[name], r.deps[name], r.serving[name]
					r.mu.Unlock()
					if !started {
						continue
					}
					err := dependenciesReady(r.ctx, deps)
					if r.ctx.Err() != nil {
						return
					}
					if (err == nil) != was {
						if err != nil {
							a.log.Warn("service not serving: a dependency does not answer", "service", shortName(name), "err", err.Error())
						} else {
							a.log.Info("service serving again: its dependencies answer", "service", shortName(name))
						}
					}
					a.setServing(name, err == nil)
				}
			}
		}()
	})
}

// stopReadiness ends the waiting and the watching before the services stop.
func (a *App) stopReadiness() {
	a.ready.cancel()
	a.ready.wg.Wait()
}

// shortName is "catalog" for "sluice.catalog.v1.CatalogService".
func shortName(service string) string {
	parts := strings.Split(service, ".")
	if len(parts) > 1 {
		return parts[1]
	}
	return service
}
