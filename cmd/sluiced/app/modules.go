package app

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/grpcserver"
	"github.com/sluicehq/sluice/platform/idempotency"
	"github.com/sluicehq/sluice/platform/lifecycle"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/telemetry"
	"github.com/sluicehq/sluice/services/catalog"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
	"github.com/sluicehq/sluice/services/executor"
	"github.com/sluicehq/sluice/services/ingest"
	"github.com/sluicehq/sluice/services/opslog"
	"github.com/sluicehq/sluice/services/scheduler"
)

// modules is the table of everything a sluiced process can run.
//
// Each module names what it needs (Deps: run with it, started before it, stopped after it) and
// what it must start after and stop before when this process runs that too (After). Start order
// follows those edges alone (ties by name, which decides nothing that matters); stop runs it
// backwards; a cycle is refused at start with the modules named. Every module's Init runs
// first (connections open, the token store is loaded, the gRPC server listens, services
// register on it), then every Start (the gRPC server serves, services begin their background
// work). A service whose NATS or ClickHouse does not answer yet starts as soon as they do
// (readiness.go): until then it is NOT_SERVING and refuses calls with the reason.
//
// Shutdown on SIGTERM, in this order (docs/architecture.md, "Process modules", is the same
// table):
//  1. health turns NOT_SERVING for every service and the process (App.Stop);
//  2. the services stop, those that call the catalog before it (After: catalog): the
//     scheduler stops enqueuing; the executor stops pulling steps and drains (running steps
//     finish within -executor.drain-timeout, calling the catalog as they need, the rest go back
//     un-acked); the ingest service closes the Events API and finishes the batch it writes (the
//     rest stays in JetStream); the ops log flushes its batch; the catalog stops;
//  3. peer connections close;
//  4. the gRPC server stops gracefully: in-flight calls drain until -shutdown-timeout, with
//     the token store, NATS and ClickHouse still open (Deps: auth, nats; After: clickhouse);
//  5. the token store watch ends, NATS drains and the embedded server stops (After:
//     clickhouse: a message handled while NATS drains may still write to ClickHouse);
//  6. the ClickHouse connection closes (embedded chDB last of all); then telemetry flushes.
func (a *App) modules() []lifecycle.Module {
	return []lifecycle.Module{
		{
			// auth verifies every call's token against a local copy of the token store (NATS KV,
			// kept current by a watch) and holds the scope table.
			Name: "auth",
			Deps: []string{"nats"},
			Init: func(ctx context.Context) error {
				if err := a.loadServiceToken(); err != nil {
					return err
				}
				v, err := auth.NewVerifier(a.cfg.Auth, a.nats, a.serviceToken, a.log.With("module", "auth"))
				if err != nil {
					return err
				}
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := v.Start(wctx); err != nil {
					return err
				}
				a.verifier, a.gate = v, auth.NewGate(v, a.log.With("module", "auth"))
				return nil
			},
			Stop: func(context.Context) error { a.verifier.Stop(); return nil },
		},
		{
			// server is the gRPC server (and the HTTP port). It needs NATS itself (calls with a
			// request_id keep their answers there) and outlives none of the engines its calls use.
			Name:  "server",
			Deps:  []string{"auth", "nats"},
			After: []string{"clickhouse"},
			Init: func(context.Context) error {
				a.warnInsecure()
				grpcTLS, err := a.cfg.TLS.Server(true)
				if err != nil {
					return err
				}
				s, err := grpcserver.New(grpcserver.Options{Addr: a.cfg.GRPCAddr, Log: a.log, Tracer: a.tel.Tracer, Propagator: a.tel.Propagator, Gate: a.gate, TLS: grpcTLS})
				if err != nil {
					return err
				}
				a.server = s
				if a.cfg.Telemetry.HTTPAddr != "" {
					// Probes send no client certificate: the HTTP port verifies one only when given.
					httpTLS, err := a.cfg.TLS.Server(false)
					if err != nil {
						return err
					}
					if a.httpAddr, err = a.tel.ServeHTTP(a.cfg.Telemetry.HTTPAddr, telemetry.HTTPOptions{Guard: a.gate.Wrap, TLS: httpTLS}); err != nil {
						return err
					}
				}
				return nil
			},
			Start: func(context.Context) error {
				if a.nats != nil {
					// Calls that carry a request_id run once per id (answers kept in NATS KV).
					a.server.SetRequestStore(idempotency.NewStore(a.nats.JS))
				}
				return a.server.Serve()
			},
			Stop: func(ctx context.Context) error { return a.server.Stop(ctx) },
		},
		{
			Name:  "nats",
			After: []string{"clickhouse"},
			Init: func(ctx context.Context) error {
				cfg := a.cfg.NATS
				cfg.StoreDir = a.cfg.natsStoreDir()
				cfg.Name = "sluiced " + a.cfg.Target.String()
				c, err := natsx.Connect(ctx, cfg, a.log)
				if err != nil {
					return err
				}
				a.nats = c
				return a.writeNATSURL()
			},
			Stop: func(context.Context) error { a.nats.Close(); return nil },
		},
		{
			Name: "clickhouse",
			Init: func(ctx context.Context) error {
				wh, err := a.openClickHouse(ctx)
				if err != nil {
					return err
				}
				a.warehouse = wh
				return nil
			},
			Stop: func(context.Context) error { return errors.Join(a.workspaceUsers.Close(), a.warehouse.Close()) },
		},
		{
			Name: "peers",
			Deps: []string{"server"},
			Stop: func(context.Context) error {
				var errs []error
				for _, cc := range a.conns {
					errs = append(errs, cc.Close())
				}
				return errors.Join(errs...)
			},
		},
		a.serviceModule(lifecycle.Module{Name: "catalog", Deps: []string{"server", "nats", "clickhouse"}}, catalog.ServiceName, func() (service, error) {
			return catalog.New(a.cfg.Catalog, catalog.Deps{
				Log: a.log.With("service", "catalog"), Metrics: a.tel.Registry, NATS: a.nats, Warehouse: a.warehouse,
				Events: opsevents.NewPublisher(a.nats, a.tel.Propagator), OpsDatabase: a.cfg.ClickHouse.Database,
				WorkspaceUsers: a.workspaceUsers, OperatorTokenFile: a.cfg.OperatorTokenFile(),
			})
		}),
		a.serviceModule(lifecycle.Module{Name: "scheduler", Deps: []string{"server", "nats", "auth", "peers"}, After: []string{"catalog"}}, scheduler.ServiceName, func() (service, error) {
			cat, err := a.catalogClient()
			if err != nil {
				return nil, err
			}
			return scheduler.New(a.cfg.Scheduler, scheduler.Deps{
				Log: a.log.With("service", "scheduler"), Metrics: a.tel.Registry, NATS: a.nats,
				Catalog: cat, CopyTokens: a.verifier,
			})
		}),
		a.serviceModule(lifecycle.Module{Name: "executor", Deps: []string{"server", "nats", "clickhouse", "peers"}, After: []string{"catalog"}}, executor.ServiceName, func() (service, error) {
			cat, err := a.catalogClient()
			if err != nil {
				return nil, err
			}
			return executor.New(a.cfg.Executor, executor.Deps{
				Log: a.log.With("service", "executor"), Metrics: a.tel.Registry, NATS: a.nats,
				Catalog: cat, Warehouse: a.warehouse, WorkspaceUsers: a.workspaceUsers,
				Events: opsevents.NewPublisher(a.nats, a.tel.Propagator), OpsDatabase: a.cfg.ClickHouse.Database,
			})
		}),
		a.serviceModule(lifecycle.Module{Name: "opslog", Deps: []string{"server", "nats", "clickhouse"}}, opslog.ServiceName, func() (service, error) {
			return opslog.New(a.cfg.OpsLog, opslog.Deps{
				Log: a.log.With("service", "opslog"), Metrics: a.tel.Registry, NATS: a.nats,
				Warehouse: a.warehouse, Database: a.cfg.ClickHouse.Database,
			})
		}),
		// ingest serves the Events API on its own HTTP listener (-events-addr), opened at Init;
		// its writer starts after the lease is won (see services/ingest).
		a.serviceModule(lifecycle.Module{Name: "ingest", Deps: []string{"server", "nats", "clickhouse", "peers"}, After: []string{"catalog"}}, ingest.ServiceName, func() (service, error) {
			cat, err := a.catalogClient()
			if err != nil {
				return nil, err
			}
			// The Events API is public: TLS like the HTTP port (no client certificate asked).
			eventsTLS, err := a.cfg.TLS.Server(false)
			if err != nil {
				return nil, err
			}
			s, err := ingest.New(a.cfg.Ingest, ingest.Deps{
				Log: a.log.With("service", "ingest"), Metrics: a.tel.Registry, NATS: a.nats, Warehouse: a.warehouse,
				Catalog: cat, Events: opsevents.NewPublisher(a.nats, a.tel.Propagator),
				Guard: a.gate.Wrap, TLS: eventsTLS,
			})
			if err != nil {
				return nil, err
			}
			a.ingest = s
			return listeningIngest{s}, nil
		}),
		{
			Name: "all",
			Deps: []string{"catalog", "scheduler", "executor", "opslog", "ingest"},
		},
	}
}

