package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/platform/warehouse/chdb"
)

// ChDBVersion is the chDB release Sluice is built and tested with; the
// library cache is keyed by it.
const ChDBVersion = "26.7.3-stable.1"

// EmbeddedConfig configures the embedded engine.
type EmbeddedConfig struct {
	// LibPath is libchdb.so; DefaultEmbeddedLibPath() when empty.
	LibPath string
	// DataDir holds the databases; it persists across restarts. Required.
	DataDir string
	// Logger receives what opening the data directory repaired; nil discards it.
	Logger *slog.Logger
}

// DefaultEmbeddedLibPath is where `make chdb` puts the library:
// ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/chdb/<version>/package/libchdb.so.
func DefaultEmbeddedLibPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "sluice-cache")
	}
	return filepath.Join(dir, "sluice", "chdb", ChDBVersion, "package", "libchdb.so")
}

// embeddedSessionSettings are set once on the shared chDB session. They
// only shape how values cross the boundary to this package (see jsonrows.go).
var embeddedSessionSettings = []string{
	"date_time_output_format = 'iso'",
	"date_time_input_format = 'best_effort'",
	"output_format_json_quote_64bit_integers = 1",
	"output_format_json_quote_decimals = 1",
	"output_format_json_quote_denormals = 1",
	"output_format_json_named_tuples_as_objects = 0",
}

// embeddedEngine is the process's one chDB connection. chDB allows one data
// directory per process and runs one statement at a time; every Conn
// returned by OpenEmbedded for that directory shares it.
type embeddedEngine struct {
	dataDir string
	conn    *chdb.Conn
	// turn is a one-slot semaphore: the holder runs statements (and SETs
	// settings for them) on the shared session. A channel rather than a
	// mutex so that waiting for it honours the context.
	turn   chan struct{}
	closed bool // guarded by turn
	refs   int  // guarded by embeddedMu
}

var (
	embeddedMu  sync.Mutex
	embeddedCur *embeddedEngine
)

// OpenEmbedded opens chDB on cfg.DataDir. Opening the directory that is
// already open in this process returns another handle on the same
// connection (closed when the last handle is closed); opening another
// directory while one is open is an error.
func OpenEmbedded(cfg EmbeddedConfig) (Conn, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("warehouse: embedded engine needs a data directory")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("warehouse: data directory %s: %w", cfg.DataDir, err)
	}
	libPath := cfg.LibPath
	if libPath == "" {
		libPath = DefaultEmbeddedLibPath()
	}
	if _, err := os.Stat(libPath); err != nil {
		return nil, fmt.Errorf("warehouse: chDB library %s: %w; fetch chDB %s with `make chdb` (runs `npm pack @chdb/lib-linux-x64-gnu@%s` into %s) or point -clickhouse-embedded-lib at a libchdb.so",
			libPath, err, ChDBVersion, ChDBVersion, filepath.Dir(filepath.Dir(libPath)))
	}

	embeddedMu.Lock()
	defer embeddedMu.Unlock()
	if e := embeddedCur; e != nil {
		if e.dataDir != dataDir {
			return nil, fmt.Errorf("warehouse: chDB already has data directory %s open in this process; cannot open %s (chDB allows one per process)", e.dataDir, dataDir)
		}
		e.refs++
		return &embeddedConn{e: e}, nil
	}

	if err := chdb.Load(libPath); err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("warehouse: data directory: %w", err)
	}
	// A kill during an insert can leave a deduplication record for a part that was never
	// renamed into place (see deduplog.go); drop such records before the engine loads them.
	repaired, err := repairDedupLogs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	if cfg.Logger != nil {
		for _, r := range repaired {
			cfg.Logger.Warn("insert deduplication records of parts that were never written dropped, so that their inserts can be retried",
				"table_dir", r.Table, "blocks", len(r.Dropped), "log", filepath.Base(r.Log))
		}
	}
	access, err := writeEmbeddedConfig(dataDir)
	if err != nil {
		return nil, err
	}
	c, err := chdb.Connect([]string{"clickhouse", access, "--path=" + dataDir})
	if err != nil {
		return nil, fmt.Errorf("warehouse: open chDB on %s: %w", dataDir, err)
	}
	if _, err := c.Query("SET "+strings.Join(embeddedSessionSettings, ", "), "Null"); err != nil {
		c.Close()
		return nil, fmt.Errorf("warehouse: configure chDB session: %w", err)
	}
	e := &embeddedEngine{dataDir: dataDir, conn: c, turn: make(chan struct{}, 1), refs: 1}
	embeddedCur = e
	return &embeddedConn{e: e}, nil
}

