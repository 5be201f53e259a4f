package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// convertParquet reads a Parquet file (pure Go: parquet-go; the engine's own Parquet input does
// not exist on every server, 18.16 has none) and converts each row as the JSON object it holds,
// so that JSON paths and conversions are the same as for NDJSON: columns by name, nested groups
// as objects, lists as arrays. Timestamps and dates become ISO 8601 text. Errors name the row.
func convertParquet(r io.Reader, enc *encoder, out *encoded, emit func(bool) error) error {
	// Parquet is read from its footer: the input is spooled to a temporary file first.
	f, err := os.CreateTemp("", "sluice-parquet-*")
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_ = os.Remove(f.Name())
	size, err := io.Copy(f, r)
	if err != nil {
		return err
	}
	pf, err := parquet.OpenFile(f, size)
	if err != nil {
		return &formatError{line: 0, msg: "not a Parquet file: " + err.Error()}
	}
	schema := pf.Schema()
	conv := map[string]func(any) any{}
	for _, field := range schema.Fields() {
		if !field.Leaf() {
			continue
		}
		lt := field.Type().LogicalType()
		if lt == nil {
			continue
		}
		switch typ := lt.Value.(type) {
		case *format.TimestampType:
			unit := time.Millisecond
			switch typ.Unit.Value.(type) {
			case *format.MicroSeconds:
				unit = time.Microsecond
			case *format.NanoSeconds:
				unit = time.Nanosecond
			}
			conv[field.Name()] = func(v any) any {
				n, ok := v.(int64)
				if !ok {
					return v
				}
				return time.Unix(0, n*int64(unit)).UTC().Format("2006-01-02T15:04:05.999999999Z")
			}
		case *format.DateType:
			conv[field.Name()] = func(v any) any {
				n, ok := v.(int32)
				if !ok {
					return v
				}
				return time.Unix(int64(n)*86400, 0).UTC().Format("2006-01-02")
			}
		}
	}
	reader := parquet.NewReader(pf)
	defer func() { _ = reader.Close() }()
	rows := make([]parquet.Row, 256)
	rowNo := 0
	for {
		n, rerr := reader.ReadRows(rows)
		for _, row := range rows[:n] {
			rowNo++
			var v any
			if err := schema.Reconstruct(&v, row); err != nil {
				return &formatError{line: rowNo, msg: "Parquet row: " + err.Error()}
			}
			if m, ok := v.(map[string]any); ok {
				for name, c := range conv {
					if x, present := m[name]; present && x != nil {
						m[name] = c(x)
					}
				}
			}
			line, err := json.Marshal(v)
			if err != nil {
				return &formatError{line: rowNo, msg: "Parquet row: " + err.Error()}
			}
			if err := enc.jsonLine(out, line, rowNo); err != nil {
				return err
			}
			if err := emit(false); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return &formatError{line: rowNo + 1, msg: fmt.Sprintf("Parquet row: %v", rerr)}
		}
	}
}