// service is what each service offers the process.
type service interface {
	Register(r grpcRegistrar)
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// serviceModule is the module m of one service, served under grpcName: build makes the
// service at Init (its Deps are initialised by then), which registers it on the gRPC server;
// it starts as soon as NATS, and ClickHouse when it needs it, answer (readiness.go), and stops.
func (a *App) serviceModule(m lifecycle.Module, grpcName string, build func() (service, error)) lifecycle.Module {
	var svc service
	m.Init = func(context.Context) error {
		s, err := build()
		if err != nil {
			return err
		}
		svc = s
		a.register(grpcName, s.Register)
		return nil
	}
	m.Start = func(ctx context.Context) error {
		waitFor := []dependency{a.natsDependency()}
		if slices.Contains(m.Deps, "clickhouse") {
			waitFor = append(waitFor, a.clickhouseDependency())
		}
		return a.startService(ctx, m.Name, grpcName, waitFor, svc.Start)
	}
	m.Stop = func(ctx context.Context) error { return svc.Stop(ctx) }
	return m
}

// listeningIngest opens the Events API once the ingest service has started.
type listeningIngest struct{ *ingest.Service }

func (s listeningIngest) Start(ctx context.Context) error {
	if err := s.Service.Start(ctx); err != nil {
		return err
	}
	return s.Listen()
}

// catalogClient calls the catalog: this process's own over loopback, or -catalog-addr.
func (a *App) catalogClient() (catalogclient.Client, error) {
	cc, err := a.peer("catalog", a.cfg.Peers.Catalog)
	if err != nil {
		return nil, err
	}
	return catalogclient.New(cc), nil
}

// register adds a service to the gRPC server and to health reporting.
func (a *App) register(name string, reg func(r grpcRegistrar)) {
	reg(a.server.GRPC)
	a.server.AddService(name)
	a.services = append(a.services, name)
}
