package app

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/config"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/telemetry"
	"github.com/sluicehq/sluice/platform/tlsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog"
	"github.com/sluicehq/sluice/services/executor"
	"github.com/sluicehq/sluice/services/ingest"
	"github.com/sluicehq/sluice/services/opslog"
	"github.com/sluicehq/sluice/services/scheduler"
)

// Targets a process can run; "all" runs every service.
var Targets = []string{"all", "catalog", "scheduler", "executor", "opslog", "ingest"}

// DefaultGRPCAddr is where sluiced serves and where the CLI looks by default.
const DefaultGRPCAddr = "127.0.0.1:7181"

// Config is the whole configuration of a sluiced process. Flags are registered in one place
// (RegisterFlags), which is the single home of the defaults; a YAML file (-config) may set any
// field, using the yaml names below; flags given on the command line win over the file.
type Config struct {
	ConfigFile string `yaml:"-"`
	// PrintVersion asks for the version only (ParseConfig returns ErrPrintVersion).
	PrintVersion bool `yaml:"-"`

	// Target lists the modules this process runs.
	Target config.StringList `yaml:"target"`
	// Dev is the development preset (see applyDev).
	Dev bool `yaml:"dev"`
	// DataDir holds all local state: embedded NATS data and embedded ClickHouse data.
	DataDir string `yaml:"data_dir"`
	// GRPCAddr is the address of this process's gRPC server.
	GRPCAddr string `yaml:"grpc_addr"`
	// ShutdownTimeout bounds each module's stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Peers are the addresses of services this process does not run (split mode).
	Peers PeersConfig `yaml:"peers"`

	NATS       natsx.Config     `yaml:"nats"`
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
	// Auth selects how calls are authenticated (tokens, the service credential, JWTs).
	Auth auth.Config `yaml:"auth"`
	// TLS configures the gRPC and HTTP listeners and calls to other services.
	TLS tlsx.Config `yaml:"tls"`

	Catalog   catalog.Config   `yaml:"catalog"`
	Scheduler scheduler.Config `yaml:"scheduler"`
	Executor  executor.Config  `yaml:"executor"`
	OpsLog    opslog.Config    `yaml:"opslog"`
	Ingest    ingest.Config    `yaml:"ingest"`
}

// PeersConfig holds the gRPC addresses of services run by other processes. Only the catalog
// is called by other services (the scheduler, the executor and ingest); nothing calls the
// scheduler or the ops log from inside an installation.
type PeersConfig struct {
	Catalog string `yaml:"catalog"`
}

// ClickHouseConfig selects the engine: embedded chDB unless Addrs is set.
type ClickHouseConfig struct {
	// EmbeddedLib is the path of libchdb.so for the embedded engine.
	EmbeddedLib string `yaml:"embedded_lib"`
	// EmbeddedPath is chDB's data directory (default: <data_dir>/clickhouse). chDB serves one
	// data directory per process.
	EmbeddedPath string `yaml:"embedded_path"`
	// Addrs of ClickHouse servers (native protocol); setting it selects the native driver.
	Addrs config.StringList `yaml:"addrs"`
	// Database for Sluice's own tables (datasources_ops_log).
	Database string `yaml:"database"`
	// Username and Password for the native driver.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS connects with TLS.
	TLS bool `yaml:"tls"`
	// DialTimeout and ReadTimeout bound the native driver's network calls.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxOpenConns bounds the native driver's pool.
	MaxOpenConns int `yaml:"max_open_conns"`
	// WorkspaceUser, when set, is the ClickHouse user (a name holding {workspace}) that runs
	// each workspace's SQL, with WorkspacePassword; see docs/security.md.
	WorkspaceUser     string `yaml:"workspace_user"`
	WorkspacePassword string `yaml:"workspace_password"`
}

