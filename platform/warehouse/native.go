package warehouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// NativeConfig configures the native-protocol engine. Zero durations and
// pool sizes take clickhouse-go's defaults.
type NativeConfig struct {
	Addrs                 []string // host:port of the native protocol (9000, 9440 with TLS)
	Database              string
	Username              string
	Password              string
	TLS                   bool
	TLSInsecureSkipVerify bool
	DialTimeout           time.Duration
	ReadTimeout           time.Duration
	MaxOpenConns          int
	MaxIdleConns          int
	ConnMaxLifetime       time.Duration
	// Unchecked skips the first connection: the server may be unreachable when the process
	// starts (calls fail until it answers; Ping tells when it does).
	Unchecked bool
}

// killTimeout bounds the KILL QUERY issued after a cancelled call.
const killTimeout = 10 * time.Second

// OpenNative connects to a ClickHouse server and checks it answers (unless cfg.Unchecked).
func OpenNative(ctx context.Context, cfg NativeConfig) (Conn, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("warehouse: native engine needs at least one address (host:9000)")
	}
	opts := &clickhouse.Options{
		Protocol:        clickhouse.Native,
		Addr:            cfg.Addrs,
		Auth:            clickhouse.Auth{Database: cfg.Database, Username: cfg.Username, Password: cfg.Password},
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxIdleConns,
		ConnMaxLifetime: cfg.ConnMaxLifetime,
	}
	if cfg.TLS {
		opts.TLS = &tls.Config{InsecureSkipVerify: cfg.TLSInsecureSkipVerify} //nolint:gosec // opt-in by configuration
	}
	db, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("warehouse: open %s: %w", strings.Join(cfg.Addrs, ","), err)
	}
	c := &nativeConn{db: db}
	if cfg.Unchecked {
		return c, nil
	}
	if err := c.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("warehouse: connect to %s: %w", strings.Join(cfg.Addrs, ","), err)
	}
	return c, nil
}

type nativeConn struct {
	db driver.Conn
}

var _ Conn = (*nativeConn)(nil)

func (c *nativeConn) Engine() Engine { return EngineNative }

func (c *nativeConn) Close() error { return c.db.Close() }

func (c *nativeConn) Ping(ctx context.Context) error {
	if err := c.db.Ping(ctx); err != nil {
		return c.wrap(ctx, err, "")
	}
	return nil
}

// executionGrace is how long after max_execution_time the client kills a
// query the server has not stopped itself. ClickHouse 18.16 ignores
// max_execution_time sent in the query packet (measured: the query ran
// on), so the limit is enforced on both sides.
const executionGrace = time.Second

var errExecutionLimit = errors.New("max_execution_time exceeded")

// call carries one statement's options and collects its statistics from
// the server's progress and profile-event packets.
type call struct {
	CallOptions
	limit  time.Duration // max_execution_time of the call, 0 if none
	start  time.Time
	cancel context.CancelFunc
	mu     sync.Mutex // packets arrive on the driver's goroutine
	stats  Stats
}

// newCall prepares a call: the returned context carries the query id,
// settings and packet callbacks for clickhouse-go, and ends at the call's
// max_execution_time plus executionGrace.
func (c *nativeConn) newCall(ctx context.Context, opts []Option) (*call, context.Context) {
	cl := &call{CallOptions: resolveOptions(opts), start: time.Now(), cancel: func() {}}
	cl.stats.QueryID = cl.QueryID
	qopts := []clickhouse.QueryOption{
		clickhouse.WithQueryID(cl.QueryID),
		clickhouse.WithProgress(func(p *clickhouse.Progress) {
			cl.mu.Lock()
			defer cl.mu.Unlock()
			// Progress packets carry increments.
			cl.stats.ReadRows += p.Rows
			cl.stats.ReadBytes += p.Bytes
			cl.stats.WrittenRows += p.WroteRows
			cl.stats.WrittenBytes += p.WroteBytes
		}),
		clickhouse.WithProfileEvents(func(events []clickhouse.ProfileEvent) {
			cl.mu.Lock()
			defer cl.mu.Unlock()
			for _, e := range events {
				switch e.Name {
				case "MemoryTrackerPeakUsage", "MemoryTrackerUsage":
					if v := uint64(max(e.Value, 0)); v > cl.stats.MemoryUsage {
						cl.stats.MemoryUsage = v
					}
				case "UserTimeMicroseconds", "SystemTimeMicroseconds":
					// Profile events carry increments, per thread.
					cl.stats.CPUTime += time.Duration(max(e.Value, 0)) * time.Microsecond
				}
			}
		}),
	}
	if s := effectiveSettings(ctx, cl.Settings); len(s) > 0 {
		cs := make(clickhouse.Settings, len(s))
		for k, v := range s {
			cs[k] = nativeSettingValue(v)
		}
		qopts = append(qopts, clickhouse.WithSettings(cs))
		if secs, ok := cs["max_execution_time"].(int); ok && secs > 0 {
			cl.limit = time.Duration(secs) * time.Second
			ctx, cl.cancel = context.WithTimeoutCause(ctx, cl.limit+executionGrace, errExecutionLimit)
		}
	}
	return cl, clickhouse.Context(ctx, qopts...)
}

// nativeSettingValue converts a setting to what clickhouse-go can send:
// servers before protocol revision 54429 (18.16) take only int and bool.
func nativeSettingValue(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return int(x / time.Second)
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		rv := reflect.ValueOf(x)
		if rv.CanInt() {
			return int(rv.Int())
		}
		return int(rv.Uint())
	}
	return v
}

func (cl *call) done() Stats {
	cl.cancel()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.stats.Elapsed = time.Since(cl.start)
	return cl.stats
}