type embeddedConn struct {
	e      *embeddedEngine
	closed atomic.Bool
}

var _ Conn = (*embeddedConn)(nil)

func (c *embeddedConn) Engine() Engine { return EngineEmbedded }

func (c *embeddedConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	embeddedMu.Lock()
	defer embeddedMu.Unlock()
	c.e.refs--
	if c.e.refs > 0 {
		return nil
	}
	// Wait for a running statement: chDB cannot interrupt it.
	c.e.turn <- struct{}{}
	c.e.conn.Close()
	c.e.closed = true
	<-c.e.turn
	embeddedCur = nil
	return nil
}

func (c *embeddedConn) Ping(ctx context.Context) error {
	res, err := c.Query(ctx, "SELECT 1")
	if err != nil {
		return err
	}
	if len(res.Rows) != 1 {
		return fmt.Errorf("warehouse: ping: got %d rows", len(res.Rows))
	}
	return nil
}

func (c *embeddedConn) Exec(ctx context.Context, sql string, opts ...Option) (Stats, error) {
	o := resolveOptions(opts)
	var r chdb.Result
	err := c.withTurn(ctx, o, shapeOf(sql), func(clause string) error {
		if err := c.refuseMultiStatement(sql); err != nil {
			return err
		}
		var err error
		r, err = c.e.conn.Query(withClause(sql, clause), "Null")
		return err
	})
	return embeddedStats(o.QueryID, r), err
}

func (c *embeddedConn) Query(ctx context.Context, sql string, opts ...Option) (*Result, error) {
	o := resolveOptions(opts)
	var r chdb.Result
	err := c.withTurn(ctx, o, shapeOf(sql), func(clause string) error {
		if err := c.refuseMultiStatement(sql); err != nil {
			return err
		}
		var err error
		r, err = c.e.conn.Query(withClause(sql, clause), "JSONCompact")
		return err
	})
	if err != nil {
		return nil, err
	}
	res, err := decodeJSONCompact(r.Data)
	if err != nil {
		return nil, &Error{Message: err.Error(), Class: ClassUnknown, QueryID: o.QueryID, Err: err}
	}
	res.Stats = embeddedStats(o.QueryID, r)
	return res, nil
}

// refuseMultiStatement keeps chDB to one statement per call, like a
// server: chDB runs every statement of "a; b" (measured), so SQL that
// reaches Sluice from users could smuggle a second one. Only SQL with a
// semicolon is checked, by chDB's own parser (formatQuery).
func (c *embeddedConn) refuseMultiStatement(sql string) error {
	if !strings.Contains(sql, ";") {
		return nil
	}
	_, err := c.e.conn.Query("SELECT formatQuery("+QuoteString(sql)+")", "Null")
	var qe *chdb.QueryError
	if errors.As(err, &qe) && strings.Contains(qe.Message, "Multi-statements are not allowed") {
		return err
	}
	return nil // other parse errors are the statement's own, reported when it runs
}

// withClause appends a query-level SETTINGS clause on a new line (so a
// trailing line comment cannot swallow it), after any final semicolons.
func withClause(sql, clause string) string {
	if clause == "" {
		return sql
	}
	return strings.TrimRight(sql, " \t\r\n;") + "\n" + clause
}

