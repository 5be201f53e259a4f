// Package app puts a sluiced process together from its modules.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/grpcserver"
	"github.com/sluicehq/sluice/platform/lifecycle"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/telemetry"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/ingest"
)

// App is one sluiced process.
type App struct {
	cfg Config
	log *slog.Logger
	tel *telemetry.Telemetry

	server   *grpcserver.Server
	httpAddr string
	nats     *natsx.Conn
	verifier *auth.Verifier
	gate     *auth.Gate
	// serviceToken is the credential this process sends to other services and accepts from
	// them.
	serviceToken string
	warehouse    warehouse.Conn
	// workspaceUsers runs each workspace's SQL as its own ClickHouse user (nil: on warehouse).
	workspaceUsers *warehouse.WorkspaceUsers
	conns          map[string]*grpc.ClientConn

	// ingest is the ingest service, when this process runs it (for EventsAddr).
	ingest *ingest.Service

	mgr      *lifecycle.Manager
	services []string
	ready    *readiness
}

// New builds the process for cfg, logging to logOut.
func New(ctx context.Context, cfg Config, logOut io.Writer) (*App, error) {
	log := telemetry.NewLogger(cfg.Telemetry, logOut)
	tel, err := telemetry.New(ctx, cfg.Telemetry, "sluiced", log)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, tel: tel, conns: map[string]*grpc.ClientConn{}}
	a.initReadiness()
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
		a.stopReadiness()
		return err
	}
	a.watchDependencies()
	a.ready.mu.Lock()
	ready := a.ready.ready
	a.ready.mu.Unlock()
	if !ready {
		a.log.Warn("sluiced started; services wait for their dependencies and are not ready yet", "grpc_addr", a.server.Addr(), "http_addr", a.httpAddr)
	}
	if a.cfg.Dev && a.cfg.Runs("catalog") {
		a.registerDevToken()
	}
	return nil
}

// Stop shuts the process down in the order written in modules.go: health goes NOT_SERVING at
// once (so load balancers and `sluice status` see it), then modules stop in reverse start
// order: the gRPC server, NATS and ClickHouse last.
func (a *App) Stop() error {
	a.tel.SetReady(false)
	if a.server != nil {
		a.server.Health.Shutdown()
	}
	a.stopReadiness()
	err := a.mgr.Stop(a.cfg.ShutdownTimeout)
	if terr := a.tel.Shutdown(context.Background()); terr != nil {
		a.log.Warn("telemetry shutdown", "err", terr)
	}
	return err
}

// GRPCAddr is the address the process serves gRPC on.
func (a *App) GRPCAddr() string { return a.server.Addr() }

// EventsAddr is the Events API's HTTP address, when this process runs the ingest service.
func (a *App) EventsAddr() string {
	if a.ingest == nil {
		return ""
	}
	return a.ingest.EventsAddr()
}

// HTTPAddr is the address of /metrics and /ready, or empty.
func (a *App) HTTPAddr() string { return a.httpAddr }

// NATSURL is the client URL of the embedded NATS server with its credentials (for tests and
// tools of the same process), or the configured URL.
func (a *App) NATSURL() string {
	if u := a.nats.EmbeddedURL(); u != "" {
		return u
	}
	return a.cfg.NATS.URL
}

// GRPCServices lists the services and methods registered on the gRPC server.
func (a *App) GRPCServices() map[string]grpc.ServiceInfo { return a.server.GRPC.GetServiceInfo() }

// OperatorTokenFile is where the catalog writes the operator token.
func (a *App) OperatorTokenFile() string { return a.cfg.OperatorTokenFile() }