func (c *nativeConn) Exec(ctx context.Context, sql string, opts ...Option) (Stats, error) {
	cl, qctx := c.newCall(ctx, opts)
	err := c.db.Exec(qctx, sql)
	if err != nil {
		err = c.fail(ctx, qctx, err, cl)
	}
	return cl.done(), err
}

func (c *nativeConn) Query(ctx context.Context, sql string, opts ...Option) (*Result, error) {
	cl, qctx := c.newCall(ctx, opts)
	res, err := c.query(qctx, sql)
	if err != nil {
		err = c.fail(ctx, qctx, err, cl)
		cl.done()
		return nil, err
	}
	res.Stats = cl.done()
	return res, nil
}

func (c *nativeConn) query(ctx context.Context, sql string) (*Result, error) {
	rows, err := c.db.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	types := rows.ColumnTypes()
	res := &Result{Columns: make([]Column, len(types)), Rows: [][]any{}}
	dest := make([]any, len(types))
	for i, t := range types {
		res.Columns[i] = Column{Name: t.Name(), Type: t.DatabaseTypeName()}
		dest[i] = reflect.New(t.ScanType()).Interface()
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = normalize(reflect.ValueOf(d).Elem())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, rows.Close()
}

// InsertRows sends one native-protocol batch. The column list is explicit:
// servers as old as 18.16 cannot infer it. Values are converted to the Go
// type clickhouse-go expects for each column (an int64 for an Int32 column,
// []any for an array), failing on overflow rather than truncating.
func (c *nativeConn) InsertRows(ctx context.Context, table string, columns []string, rows [][]any, opts ...Option) (Stats, error) {
	cl, qctx := c.newCall(ctx, opts)
	if err := checkInsert(table, columns); err != nil {
		err.QueryID = cl.QueryID
		return cl.done(), err
	}
	quoted := make([]string, len(columns))
	for i, col := range columns {
		quoted[i] = QuoteIdent(col)
	}
	err := c.insert(qctx, "INSERT INTO "+table+" ("+strings.Join(quoted, ", ")+")", table, columns, rows)
	if err != nil {
		err = c.fail(ctx, qctx, err, cl)
	}
	stats := cl.done()
	if err != nil {
		return stats, err
	}
	if stats.WrittenRows == 0 {
		// Servers before protocol revision 54420 report no written rows.
		stats.WrittenRows = uint64(len(rows))
	}
	return stats, nil
}

func (c *nativeConn) insert(ctx context.Context, stmt, table string, columns []string, rows [][]any) error {
	batch, err := c.db.PrepareBatch(ctx, stmt)
	if err != nil {
		return err
	}
	// Closing aborts an unsent batch; after Send it is a no-op.
	defer func() { _ = batch.Close() }()
	cols := batch.Columns()
	if len(cols) != len(columns) {
		return &Error{Message: fmt.Sprintf("insert into %s: server expects %d columns, got %d", table, len(cols), len(columns)), Class: ClassPermanent}
	}
	scan := make([]reflect.Type, len(cols))
	for i, col := range cols {
		scan[i] = col.ScanType()
	}
	vals := make([]any, len(columns))
	for n, row := range rows {
		if len(row) != len(columns) {
			return &Error{Message: fmt.Sprintf("insert into %s: row %d has %d values for %d columns", table, n, len(row), len(columns)), Class: ClassPermanent}
		}
		for i, v := range row {
			if reflect.TypeOf(v) == scan[i] {
				vals[i] = v // the common case, kept cheap
				continue
			}
			if vals[i], err = convertTo(v, scan[i]); err != nil {
				return &Error{Message: fmt.Sprintf("insert into %s: row %d column %s: %v", table, n, columns[i], err), Class: ClassPermanent}
			}
		}
		if err := batch.Append(vals...); err != nil {
			return &Error{Message: fmt.Sprintf("insert into %s: row %d: %v", table, n, err), Class: ClassPermanent, Err: err}
		}
	}
	return batch.Send()
}

// fail turns a driver error into an *Error. When the caller's context or
// the execution limit ended the call, the query may still run on the
// server (an INSERT ... SELECT sends nothing back that would notice the
// closed connection), so it is killed, and waited for, on another
// connection.
func (c *nativeConn) fail(ctx, qctx context.Context, err error, cl *call) error {
	var e *Error
	switch {
	case expired(ctx):
		e = c.wrap(ctx, err, cl.QueryID)
	case expired(qctx):
		e = serverError(codeTimeoutExceeded, "", fmt.Sprintf("Timeout exceeded: max_execution_time %s (the server did not stop the query; it was killed)", cl.limit), cl.QueryID, err)
	default:
		return c.wrap(ctx, err, cl.QueryID)
	}
	if kerr := c.kill(cl.QueryID); kerr != nil {
		e.Message += "; killing the query on the server failed: " + kerr.Error()
	}
	return e
}

func (c *nativeConn) kill(queryID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	return c.db.Exec(ctx, "KILL QUERY WHERE query_id = "+QuoteString(queryID)+" SYNC")
}

func (c *nativeConn) wrap(ctx context.Context, err error, queryID string) *Error {
	var we *Error
	if errors.As(err, &we) {
		we.QueryID = queryID
		return we
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		name := ex.CodeName
		if name == "" && ex.Name != "" && !strings.Contains(ex.Name, ":") {
			name = ex.Name
		}
		e := serverError(ex.Code, name, ex.Message, queryID, err)
		if e.Code == codeQueryWasCancelled && expired(ctx) {
			e.Class = contextError(ctx, queryID).Class
		}
		return e
	}
	if expired(ctx) {
		e := contextError(ctx, queryID)
		e.Message = err.Error()
		return e
	}
	return causeError(err, queryID)
}