// InsertRows sends the rows inline as JSONCompactEachRow. It first reads
// the table's column types (DESCRIBE) to encode dates and nested values the
// way each column parses them.
func (c *embeddedConn) InsertRows(ctx context.Context, table string, columns []string, rows [][]any, opts ...Option) (Stats, error) {
	o := resolveOptions(opts)
	if err := checkInsert(table, columns); err != nil {
		err.QueryID = o.QueryID
		return Stats{QueryID: o.QueryID}, err
	}
	var r chdb.Result
	err := c.withTurn(ctx, o, shapeClause, func(clause string) error {
		d, err := c.e.conn.Query("DESCRIBE TABLE "+table, "JSONCompact")
		if err != nil {
			return err
		}
		types, err := columnTypes(d.Data, table, columns)
		if err != nil {
			return err
		}
		q, err := insertJSONStatement(table, columns, types, rows, clause)
		if err != nil {
			return err
		}
		r, err = c.e.conn.Query(q, "Null")
		return err
	})
	return embeddedStats(o.QueryID, r), err
}

func columnTypes(describe []byte, table string, columns []string) ([]chType, error) {
	desc, err := decodeJSONCompact(describe)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]string, len(desc.Rows))
	for _, row := range desc.Rows {
		name, _ := row[0].(string)
		typ, _ := row[1].(string)
		byName[name] = typ
	}
	types := make([]chType, len(columns))
	for i, col := range columns {
		typ, ok := byName[col]
		if !ok {
			return nil, &Error{Code: 16, Name: codeNames[16], Message: fmt.Sprintf("insert into %s: no column %q", table, col), Class: ClassPermanent}
		}
		types[i] = parseType(typ)
	}
	return types, nil
}

