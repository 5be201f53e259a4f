package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/valyala/fastjson"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// formatError is input that is not the format it claims to be: the whole request is refused.
type formatError struct {
	line int
	msg  string
}

func (e *formatError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// encoded is converted input: rows for the Data Source and for its quarantine, as
// JSONCompactEachRow lines (positional: ClickHouse parses them about twice as fast as
// JSONEachRow, measured on chDB 26.7) in the order of the schema's columns.
type encoded struct {
	rows, quarantined uint64
	data, quarantine  []byte
}

func (e *encoded) reset() {
	e.rows, e.quarantined = 0, 0
	e.data, e.quarantine = e.data[:0], e.quarantine[:0]
}

// encoder converts input records of one Data Source.
type encoder struct {
	sc       *schema
	importID string
	arena    fastjson.Arena
	parser   fastjson.Parser
	errCols  []string
	errMsgs  []string
	raw      []*string
}

// encoders are reused: a parser and an arena keep their memory between requests.
var encoders = sync.Pool{New: func() any { return &encoder{} }}

func newEncoder(sc *schema, importID string) *encoder {
	e := encoders.Get().(*encoder)
	e.sc, e.importID = sc, importID
	if cap(e.raw) < len(sc.columns) {
		e.raw = make([]*string, len(sc.columns))
	}
	e.raw = e.raw[:len(sc.columns)]
	return e
}

// release returns the encoder to the pool; it must not be used afterwards.
func (e *encoder) release() {
	e.sc = nil
	clear(e.raw)
	encoders.Put(e)
}

// readers are the buffered readers of request bodies, reused.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// jsonLine converts one NDJSON line.
func (e *encoder) jsonLine(out *encoded, line []byte, lineNo int) error {
	v, err := e.parser.ParseBytes(line)
	if err != nil {
		return &formatError{line: lineNo, msg: "invalid JSON: " + err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return &formatError{line: lineNo, msg: "expected a JSON object, got " + v.Type().String()}
	}
	e.arena.Reset()
	e.errCols, e.errMsgs = e.errCols[:0], e.errMsgs[:0]
	start := len(out.data)
	out.data = append(out.data, '[')
	for i := range e.sc.columns {
		c := &e.sc.columns[i]
		if i > 0 {
			out.data = append(out.data, ',')
		}
		val := c.path.eval(v, &e.arena)
		if val == nil || val.Type() == fastjson.TypeNull {
			e.missing(out, c)
			continue
		}
		mark := len(out.data)
		var verr *valueError
		if out.data, verr = appendJSON(out.data, val, c.typ, c.name); verr != nil {
			out.data = out.data[:mark]
			e.fail(verr)
		}
	}
	if len(e.errMsgs) > 0 {
		out.data = out.data[:start]
		for i := range e.sc.columns {
			val := e.sc.columns[i].path.eval(v, &e.arena)
			e.raw[i] = nil
			if val != nil && val.Type() != fastjson.TypeNull {
				s := rawText(val)
				e.raw[i] = &s
			}
		}
		e.quarantineRow(out)
		return nil
	}
	out.data = append(out.data, ']', '\n')
	out.rows++
	return nil
}

// missing writes a column without a value: NULL for a Nullable column, null for a column
// with a DEFAULT (the insert runs with input_format_null_as_default, so ClickHouse computes the
// DEFAULT), an empty array for an Array column; other columns quarantine the row.
func (e *encoder) missing(out *encoded, c *column) {
	switch {
	case c.typ.nullable, c.hasDefault:
		out.data = append(out.data, "null"...)
	case c.typ.kind == kindArray:
		out.data = append(out.data, "[]"...)
	default:
		e.fail(&valueError{column: c.name, msg: fmt.Sprintf("missing value on column '%s' (it is not Nullable and has no DEFAULT)", c.name)})
	}
}

func (e *encoder) fail(err *valueError) {
	e.errCols = append(e.errCols, err.column)
	e.errMsgs = append(e.errMsgs, err.msg)
}

// quarantineRow writes the current row's raw values (e.raw) with its errors, in the order of
// quarantineColumns.
func (e *encoder) quarantineRow(out *encoded) {
	q := out.quarantine
	q = append(q, '[')
	for i := range e.sc.columns {
		if e.raw[i] == nil {
			q = append(q, "null"...)
		} else {
			q = appendJSONString(q, *e.raw[i])
		}
		q = append(q, ',')
	}
	q = append(q, '[')
	for i, c := range e.errCols {
		if i > 0 {
			q = append(q, ',')
		}
		q = appendJSONString(q, c)
	}
	q = append(q, "],["...)
	for i, m := range e.errMsgs {
		if i > 0 {
			q = append(q, ',')
		}
		q = appendJSONString(q, m)
	}
	q = append(q, "],"...)
	q = appendJSONString(q, e.importID)
	q = append(q, ']', '\n')
	out.quarantine = q
	out.quarantined++
}

// rawText is a JSON value as quarantine keeps it: strings as they are, the rest as JSON.
func rawText(v *fastjson.Value) string {
	if v.Type() == fastjson.TypeString {
		return string(v.GetStringBytes())
	}
	return v.String()
}

// csvRecord converts one CSV record; fields[i] goes to column cols[i] (-1: no column).
func (e *encoder) csvRecord(out *encoded, fields []string, cols []int) {
	e.errCols, e.errMsgs = e.errCols[:0], e.errMsgs[:0]
	for i := range e.raw {
		e.raw[i] = nil
	}
	for i, ci := range cols {
		if ci >= 0 && i < len(fields) {
			f := fields[i]
			e.raw[ci] = &f
		}
	}
	start := len(out.data)
	out.data = append(out.data, '[')
	for i := range e.sc.columns {
		c := &e.sc.columns[i]
		if i > 0 {
			out.data = append(out.data, ',')
		}
		raw := e.raw[i]
		switch {
		case raw == nil:
			e.missing(out, c)
			continue
		case *raw == "" && (c.typ.nullable || c.hasDefault && c.typ.kind != kindString || c.typ.kind == kindArray):
			// An empty field is NULL, or the DEFAULT, as in ClickHouse's own CSV input.
			e.missing(out, c)
			continue
		case *raw == "" && c.typ.kind != kindString:
			e.fail(notType("", c.name, c.typ))
			continue
		}
		mark := len(out.data)
		var verr *valueError
		if out.data, verr = appendText(out.data, *raw, c.typ, c.name, true); verr != nil {
			out.data = out.data[:mark]
			e.fail(verr)
		}
	}
	if len(e.errMsgs) > 0 {
		out.data = out.data[:start]
		e.quarantineRow(out)
		return
	}
	out.data = append(out.data, ']', '\n')
	out.rows++
}

// maxLine bounds one NDJSON line or CSV record.
const maxLine = 16 << 20

// convertInput reads a whole input and converts it, calling flush whenever the encoded output
// passes partBytes (and once at the end). A format error stops it: the caller must then
// discard everything flushed so far.
func convertInput(r io.Reader, format ingestv1.Format, header ingestv1.CSVHeader, enc *encoder, partBytes int, flush func(*encoded) error) error {
	out := &encoded{}
	emit := func(force bool) error {
		if (force && (out.rows > 0 || out.quarantined > 0)) || len(out.data)+len(out.quarantine) >= partBytes {
			if err := flush(out); err != nil {
				return err
			}
			out.reset()
		}
		return nil
	}
	switch format {
	case ingestv1.Format_FORMAT_CSV:
		if err := convertCSV(r, header, enc, out, emit); err != nil {
			return err
		}
	case ingestv1.Format_FORMAT_PARQUET:
		if err := convertParquet(r, enc, out, emit); err != nil {
			return err
		}
	default:
		br, ok := r.(*bufio.Reader)
		if !ok {
			br = getReader(r)
			defer putReader(br)
		}
		lineNo := 0
		for {
			line, err := readLine(br)
			if len(line) > 0 || err == nil {
				lineNo++
			}
			if t := bytes.TrimSpace(line); len(t) > 0 {
				if cerr := enc.jsonLine(out, t, lineNo); cerr != nil {
					return cerr
				}
				if ferr := emit(false); ferr != nil {
					return ferr
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if errors.Is(err, errLineTooLong) {
					return &formatError{line: lineNo, msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
				}
				return err
			}
		}
	}
	return emit(true)
}

var errLineTooLong = errors.New("line too long")

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	buf := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > maxLine {
			return nil, errLineTooLong
		}
	}
	return buf, err
}

func convertCSV(r io.Reader, header ingestv1.CSVHeader, enc *encoder, out *encoded, emit func(bool) error) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = getReader(r)
		defer putReader(br)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.LazyQuotes = false
	var cols []int
	first := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return &formatError{line: pe.Line, msg: "invalid CSV: " + pe.Err.Error()}
			}
			return err
		}
		if first {
			first = false
			if isHeader(rec, enc.sc, header) {
				cols = make([]int, len(rec))
				for i, f := range rec {
					name := strings.TrimSpace(f)
					if ci, ok := enc.sc.byName[name]; ok {
						cols[i] = ci
					} else {
						return &formatError{line: line, msg: fmt.Sprintf("header field %q is not a column of %s", name, enc.sc.datasource)}
					}
				}
				continue
			}
			cols = make([]int, len(enc.sc.columns))
			for i := range cols {
				cols[i] = i
			}
		}
		if len(rec) != len(cols) {
			return &formatError{line: line, msg: fmt.Sprintf("%d fields, expected %d", len(rec), len(cols))}
		}
		enc.csvRecord(out, rec, cols)
		if err := emit(false); err != nil {
			return err
		}
	}
}

// isHeader decides whether a CSV file's first record is a header.
func isHeader(rec []string, sc *schema, h ingestv1.CSVHeader) bool {
	switch h {
	case ingestv1.CSVHeader_CSV_HEADER_PRESENT:
		return true
	case ingestv1.CSVHeader_CSV_HEADER_ABSENT:
		return false
	}
	for _, f := range rec {
		if _, ok := sc.byName[strings.TrimSpace(f)]; !ok {
			return false
		}
	}
	return len(rec) > 0
}

// decompress wraps r when the data is gzip-compressed (by its magic number).
func decompress(r *bufio.Reader) (io.Reader, error) {
	magic, err := r.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, &formatError{line: 0, msg: "invalid gzip data: " + err.Error()}
		}
		return zr, nil
	}
	return r, nil
}