// RegisterFlags registers every flag of sluiced.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ConfigFile, "config", "", "YAML configuration file (flags given on the command line win over it)")
	fs.BoolVar(&c.PrintVersion, "version", false, "print the version and exit")
	c.Target = config.StringList{"all"}
	fs.Var(&c.Target, "target", "comma list of modules to run: "+strings.Join(Targets, ", "))
	fs.BoolVar(&c.Dev, "dev", false, "development preset: data in ./.sluice-data, debug logs")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for all local state (embedded NATS and ClickHouse)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "gRPC listen address")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long each module may take to stop")
	fs.StringVar(&c.Peers.Catalog, "catalog-addr", "", "gRPC address of the catalog when this process does not run it")

	fs.StringVar(&c.NATS.URL, "nats-url", "", "external NATS server or cluster; empty runs an embedded server with data under -data-dir")
	fs.StringVar(&c.NATS.Listen, "nats-listen", "127.0.0.1:0", "client address of the embedded NATS server (port 0: any free port)")
	fs.IntVar(&c.NATS.Replicas, "nats-replicas", 1, "replicas of the JetStream streams and buckets Sluice creates")
	fs.StringVar(&c.NATS.User, "nats-user", "", "user for -nats-url (or user:password@ in the URL)")
	fs.StringVar(&c.NATS.Password, "nats-password", "", "password of -nats-user")
	fs.StringVar(&c.NATS.CredsFile, "nats-creds", "", "NATS credentials file (user JWT and nkey seed) for -nats-url")
	fs.StringVar(&c.NATS.NKeyFile, "nats-nkey", "", "file holding an nkey seed for -nats-url")
	fs.StringVar(&c.NATS.TLSCA, "nats-tls-ca", "", "CA certificates (PEM) that verify the NATS server (tls:// URLs)")
	fs.StringVar(&c.NATS.TLSCert, "nats-tls-cert", "", "client certificate (PEM) for a NATS server that verifies clients")
	fs.StringVar(&c.NATS.TLSKey, "nats-tls-key", "", "private key (PEM) of -nats-tls-cert")

	fs.StringVar(&c.ClickHouse.EmbeddedLib, "clickhouse-embedded-lib", "", "path of libchdb.so for embedded ClickHouse (default: the per-user cache filled by `make chdb`)")
	fs.StringVar(&c.ClickHouse.EmbeddedPath, "clickhouse-embedded-path", "", "data directory of embedded ClickHouse (default: <data-dir>/clickhouse)")
	fs.Var(&c.ClickHouse.Addrs, "clickhouse-addr", "ClickHouse server addresses host:9000 (comma list); selects the native driver instead of embedded chDB")
	fs.StringVar(&c.ClickHouse.Database, "clickhouse-database", "sluice", "database for Sluice's own tables")
	fs.StringVar(&c.ClickHouse.Username, "clickhouse-user", "default", "ClickHouse user (native driver)")
	fs.StringVar(&c.ClickHouse.Password, "clickhouse-password", "", "ClickHouse password (native driver)")
	fs.BoolVar(&c.ClickHouse.TLS, "clickhouse-tls", false, "connect to ClickHouse with TLS")
	fs.DurationVar(&c.ClickHouse.DialTimeout, "clickhouse-dial-timeout", 5*time.Second, "ClickHouse dial timeout")
	fs.DurationVar(&c.ClickHouse.ReadTimeout, "clickhouse-read-timeout", 5*time.Minute, "ClickHouse read timeout")
	fs.IntVar(&c.ClickHouse.MaxOpenConns, "clickhouse-max-open-conns", 16, "ClickHouse connection pool size")
	fs.StringVar(&c.ClickHouse.WorkspaceUser, "clickhouse-workspace-user", "", "ClickHouse user that runs each workspace's SQL, a name holding {workspace} (e.g. sluice_{workspace}); empty: Sluice's own user (see docs/security.md)")
	fs.StringVar(&c.ClickHouse.WorkspacePassword, "clickhouse-workspace-password", "", "password of the -clickhouse-workspace-user users")

	fs.StringVar(&c.Telemetry.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.Telemetry.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.Telemetry.OTLPEndpoint, "otlp-endpoint", "", "OTLP/gRPC endpoint for traces (host:port); empty exports none")
	fs.BoolVar(&c.Telemetry.OTLPInsecure, "otlp-insecure", false, "send OTLP without TLS")
	fs.StringVar(&c.Telemetry.HTTPAddr, "http-addr", "127.0.0.1:7182", "address for /metrics and /ready; empty disables it")

	c.Auth.RegisterFlags(fs)
	c.TLS.RegisterFlags(fs)
	c.Catalog.RegisterFlags(fs)
	c.Scheduler.RegisterFlags(fs)
	c.Executor.RegisterFlags(fs)
	c.OpsLog.RegisterFlags(fs)
	c.Ingest.RegisterFlags(fs)
}

// ErrPrintVersion is returned by ParseConfig for -version: print VersionString and exit.
var ErrPrintVersion = errors.New("version requested")

// ParseConfig builds the configuration from args: defaults, then the -config file, then flags.
func ParseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := config.Load(fs, args, "config", &c); err != nil {
		return c, err
	}
	if c.PrintVersion {
		return c, ErrPrintVersion
	}
	c.applyDev()
	return c, c.Validate()
}

// applyDev fills in the development preset: the one place where defaults depend on the mode.
func (c *Config) applyDev() {
	if !c.Dev {
		return
	}
	if c.DataDir == "" {
		c.DataDir = ".sluice-data"
	}
	if c.Telemetry.LogLevel == "info" {
		c.Telemetry.LogLevel = "debug"
	}
}

