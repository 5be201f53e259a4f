package warehouse

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/platform/chsql"
	"regexp"
	"time"
)

// Engine names a Conn implementation.
type Engine string

const (
	// EngineEmbedded is chDB, ClickHouse running inside this process.
	EngineEmbedded Engine = "chdb"
	// EngineNative is a ClickHouse server reached over the native protocol.
	EngineNative Engine = "native"
)

// Settings are ClickHouse settings for one call: max_threads,
// max_memory_usage, max_execution_time, max_block_size,
// insert_deduplication_token, readonly, ... Values are Go integers, floats,
// bools, strings or time.Duration (sent as whole seconds).
type Settings map[string]any

// CallOptions are the resolved options of one call.
type CallOptions struct {
	// QueryID identifies the statement on the server (system.processes,
	// KILL QUERY, query_log). Generated when not given.
	QueryID  string
	Settings Settings
}

// Option sets a per-call option.
type Option func(*CallOptions)

// WithQueryID sets the query id of the call.
func WithQueryID(id string) Option {
	return func(o *CallOptions) { o.QueryID = id }
}

// WithSettings adds ClickHouse settings to the call; later options win.
func WithSettings(s Settings) Option {
	return func(o *CallOptions) {
		if o.Settings == nil {
			o.Settings = Settings{}
		}
		for k, v := range s {
			o.Settings[k] = v
		}
	}
}

// Stats are the statistics of one call as the engine reports them; the
// package documentation says what each engine fills in. Fields an engine
// does not report are 0.
type Stats struct {
	QueryID      string
	ReadRows     uint64
	ReadBytes    uint64
	WrittenRows  uint64
	WrittenBytes uint64
	MemoryUsage  uint64 // peak memory of the query in bytes, when known
	// CPUTime is the CPU time the query used (user and system), when the engine reports it.
	CPUTime time.Duration
	Elapsed time.Duration
}

// Column is one result column.
type Column struct {
	Name string
	Type string // ClickHouse type as the engine spells it, e.g. "Nullable(Int32)"
}

// Result is a fully read query result. Values in Rows are typed:
//
//   - Int8..Int64 as int64, UInt8..UInt64 as uint64; Int128, Int256,
//     UInt128, UInt256 and Decimal as their exact decimal string
//   - Float32, Float64 as float64
//   - String, FixedString, Enum, UUID, IPv4, IPv6 as string
//   - Date, Date32, DateTime, DateTime64 as time.Time in UTC
//   - Bool as bool
//   - NULL as nil; Nullable and LowCardinality are unwrapped
//   - Array and Tuple as []any; Map as map[string]any
type Result struct {
	Columns []Column
	Rows    [][]any
	Stats   Stats
}

// Conn is a ClickHouse connection (a pool, for the native engine). It is
// safe for concurrent use.
//
// SQL passed to Conn must not change session state (SET, USE): with chDB
// the session is shared by every user in the process. Qualify table names
// with their database instead.
type Conn interface {
	// Exec runs a statement whose output is discarded: DDL, INSERT ...
	// SELECT, ALTER, OPTIMIZE, ...
	Exec(ctx context.Context, sql string, opts ...Option) (Stats, error)
	// Query runs a statement that returns a result (SELECT, SHOW, DESCRIBE,
	// EXPLAIN, ...) and reads it whole. sql must not carry a FORMAT clause.
	// Use Exec for other statements: clickhouse-go fails on them with EOF
	// against 18.16.
	Query(ctx context.Context, sql string, opts ...Option) (*Result, error)
	// InsertRows inserts rows in one batch. table is SQL: a name already
	// quoted with QuoteIdent or QualifiedName. columns are plain column
	// names; each row has one value per column, of a Go type that the column
	// accepts (see Result for the mapping; time.Time for dates).
	InsertRows(ctx context.Context, table string, columns []string, rows [][]any, opts ...Option) (Stats, error)
	Engine() Engine
	Ping(ctx context.Context) error
	// Close releases the connection. Calls after Close fail.
	Close() error
}

// QuoteIdent quotes a database, table or column name for ClickHouse SQL (chsql.QuoteIdent).
func QuoteIdent(name string) string { return chsql.QuoteIdent(name) }

// QuoteString quotes s as a ClickHouse string literal (chsql.QuoteString).
func QuoteString(s string) string { return chsql.QuoteString(s) }

// QualifiedName returns `db`.`table` (chsql.QualifiedName).
func QualifiedName(db, table string) string { return chsql.QualifiedName(db, table) }

// tableRef matches what InsertRows accepts as a table: a name or a quoted
// name, optionally qualified. Anything else (a second statement, a table
// function) is refused before it reaches the engine.
var tableRef = regexp.MustCompile("^(?:`(?:[^`\\\\]|\\\\.)*`|[A-Za-z_][A-Za-z0-9_]*)(?:\\.(?:`(?:[^`\\\\]|\\\\.)*`|[A-Za-z_][A-Za-z0-9_]*))?$")

func checkInsert(table string, columns []string) *Error {
	if !tableRef.MatchString(table) {
		return &Error{Message: fmt.Sprintf("insert: %q is not a table name (quote it with QuoteIdent or QualifiedName)", table), Class: ClassPermanent}
	}
	if len(columns) == 0 {
		return &Error{Message: "insert into " + table + ": no columns", Class: ClassPermanent}
	}
	return nil
}

func resolveOptions(opts []Option) CallOptions {
	var o CallOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.QueryID == "" {
		o.QueryID = newQueryID()
	}
	return o
}

// effectiveSettings returns the settings of a call with max_execution_time
// derived from the context deadline (remaining seconds, rounded up) unless
// the caller set it. Engines that cannot interrupt a running statement rely
// on this bound; for servers it is a second line behind KILL QUERY.
func effectiveSettings(ctx context.Context, s Settings) Settings {
	dl, ok := ctx.Deadline()
	if !ok {
		return s
	}
	if _, set := s["max_execution_time"]; set {
		return s
	}
	out := make(Settings, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	out["max_execution_time"] = deadlineSeconds(time.Until(dl))
	return out
}

func deadlineSeconds(d time.Duration) int64 {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return secs
}
