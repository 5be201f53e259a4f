package warehouse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// The embedded engine exchanges rows as JSON: results in JSONCompact (types
// in "meta"), inserted rows in JSONCompactEachRow. embeddedSession sets the
// format settings this code relies on: 64-bit integers and decimals quoted,
// nan/inf quoted, DateTime in ISO 8601 UTC, tuples as arrays.

// jsonCompact is the part of a JSONCompact document that is read;
// statistics come from chDB's result instead.
type jsonCompact struct {
	Meta []Column `json:"meta"`
	Data [][]any  `json:"data"`
}

func decodeJSONCompact(data []byte) (*Result, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &Result{Columns: []Column{}, Rows: [][]any{}}, nil // a statement without a result
	}
	var doc jsonCompact
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode JSONCompact result: %w", err)
	}
	types := make([]chType, len(doc.Meta))
	for i, c := range doc.Meta {
		types[i] = parseType(c.Type)
	}
	res := &Result{Columns: doc.Meta, Rows: doc.Data}
	if res.Columns == nil {
		res.Columns = []Column{}
	}
	if res.Rows == nil {
		res.Rows = [][]any{}
	}
	for _, row := range doc.Data {
		if len(row) != len(types) {
			return nil, fmt.Errorf("decode JSONCompact result: row has %d values, meta %d columns", len(row), len(types))
		}
		for i := range row {
			v, err := fromJSON(row[i], types[i])
			if err != nil {
				return nil, fmt.Errorf("decode column %s (%s): %w", doc.Meta[i].Name, doc.Meta[i].Type, err)
			}
			row[i] = v
		}
	}
	return res, nil
}

// fromJSON converts one JSON value (decoded with UseNumber) of type t to
// the Go representation documented on Result.
func fromJSON(v any, t chType) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch t.kind() {
	case kindInt:
		return strconv.ParseInt(jsonText(v), 10, 64)
	case kindUint:
		return strconv.ParseUint(jsonText(v), 10, 64)
	case kindBigInt:
		return jsonText(v), nil
	case kindFloat:
		return parseFloat(jsonText(v))
	case kindBool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("want bool, got %T", v)
		}
		return b, nil
	case kindString:
		return jsonText(v), nil
	case kindDate:
		return time.ParseInLocation(time.DateOnly, jsonText(v), time.UTC)
	case kindDateTime:
		tm, err := time.Parse(time.RFC3339Nano, jsonText(v))
		return tm.UTC(), err
	case kindArray:
		return jsonList(v, func(int) chType { return parseType(t.args[0]) })
	case kindTuple:
		return jsonList(v, func(i int) chType {
			if i < len(t.args) {
				return parseType(tupleElemType(t.args[i]))
			}
			return chType{}
		})
	case kindMap:
		m, ok := v.(map[string]any)
		if !ok || len(t.args) != 2 {
			return nil, fmt.Errorf("want object, got %T", v)
		}
		vt := parseType(t.args[1])
		out := make(map[string]any, len(m))
		for k, e := range m {
			x, err := fromJSON(e, vt)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	if n, ok := v.(json.Number); ok {
		return n.String(), nil
	}
	return v, nil
}

func jsonList(v any, elem func(int) chType) ([]any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want array, got %T", v)
	}
	out := make([]any, len(list))
	for i, e := range list {
		x, err := fromJSON(e, elem(i))
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

func jsonText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "nan", "-nan":
		return math.NaN(), nil
	case "inf", "+inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// appendJSONValue appends v, destined for a column of type t, to buf as
// JSON that ClickHouse's JSON input formats parse into that column.
func appendJSONValue(buf []byte, v any, t chType) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case string:
		return appendJSONString(buf, x), nil
	case int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case int32:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(buf, x, 10), nil
	case uint32:
		return strconv.AppendUint(buf, uint64(x), 10), nil
	case float64:
		return appendJSONFloat(buf, x, 64), nil
	case float32:
		return appendJSONFloat(buf, float64(x), 32), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case []byte:
		return appendJSONString(buf, string(x)), nil
	case time.Time:
		return appendJSONTime(buf, x, t), nil
	case fmt.Stringer:
		return appendJSONString(buf, x.String()), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(buf, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(buf, rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return appendJSONFloat(buf, rv.Float(), rv.Type().Bits()), nil
	case reflect.String:
		return appendJSONString(buf, rv.String()), nil
	case reflect.Bool:
		return strconv.AppendBool(buf, rv.Bool()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(buf, "null"...), nil
		}
		return appendJSONValue(buf, rv.Elem().Interface(), t)
	case reflect.Slice, reflect.Array:
		buf = append(buf, '[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				buf = append(buf, ',')
			}
			et := chType{}
			switch {
			case t.kind() == kindArray:
				et = parseType(t.args[0])
			case t.kind() == kindTuple && i < len(t.args):
				et = parseType(tupleElemType(t.args[i]))
			}
			var err error
			if buf, err = appendJSONValue(buf, rv.Index(i).Interface(), et); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case reflect.Map:
		var vt chType
		if t.kind() == kindMap && len(t.args) == 2 {
			vt = parseType(t.args[1])
		}
		buf = append(buf, '{')
		for i, it := 0, rv.MapRange(); it.Next(); i++ {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, fmt.Sprint(it.Key().Interface()))
			buf = append(buf, ':')
			var err error
			if buf, err = appendJSONValue(buf, it.Value().Interface(), vt); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	}
	return nil, fmt.Errorf("cannot insert a %T", v)
}

// appendJSONTime writes a time for a Date (its UTC day), a DateTime (Unix
// seconds, the cheapest form to parse) or anything else (RFC 3339 in UTC,
// read by date_time_input_format = 'best_effort').
func appendJSONTime(buf []byte, x time.Time, t chType) []byte {
	x = x.UTC()
	switch t.base {
	case "Date", "Date32":
		buf = append(buf, '"')
		buf = x.AppendFormat(buf, time.DateOnly)
		return append(buf, '"')
	case "DateTime":
		return strconv.AppendInt(buf, x.Unix(), 10)
	}
	buf = append(buf, '"')
	buf = x.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"')
}

// appendJSONFloat writes nan and inf bare: ClickHouse reads them in JSON
// input although JSON has no spelling for them.
func appendJSONFloat(buf []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(buf, "nan"...)
	case math.IsInf(f, 1):
		return append(buf, "inf"...)
	case math.IsInf(f, -1):
		return append(buf, "-inf"...)
	}
	return strconv.AppendFloat(buf, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendJSONString escapes s for JSON. Bytes that are not valid UTF-8 pass
// through unchanged, as ClickHouse strings are arbitrary bytes.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
