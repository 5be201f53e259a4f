package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// insertNative writes a table's JSONCompactEachRow rows through the native protocol, which
// takes typed values: rows are decoded with the table's column types and sent in one batch per
// set of columns that have a value (a null in a column that is not Nullable is its DEFAULT,
// which the server fills in when the column is left out of the insert).
//
// Each batch has a query id derived from the token. Without insert_deduplication_token
// (lookup), a batch whose query id finished in system.query_log is not sent again: the server
// logs a query after it committed, so an insert a dead writer left running or finished is not
// written twice (the server's query log is kept by the server, so this holds when Sluice
// processes die, not when the server itself loses its last log entries in a crash).
func (s *Service) insertNative(ctx context.Context, t *target, token string, settings warehouse.Settings, noTokens, again bool) error {
	lookup := noTokens && again
	types, err := s.tableTypes(ctx, t.table)
	if err != nil {
		return err
	}
	colTypes := make([]*chType, len(t.columns))
	for i, c := range t.columns {
		typ, ok := types[c]
		if !ok {
			return &warehouse.Error{Message: fmt.Sprintf("insert into %s: no column %q", t.table, c), Class: warehouse.ClassPermanent}
		}
		colTypes[i] = typ
	}
	type group struct {
		cols []string
		idx  []int
		rows [][]any
	}
	groups := map[string]*group{}
	var order []string
	var p fastjson.Parser
	for _, line := range strings.Split(strings.TrimRight(string(t.data), "\n"), "\n") {
		if line == "" {
			continue
		}
		v, err := p.Parse(line)
		if err != nil {
			return &warehouse.Error{Message: "decode ingest row: " + err.Error(), Class: warehouse.ClassPermanent}
		}
		vals, err := v.Array()
		if err != nil || len(vals) != len(t.columns) {
			return &warehouse.Error{Message: fmt.Sprintf("decode ingest row: %d values for %d columns", len(vals), len(t.columns)), Class: warehouse.ClassPermanent}
		}
		var key strings.Builder
		for i, val := range vals {
			if val.Type() == fastjson.TypeNull && !colTypes[i].nullable {
				key.WriteByte('0')
			} else {
				key.WriteByte('1')
			}
		}
		g := groups[key.String()]
		if g == nil {
			g = &group{}
			for i, c := range key.String() {
				if c == '1' {
					g.cols = append(g.cols, t.columns[i])
					g.idx = append(g.idx, i)
				}
			}
			groups[key.String()] = g
			order = append(order, key.String())
		}
		row := make([]any, len(g.idx))
		for j, i := range g.idx {
			if row[j], err = nativeValue(vals[i], colTypes[i]); err != nil {
				return &warehouse.Error{Message: fmt.Sprintf("insert into %s: column %s: %v", t.table, t.columns[i], err), Class: warehouse.ClassPermanent}
			}
		}
		g.rows = append(g.rows, row)
	}
	if noTokens {
		settings["log_queries"] = 1
	}
	for i, key := range order {
		g := groups[key]
		queryID := queryIDOf(token, i)
		if lookup {
			done, err := s.finished(ctx, queryID, len(g.rows))
			if err != nil {
				return &preInsertError{"look up an earlier insert", err}
			}
			if done {
				s.log.Info("ingest insert already committed by an earlier writer; not sent again", "table", t.table, "query_id", queryID)
				continue
			}
		}
		if _, err := s.deps.Warehouse.InsertRows(ctx, t.table, g.cols, g.rows, warehouse.WithQueryID(queryID), warehouse.WithSettings(settings)); err != nil {
			return err
		}
	}
	return nil
}

// queryIDOf is the query id of one insert of a batch: a UUID-shaped hash of the token.
func queryIDOf(token string, i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", token, i)))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// finished waits until no query with the id runs on the server, then reports whether one
// finished having written the rows (system.query_log, flushed first). The row count matters: a
// client that dies after sending an INSERT but before its data leaves a query the server logs
// as finished, with nothing written (measured on 18.16).
func (s *Service) finished(ctx context.Context, queryID string, rows int) (bool, error) {
	q := warehouse.QuoteString(queryID)
	for {
		res, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM system.processes WHERE query_id = "+q)
		if err != nil {
			return false, err
		}
		if len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) == "0" {
			break
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return false, ctx.Err()
		}
	}
	if _, err := s.deps.Warehouse.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return false, fmt.Errorf("flush the server's query log: %w", err)
	}
	// type is an Enum on current servers and a UInt8 (2 = QueryFinish) on 18.16.
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf("SELECT count() FROM system.query_log WHERE query_id = %s AND toString(type) IN ('QueryFinish', '2') AND written_rows >= %d", q, rows))
	if err != nil {
		return false, fmt.Errorf("read the server's query log: %w", err)
	}
	return len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) != "0", nil
}

func (s *Service) tableTypes(ctx context.Context, table string) (map[string]*chType, error) {
	res, err := s.deps.Warehouse.Query(ctx, "DESCRIBE TABLE "+table)
	if err != nil {
		return nil, err
	}
	out := map[string]*chType{}
	for _, r := range res.Rows {
		out[fmt.Sprint(r[0])] = parseType(fmt.Sprint(r[1]))
	}
	return out, nil
}

// nativeValue turns one canonical JSON value (as the encoder writes it) into the Go value the
// native driver takes for the type.
func nativeValue(v *fastjson.Value, t *chType) (any, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	switch t.kind {
	case kindInt:
		return v.Int64()
	case kindUint:
		return v.Uint64()
	case kindFloat:
		return v.Float64()
	case kindBool:
		return v.Bool()
	case kindDate:
		return time.Parse("2006-01-02", string(v.GetStringBytes()))
	case kindDateTime:
		if v.Type() == fastjson.TypeNumber {
			n, err := v.Int64()
			return time.Unix(n, 0).UTC(), err
		}
		return time.Parse(time.RFC3339Nano, string(v.GetStringBytes()))
	case kindDateTime64:
		return time.Parse(time.RFC3339Nano, string(v.GetStringBytes()))
	case kindArray, kindTuple:
		items, err := v.Array()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(items))
		for i, it := range items {
			et := t.elem[0]
			if t.kind == kindTuple {
				et = t.elem[i]
			}
			if out[i], err = nativeValue(it, et); err != nil {
				return nil, err
			}
		}
		return out, nil
	case kindMap:
		obj, err := v.Object()
		if err != nil {
			return nil, err
		}
		out := map[string]any{}
		obj.Visit(func(k []byte, val *fastjson.Value) {
			if err == nil {
				out[string(k)], err = nativeValue(val, t.elem[1])
			}
		})
		return out, err
	}
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes()), nil
	case fastjson.TypeNumber:
		return strconv.FormatFloat(v.GetFloat64(), 'g', -1, 64), nil
	}
	return v.String(), nil
}

// preInsertError is a failure before the rows were sent (finding out whether an earlier insert
// committed, preparing the tables' deduplication): always retried, never a reason to drop rows,
// whatever its class (a permission the user lacks is fixed by an operator, not by dropping).
type preInsertError struct {
	what string
	err  error
}

func (e *preInsertError) Error() string { return e.what + ": " + e.err.Error() }
func (e *preInsertError) Unwrap() error { return e.err }