// Runs reports whether this process runs the service.
func (c Config) Runs(service string) bool {
	return slices.Contains(c.Target, "all") || slices.Contains(c.Target, service)
}

// EmbeddedNATS reports whether this process runs its own NATS server.
func (c Config) EmbeddedNATS() bool { return c.NATS.URL == "" }

// EmbeddedClickHouse reports whether this process uses chDB.
func (c Config) EmbeddedClickHouse() bool { return len(c.ClickHouse.Addrs) == 0 }

// Validate checks the whole configuration; errors name the key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Target) == 0 {
		errs = append(errs, errors.New("target: no module given"))
	}
	for _, t := range c.Target {
		if !slices.Contains(Targets, t) {
			errs = append(errs, fmt.Errorf("target: unknown module %q (known: %s)", t, strings.Join(Targets, ", ")))
		}
	}
	if c.DataDir == "" && c.EmbeddedNATS() {
		errs = append(errs, errors.New("data_dir: required for the embedded NATS server (set -data-dir, or -nats-url for an external one, or use -dev)"))
	}
	if c.DataDir == "" && c.ClickHouse.EmbeddedPath == "" && c.EmbeddedClickHouse() && c.needsClickHouse() {
		errs = append(errs, errors.New("data_dir: required for embedded ClickHouse (set -data-dir, or -clickhouse-addr for a server, or use -dev)"))
	}
	if c.ClickHouse.WorkspaceUser != "" {
		if c.EmbeddedClickHouse() {
			errs = append(errs, errors.New("clickhouse.workspace_user: needs a ClickHouse server (-clickhouse-addr); embedded ClickHouse has no users"))
		} else if !strings.Contains(c.ClickHouse.WorkspaceUser, warehouse.WorkspacePlaceholder) {
			errs = append(errs, fmt.Errorf("clickhouse.workspace_user: %q must hold %s", c.ClickHouse.WorkspaceUser, warehouse.WorkspacePlaceholder))
		}
	}
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc_addr: required"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s must be positive", c.ShutdownTimeout))
	}
	if !c.Runs("catalog") && c.Peers.Catalog == "" && (c.Runs("scheduler") || c.Runs("executor") || c.Runs("ingest")) {
		errs = append(errs, errors.New("peers.catalog: the scheduler, executor and ingest need the catalog: run it here or set -catalog-addr"))
	}
	if c.callsRemoteCatalog() && c.Auth.ServiceTokenFile == "" {
		errs = append(errs, errors.New("auth.service_token_file: required when the scheduler, executor or ingest runs without the catalog: every process of an installation reads the same service credential (for example: head -c 32 /dev/urandom | base64 > service-token)"))
	}
	if c.Runs("catalog") && c.OperatorTokenFile() == "" {
		errs = append(errs, errors.New("auth.operator_token_file: the catalog writes the operator token there on first start: set -data-dir or -auth.operator-token-file"))
	}
	if err := c.NATS.Validate(c.EmbeddedNATS()); err != nil {
		errs = append(errs, err)
	}
	for _, v := range []interface{ Validate() error }{c.Telemetry, c.Auth, c.TLS, c.Catalog, c.Scheduler, c.Executor, c.OpsLog, c.Ingest} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// callsRemoteCatalog reports whether a service of this process calls a catalog run by another
// process (and so needs the installation's service credential).
func (c Config) callsRemoteCatalog() bool {
	return !c.Runs("catalog") && (c.Runs("scheduler") || c.Runs("executor") || c.Runs("ingest"))
}

// SplitMode reports whether this process runs only some of the services: the others are
// reached over the network.
func (c Config) SplitMode() bool {
	for _, s := range []string{"catalog", "scheduler", "executor", "opslog"} {
		if !c.Runs(s) {
			return true
		}
	}
	return false
}

// OperatorTokenFile is where the catalog writes the operator token (default <data-dir>/token).
func (c Config) OperatorTokenFile() string {
	if c.Auth.OperatorTokenFile != "" {
		return c.Auth.OperatorTokenFile
	}
	if c.DataDir == "" {
		return ""
	}
	return filepath.Join(c.DataDir, "token")
}

// natsStoreDir is where the embedded NATS server keeps its state under the data directory.
func (c Config) natsStoreDir() string { return filepath.Join(c.DataDir, "nats") }

// chdbDataDir is where embedded ClickHouse keeps its data.
func (c Config) chdbDataDir() string {
	if c.ClickHouse.EmbeddedPath != "" {
		return c.ClickHouse.EmbeddedPath
	}
	return filepath.Join(c.DataDir, "clickhouse")
}

// needsClickHouse reports whether a service of this process uses ClickHouse.
func (c Config) needsClickHouse() bool {
	return c.Runs("catalog") || c.Runs("executor") || c.Runs("opslog") || c.Runs("ingest")
}
