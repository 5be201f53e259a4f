package ingest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// insertNative writes a table's JSONEachRow rows through the native protocol, which takes
// typed values: rows are decoded with the table's column types and sent in one batch per set
// of present columns (a column left out takes its DEFAULT).
func (s *Service) insertNative(ctx context.Context, t *target) error {
	types, err := s.tableTypes(ctx, t.table)
	if err != nil {
		return err
	}
	type group struct {
		cols []string
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
		obj, _ := v.Object()
		var cols []string
		obj.Visit(func(k []byte, _ *fastjson.Value) { cols = append(cols, string(k)) })
		sort.Strings(cols)
		key := strings.Join(cols, "\x00")
		g := groups[key]
		if g == nil {
			g = &group{cols: cols}
			groups[key] = g
			order = append(order, key)
		}
		row := make([]any, len(cols))
		for i, c := range cols {
			typ, ok := types[c]
			if !ok {
				return &warehouse.Error{Message: fmt.Sprintf("insert into %s: no column %q", t.table, c), Class: warehouse.ClassPermanent}
			}
			if row[i], err = nativeValue(obj.Get(c), typ); err != nil {
				return &warehouse.Error{Message: fmt.Sprintf("insert into %s: column %s: %v", t.table, c, err), Class: warehouse.ClassPermanent}
			}
		}
		g.rows = append(g.rows, row)
	}
	for _, key := range order {
		g := groups[key]
		if _, err := s.deps.Warehouse.InsertRows(ctx, t.table, g.cols, g.rows); err != nil {
			return err
		}
	}
	return nil
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