func insertJSONStatement(table string, columns []string, types []chType, rows [][]any, clause string) (string, error) {
	buf := make([]byte, 0, 64+len(rows)*16*len(columns))
	buf = append(buf, "INSERT INTO "...)
	buf = append(buf, table...)
	buf = append(buf, " ("...)
	for i, col := range columns {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = append(buf, QuoteIdent(col)...)
	}
	buf = append(buf, ") "...)
	if clause != "" {
		buf = append(buf, clause...)
		buf = append(buf, ' ')
	}
	buf = append(buf, "FORMAT JSONCompactEachRow\n"...)
	for n, row := range rows {
		if len(row) != len(columns) {
			return "", &Error{Message: fmt.Sprintf("insert into %s: row %d has %d values for %d columns", table, n, len(row), len(columns)), Class: ClassPermanent}
		}
		buf = append(buf, '[')
		for i, v := range row {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendJSONValue(buf, v, types[i]); err != nil {
				return "", &Error{Message: fmt.Sprintf("insert into %s: row %d column %s: %v", table, n, columns[i], err), Class: ClassPermanent}
			}
		}
		buf = append(buf, ']', '\n')
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil // buf is not used again
}

// withTurn runs fn while holding the session, with the call's settings
// applied to the session and reset afterwards. It honours ctx only up to
// the start of the statement: chDB cannot interrupt a running one, which is
// why the deadline also becomes max_execution_time.
//
// readonly cannot be reset once SET, so it goes to fn as a query-level
// SETTINGS clause for the statement instead; so do all the settings of a
// statement whose shape takes them in a clause (see shape).
func (c *embeddedConn) withTurn(ctx context.Context, o CallOptions, sh shape, fn func(clause string) error) error {
	if c.closed.Load() {
		return &Error{Message: "connection is closed", Class: ClassPermanent, QueryID: o.QueryID}
	}
	if ctx.Err() != nil {
		return contextError(ctx, o.QueryID)
	}
	select {
	case c.e.turn <- struct{}{}:
	case <-ctx.Done():
		return contextError(ctx, o.QueryID)
	}
	defer func() { <-c.e.turn }()
	return c.inTurn(ctx, o, sh, fn)
}

// inTurn runs fn while the caller holds the turn (see withTurn and Sequence).
func (c *embeddedConn) inTurn(ctx context.Context, o CallOptions, sh shape, fn func(clause string) error) error {
	if c.e.closed {
		return &Error{Message: "connection is closed", Class: ClassPermanent, QueryID: o.QueryID}
	}
	if ctx.Err() != nil {
		return contextError(ctx, o.QueryID)
	}

	settings := o.Settings
	if sh != shapeDDL {
		settings = effectiveSettings(ctx, settings)
	}
	var clause string
	if sh == shapeClause && len(settings) > 0 {
		var err error
		if clause, err = settingsClause(settings); err != nil {
			return &Error{Message: err.Error(), Class: ClassPermanent, QueryID: o.QueryID}
		}
		settings = nil
	}
	if v, ok := settings["readonly"]; ok {
		lit, err := settingLiteral(v)
		if err != nil {
			return &Error{Message: "setting readonly: " + err.Error(), Class: ClassPermanent, QueryID: o.QueryID}
		}
		clause = "SETTINGS readonly = " + lit
		settings = maps.Clone(settings)
		delete(settings, "readonly")
	}
	if len(settings) == 0 {
		if err := fn(clause); err != nil {
			return c.wrap(ctx, err, o.QueryID)
		}
		return nil
	}
	set, reset, err := setStatements(settings)
	if err != nil {
		return &Error{Message: err.Error(), Class: ClassPermanent, QueryID: o.QueryID}
	}
	if _, err := c.e.conn.Query(set, "Null"); err != nil {
		return c.wrap(ctx, err, o.QueryID)
	}
	err = fn(clause)
	// The reset cannot fail for settings the SET accepted, short of chDB
	// itself failing; if it does, the call fails too rather than leaving
	// the leak of settings into later statements unreported.
	if _, rerr := c.e.conn.Query(reset, "Null"); rerr != nil {
		err = errors.Join(err, fmt.Errorf("reset chDB session settings: %w", rerr))
	}
	if err != nil {
		return c.wrap(ctx, err, o.QueryID)
	}
	return nil
}

func (c *embeddedConn) wrap(ctx context.Context, err error, queryID string) error {
	var qe *chdb.QueryError
	if errors.As(err, &qe) {
		e := parseMessageError(qe.Message, queryID)
		if e.Code == codeTimeoutExceeded && ctx.Err() != nil {
			e.Err = ctx.Err()
		}
		return e
	}
	var we *Error
	if errors.As(err, &we) {
		we.QueryID = queryID
		return we
	}
	return causeError(err, queryID)
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// setStatements renders SET statements that apply settings and that put
// them back: to the session's own value for the settings in
// embeddedSessionSettings, else to DEFAULT.
func setStatements(s Settings) (set, reset string, err error) {
	names, err := settingNames(s)
	if err != nil {
		return "", "", err
	}
	sets := make([]string, len(names))
	resets := make([]string, len(names))
	for i, name := range names {
		lit, err := settingLiteral(s[name])
		if err != nil {
			return "", "", fmt.Errorf("setting %s: %w", name, err)
		}
		sets[i] = name + " = " + lit
		resets[i] = name + " = DEFAULT"
		for _, own := range embeddedSessionSettings {
			if strings.HasPrefix(own, name+" = ") {
				resets[i] = own
			}
		}
	}
	return "SET " + strings.Join(sets, ", "), "SET " + strings.Join(resets, ", "), nil
}

// settingsClause renders a query-level SETTINGS clause.
func settingsClause(s Settings) (string, error) {
	names, err := settingNames(s)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(names))
	for i, name := range names {
		lit, err := settingLiteral(s[name])
		if err != nil {
			return "", fmt.Errorf("setting %s: %w", name, err)
		}
		parts[i] = name + " = " + lit
	}
	return "SETTINGS " + strings.Join(parts, ", "), nil
}

// settingNames are the settings' names, checked and sorted.
func settingNames(s Settings) ([]string, error) {
	names := make([]string, 0, len(s))
	for name := range s {
		if !settingName.MatchString(name) {
			return nil, fmt.Errorf("invalid setting name %q", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

func settingLiteral(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return QuoteString(x), nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case time.Duration:
		return strconv.FormatInt(int64(x/time.Second), 10), nil
	case int:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	}
	return "", fmt.Errorf("unsupported value type %T", v)
}

func embeddedStats(queryID string, r chdb.Result) Stats {
	return Stats{
		QueryID:      queryID,
		ReadRows:     r.StorageRowsRead,
		ReadBytes:    r.StorageBytesRead,
		WrittenRows:  r.RowsWritten,
		WrittenBytes: r.BytesWritten,
		Elapsed:      r.Elapsed,
	}
}
