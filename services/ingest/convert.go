package ingest

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Values are converted in Sluice, before a request is answered, so that the answer can count
// the quarantined rows and so that what reaches ClickHouse always parses: every value is
// re-encoded as canonical JSON for `INSERT ... FORMAT JSONEachRow` (numbers checked against
// their type's range, dates as ISO 8601 in UTC, decimals and big integers as strings, strings
// escaped). The rules follow the hosted platform:
//   - a JSON string goes into a String column as it is; a number, bool, object or array as its
//     JSON text;
//   - numbers may come as JSON numbers or as strings holding one; an integer column refuses a
//     fraction and anything out of its range; bools convert to 1 and 0;
//   - dates and times are 'YYYY-MM-DD', 'YYYY-MM-DD hh:mm:ss[.fff]', ISO 8601 with a zone
//     ('2024-01-02T03:04:05Z', '+01:00'), or Unix seconds as a number; times without a zone are
//     UTC;
//   - arrays come from JSON arrays, maps from objects, tuples from arrays;
//   - a missing value or null is NULL in a Nullable column, the column's DEFAULT when it has
//     one, an empty array in an Array column, and otherwise quarantines the row.

// appendJSON converts a JSON input value to type t, appending the output to buf.
func appendJSON(buf []byte, v *fastjson.Value, t *chType, col string) ([]byte, *valueError) {
	if v == nil || v.Type() == fastjson.TypeNull {
		if t.nullable {
			return append(buf, "null"...), nil
		}
		return buf, &valueError{column: col, msg: "value null on column '" + col + "' is not " + t.name() + " (the column is not Nullable)"}
	}
	switch v.Type() {
	case fastjson.TypeString:
		return appendText(buf, string(v.GetStringBytes()), t, col, true)
	case fastjson.TypeNumber:
		raw := v.String()
		switch t.kind {
		case kindString:
			return appendString(buf, raw, t, col)
		default:
			return appendText(buf, raw, t, col, false)
		}
	case fastjson.TypeTrue, fastjson.TypeFalse:
		b := v.Type() == fastjson.TypeTrue
		switch t.kind {
		case kindBool:
			return strconv.AppendBool(buf, b), nil
		case kindInt, kindUint, kindFloat, kindDecimal:
			if b {
				return append(buf, '1'), nil
			}
			return append(buf, '0'), nil
		case kindString:
			return appendString(buf, strconv.FormatBool(b), t, col)
		}
		return buf, notType(strconv.FormatBool(b), col, t)
	case fastjson.TypeArray:
		items, _ := v.Array()
		switch t.kind {
		case kindArray:
			buf = append(buf, '[')
			for i, it := range items {
				if i > 0 {
					buf = append(buf, ',')
				}
				var err *valueError
				if buf, err = appendJSON(buf, it, t.elem[0], col); err != nil {
					return buf, err
				}
			}
			return append(buf, ']'), nil
		case kindTuple:
			if len(items) != len(t.elem) {
				return buf, notType(v.String(), col, t)
			}
			buf = append(buf, '[')
			for i, it := range items {
				if i > 0 {
					buf = append(buf, ',')
				}
				var err *valueError
				if buf, err = appendJSON(buf, it, t.elem[i], col); err != nil {
					return buf, err
				}
			}
			return append(buf, ']'), nil
		case kindString:
			return appendString(buf, v.String(), t, col)
		}
		return buf, notType(v.String(), col, t)
	case fastjson.TypeObject:
		switch t.kind {
		case kindMap:
			obj, _ := v.Object()
			buf = append(buf, '{')
			n := 0
			var err *valueError
			obj.Visit(func(key []byte, val *fastjson.Value) {
				if err != nil {
					return
				}
				if n > 0 {
					buf = append(buf, ',')
				}
				n++
				buf = appendJSONString(buf, string(key))
				buf = append(buf, ':')
				buf, err = appendJSON(buf, val, t.elem[1], col)
			})
			if err != nil {
				return buf, err
			}
			return append(buf, '}'), nil
		case kindString:
			return appendString(buf, v.String(), t, col)
		}
		return buf, notType(v.String(), col, t)
	}
	return buf, notType(v.String(), col, t)
}