// loadServiceToken reads the service credential, or makes one for this process alone when none
// is configured (all-in-one: the services call each other inside the process only).
func (a *App) loadServiceToken() error {
	if f := a.cfg.Auth.ServiceTokenFile; f != "" {
		t, err := auth.ReadServiceToken(f)
		if err != nil {
			return err
		}
		a.serviceToken = t
		return nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	a.serviceToken = base64.RawURLEncoding.EncodeToString(b)
	if a.cfg.Runs("catalog") && a.cfg.SplitMode() {
		a.log.Warn("no -auth.service-token-file: schedulers and executors in other processes cannot call this catalog")
	}
	return nil
}

// writeNATSURL writes the embedded NATS server's URL, with the password it made at this start,
// to <data-dir>/nats-url (mode 0600), for tools that inspect its streams and buckets
// (`nats --server "$(cat .sluice-data/nats-url)" kv ls`). Nothing is written when there is no
// embedded server or it takes no TCP clients (-nats-listen "").
func (a *App) writeNATSURL() error {
	u := a.nats.EmbeddedURL()
	path := filepath.Join(a.cfg.DataDir, "nats-url")
	if u == "" || a.cfg.NATS.Listen == "" {
		_ = os.Remove(path)
		return nil
	}
	if err := os.WriteFile(path+".tmp", []byte(u+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(path+".tmp", path)
}

// registerDevToken lets the CLI on this machine find the operator token of a -dev process
// without flags: it records, in the user's configuration directory (the file `sluice` reads,
// <config dir>/sluice/dev.json), which token file belongs to this gRPC address.
func (a *App) registerDevToken() {
	path, err := filepath.Abs(a.cfg.OperatorTokenFile())
	if err != nil {
		return
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		a.log.Warn("dev: no user configuration directory: give the CLI the token with --token", "token_file", path)
		return
	}
	file := filepath.Join(dir, "sluice", "dev.json")
	m := map[string]string{}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	m[a.server.Addr()] = path
	b, _ := json.MarshalIndent(m, "", "  ")
	err = os.MkdirAll(filepath.Dir(file), 0o700)
	if err == nil {
		err = os.WriteFile(file, append(b, '\n'), 0o600)
	}
	if err != nil {
		a.log.Warn("dev: could not record the operator token for the CLI", "file", file, "err", err)
		return
	}
	a.log.Info("dev: the operator token is in "+path+"; `sluice` on this machine uses it for "+a.server.Addr()+" without flags (start with: sluice workspace create NAME --use)", "token_file", path)
}

// warnInsecure says at start what an installation without TLS exposes.
func (a *App) warnInsecure() {
	if a.cfg.TLS.Enabled() {
		return
	}
	if a.cfg.SplitMode() {
		a.log.Warn("split mode without TLS: tokens, the service credential and data cross the network in clear text; set -tls-cert and -tls-key (see docs/security.md)")
		return
	}
	if host, _, err := net.SplitHostPort(a.cfg.GRPCAddr); err == nil {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			a.log.Warn("gRPC listens beyond loopback without TLS: tokens cross the network in clear text; set -tls-cert and -tls-key", "grpc_addr", a.cfg.GRPCAddr)
		}
	}
}

// Logger is the process logger.
func (a *App) Logger() *slog.Logger { return a.log }

func (a *App) peer(name, configured string) (*grpc.ClientConn, error) {
	if cc, ok := a.conns[name]; ok {
		return cc, nil
	}
	addr := configured
	opts := grpcserver.DialOptions{Tracer: a.tel.Tracer, Propagator: a.tel.Propagator, Token: a.serviceToken}
	var err error
	if a.cfg.Runs(name) {
		// Services call each other through gRPC also inside one process, over loopback.
		addr = a.server.Addr()
		if a.cfg.TLS.Enabled() {
			if opts.TLS, err = a.cfg.TLS.Loopback(); err != nil {
				return nil, err
			}
		}
	} else if a.cfg.TLS.Enabled() || a.cfg.TLS.CAFile != "" {
		if opts.TLS, err = a.cfg.TLS.Client(); err != nil {
			return nil, err
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("no address for the %s service: run it in this process (-target) or set -%s-addr", name, name)
	}
	cc, err := grpcserver.Dial(addr, opts)
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
		return warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: lib, DataDir: a.cfg.chdbDataDir(), Logger: a.log})
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
	// Unchecked: the server may be down now; the services that need it wait for it.
	cfg.Unchecked = true
	return warehouse.OpenNative(ctx, cfg)
}

// Warehouse is the process's ClickHouse connection (nil when no service of the process uses
// ClickHouse). Tests use it to load and check data.
func (a *App) Warehouse() warehouse.Conn { return a.warehouse }
