// Package app puts a sluiced process together from its modules.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/platform/grpcserver"
	"github.com/sluicehq/sluice/platform/lifecycle"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/telemetry"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog"
	"github.com/sluicehq/sluice/services/executor"
	"github.com/sluicehq/sluice/services/opslog"
	"github.com/sluicehq/sluice/services/scheduler"
)

// App is one sluiced process.
type App struct {
	cfg Config
	log *slog.Logger
	tel *telemetry.Telemetry

	server    *grpcserver.Server
	httpAddr  string
	nats      *natsx.Conn
	warehouse warehouse.Conn
	// workspaceUsers runs each workspace's SQL as its own ClickHouse user (nil: on warehouse).
	workspaceUsers *warehouse.WorkspaceUsers
	conns          map[string]*grpc.ClientConn

	catalog   *catalog.Service
	scheduler *scheduler.Service
	executor  *executor.Service
	opslog    *opslog.Service

	mgr      *lifecycle.Manager
	services []string
}

// New builds the process for cfg, logging to logOut.
func New(ctx context.Context, cfg Config, logOut io.Writer) (*App, error) {
	log := telemetry.NewLogger(cfg.Telemetry, logOut)
	tel, err := telemetry.New(ctx, cfg.Telemetry, "sluiced", log)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, tel: tel, conns: map[string]*grpc.ClientConn{}}
	mgr, err := lifecycle.New(a.modules(), cfg.Target, log)
	if err != nil {
		return nil, err
	}
	a.mgr = mgr
	return a, nil
}

// Start starts every module; on failure, what started is stopped and the error names the
// module that failed.
func (a *App) Start(ctx context.Context) error {
	a.log.Info("starting sluiced", "target", a.cfg.Target.String(), "modules", a.mgr.Order())
	if err := a.mgr.Start(ctx); err != nil {
		return err
	}
	for _, s := range a.services {
		a.server.SetServing(s, true)
	}
	a.server.SetOverall(true)
	a.tel.SetReady(true)
	a.log.Info("sluiced ready", "grpc_addr", a.server.Addr(), "http_addr", a.httpAddr, "services", a.services)
	return nil
}

// Stop shuts the process down in the order written in modules.go: health goes NOT_SERVING at
// once (so load balancers and `sluice status` see it), then modules stop in reverse start
// order, the gRPC server and NATS last.
func (a *App) Stop() error {
	a.tel.SetReady(false)
	if a.server != nil {
		a.server.Health.Shutdown()
	}
	err := a.mgr.Stop(a.cfg.ShutdownTimeout)
	if terr := a.tel.Shutdown(context.Background()); terr != nil {
		a.log.Warn("telemetry shutdown", "err", terr)
	}
	return err
}

// GRPCAddr is the address the process serves gRPC on.
func (a *App) GRPCAddr() string { return a.server.Addr() }

// HTTPAddr is the address of /metrics and /ready, or empty.
func (a *App) HTTPAddr() string { return a.httpAddr }

// NATSURL is the client URL of the embedded NATS server, or the configured URL.
func (a *App) NATSURL() string {
	if u := a.nats.ClientURL(); u != "" {
		return u
	}
	return a.cfg.NATS.URL
}

// Logger is the process logger.
func (a *App) Logger() *slog.Logger { return a.log }

func (a *App) peer(name, configured string) (*grpc.ClientConn, error) {
	if cc, ok := a.conns[name]; ok {
		return cc, nil
	}
	addr := configured
	if a.cfg.Runs(name) {
		// Services call each other through gRPC also inside one process, over loopback.
		addr = a.server.Addr()
	}
	if addr == "" {
		return nil, fmt.Errorf("no address for the %s service: run it in this process (-target) or set -%s-addr", name, name)
	}
	cc, err := grpcserver.Dial(addr, a.tel.Tracer, a.tel.Propagator)
	if err != nil {
		return nil, err
	}
	a.conns[name] = cc
	return cc, nil
}

// openClickHouse opens embedded chDB, or the native driver when -clickhouse-addr is set.
func (a *App) openClickHouse(ctx context.Context) (warehouse.Conn, error) {
	ch := a.cfg.ClickHouse
	if a.cfg.EmbeddedClickHouse() {
		lib := ch.EmbeddedLib
		if lib == "" {
			lib = warehouse.DefaultEmbeddedLibPath()
		}
		a.log.Info("opening embedded clickhouse (chDB)", "lib", lib, "data_dir", a.cfg.chdbDataDir())
		return warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: lib, DataDir: a.cfg.chdbDataDir()})
	}
	a.log.Info("connecting to clickhouse", "addrs", ch.Addrs.String(), "database", ch.Database)
	cfg := warehouse.NativeConfig{
		Addrs: ch.Addrs, Database: "default", Username: ch.Username, Password: ch.Password, TLS: ch.TLS,
		DialTimeout: ch.DialTimeout, ReadTimeout: ch.ReadTimeout, MaxOpenConns: ch.MaxOpenConns, MaxIdleConns: ch.MaxOpenConns,
	}
	if ch.WorkspaceUser != "" {
		users, err := warehouse.NewWorkspaceUsers(cfg, ch.WorkspaceUser, ch.WorkspacePassword)
		if err != nil {
			return nil, err
		}
		a.workspaceUsers = users
		a.log.Info("workspaces' SQL runs as their own ClickHouse users", "user", ch.WorkspaceUser)
	}
	return warehouse.OpenNative(ctx, cfg)
}

// Warehouse is the process's ClickHouse connection (nil when no service of the process uses
// ClickHouse). Tests use it to load and check data.
func (a *App) Warehouse() warehouse.Conn { return a.warehouse }