// appendText converts a text input value (a JSON string, a number's text, a CSV field) to t.
// quoted tells a JSON string from a number's text.
func appendText(buf []byte, s string, t *chType, col string, quoted bool) ([]byte, *valueError) {
	switch t.kind {
	case kindString:
		return appendString(buf, s, t, col)
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			if f, ok := integralFloat(s); ok && f >= math.MinInt64 && f <= math.MaxInt64 {
				n, err = int64(f), nil
			}
		}
		if err != nil || t.bits < 64 && (n < -(1<<(t.bits-1)) || n > 1<<(t.bits-1)-1) {
			return buf, notType(s, col, t)
		}
		return strconv.AppendInt(buf, n, 10), nil
	case kindUint:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			if f, ok := integralFloat(s); ok && f >= 0 && f <= math.MaxUint64 {
				n, err = uint64(f), nil
			}
		}
		if err != nil || t.bits < 64 && n > 1<<t.bits-1 {
			return buf, notType(s, col, t)
		}
		return strconv.AppendUint(buf, n, 10), nil
	case kindFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return buf, notType(s, col, t)
		}
		return strconv.AppendFloat(buf, f, 'g', -1, 64), nil
	case kindDecimal:
		d := strings.TrimSpace(s)
		if !isDecimal(d) {
			return buf, notType(s, col, t)
		}
		return appendJSONString(buf, d), nil
	case kindBool:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "1":
			return append(buf, "true"...), nil
		case "false", "0":
			return append(buf, "false"...), nil
		}
		return buf, notType(s, col, t)
	case kindDate:
		tm, ok := parseTime(s, quoted)
		if !ok {
			return buf, notType(s, col, t)
		}
		return appendJSONString(buf, tm.Format("2006-01-02")), nil
	case kindDateTime, kindDateTime64:
		tm, ok := parseTime(s, quoted)
		if !ok {
			return buf, notType(s, col, t)
		}
		if t.kind == kindDateTime {
			return strconv.AppendInt(buf, tm.Unix(), 10), nil
		}
		return appendJSONString(buf, tm.UTC().Format("2006-01-02T15:04:05.999999999Z")), nil
	case kindUUID:
		if !isUUID(strings.TrimSpace(s)) {
			return buf, notType(s, col, t)
		}
		return appendJSONString(buf, strings.TrimSpace(s)), nil
	case kindArray, kindMap, kindTuple:
		// Text holding JSON (a CSV field, or a JSON string) is read as JSON.
		var p fastjson.Parser
		v, err := p.Parse(s)
		if err != nil || v.Type() == fastjson.TypeString {
			return buf, notType(s, col, t)
		}
		return appendJSON(buf, v, t, col)
	}
	return buf, notType(s, col, t)
}

func appendString(buf []byte, s string, t *chType, col string) ([]byte, *valueError) {
	if t.fixed > 0 && len(s) > t.fixed {
		return buf, notType(s, col, t)
	}
	if len(t.enum) > 0 {
		ok := false
		for _, e := range t.enum {
			if e == s {
				ok = true
				break
			}
		}
		if !ok {
			return buf, notType(s, col, t)
		}
	}
	return appendJSONString(buf, s), nil
}

func integralFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f != math.Trunc(f) {
		return 0, false
	}
	return f, true
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	if _, ok := new(big.Float).SetString(s); !ok {
		return false
	}
	return !strings.ContainsAny(s, "eEpPxXnNiI_")
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

var timeLayouts = []string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02T15:04:05-0700",
	"2006-01-02",
}

// parseTime reads a date or time; numbers (not quoted) are Unix seconds.
func parseTime(s string, quoted bool) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if !quoted || (s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:")) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1e11 {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
	}
	for _, l := range timeLayouts {
		if tm, err := time.Parse(l, s); err == nil {
			if tm.Year() < 1900 || tm.Year() > 2299 {
				return time.Time{}, false
			}
			return tm.UTC(), true
		}
	}
	return time.Time{}, false
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
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
				buf = append(buf, `\u00`...)
				buf = append(buf, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
