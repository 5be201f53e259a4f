package warehouse

import (
	"fmt"
	"strings"
)

// chType is a parsed ClickHouse type name: its base name and arguments,
// with Nullable and LowCardinality unwrapped (they do not change how a
// value is represented in Go, except that NULL becomes nil).
type chType struct {
	base string   // "Int32", "Array", "DateTime64", ...
	args []string // raw arguments: "Int32" for Array(Int32), "3, 'UTC'" split at top-level commas
}

func parseType(t string) chType {
	t = strings.TrimSpace(t)
	for {
		switch {
		case strings.HasPrefix(t, "Nullable(") && strings.HasSuffix(t, ")"):
			t = t[len("Nullable(") : len(t)-1]
			continue
		case strings.HasPrefix(t, "LowCardinality(") && strings.HasSuffix(t, ")"):
			t = t[len("LowCardinality(") : len(t)-1]
			continue
		}
		break
	}
	open := strings.IndexByte(t, '(')
	if open < 0 || !strings.HasSuffix(t, ")") {
		return chType{base: t}
	}
	return chType{base: t[:open], args: splitTopLevel(t[open+1 : len(t)-1])}
}

// splitTopLevel splits s at commas outside parentheses and quotes.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// tupleElemType returns the type of a tuple element, which may be named
// ("a UInt8") or not ("UInt8").
func tupleElemType(arg string) string {
	sp := strings.IndexByte(arg, ' ')
	paren := strings.IndexByte(arg, '(')
	if sp > 0 && (paren < 0 || sp < paren) {
		return strings.TrimSpace(arg[sp+1:])
	}
	return arg
}

type typeKind int

const (
	kindOther typeKind = iota
	kindInt
	kindUint
	kindBigInt // Int128, Int256, UInt128, UInt256, Decimal: exact decimal strings
	kindFloat
	kindBool
	kindString
	kindDate
	kindDateTime
	kindArray
	kindTuple
	kindMap
)

func (t chType) kind() typeKind {
	switch t.base {
	case "Int8", "Int16", "Int32", "Int64":
		return kindInt
	case "UInt8", "UInt16", "UInt32", "UInt64":
		return kindUint
	case "Int128", "Int256", "UInt128", "UInt256",
		"Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256":
		return kindBigInt
	case "Float32", "Float64", "BFloat16":
		return kindFloat
	case "Bool":
		return kindBool
	case "String", "FixedString", "UUID", "Enum8", "Enum16", "IPv4", "IPv6":
		return kindString
	case "Date", "Date32":
		return kindDate
	case "DateTime", "DateTime64":
		return kindDateTime
	case "Array":
		return kindArray
	case "Tuple":
		return kindTuple
	case "Map":
		return kindMap
	}
	return kindOther
}

// SplitType returns a ClickHouse type's base name and its top-level arguments, with Nullable
// and LowCardinality unwrapped: "Decimal(10, 2)" is ("Decimal", ["10", "2"]).
func SplitType(t string) (string, []string) {
	ct := parseType(t)
	return ct.base, ct.args
}

// SplitTypeArgs splits a type's argument list ("10, 2" of Decimal(10, 2)) at the commas
// outside parentheses and quotes.
func SplitTypeArgs(args string) []string { return splitTopLevel(args) }

// TupleElementType is the type of a Tuple argument, which may be named ("a UInt8").
func TupleElementType(arg string) string { return tupleElemType(arg) }

// Uint64 is a value of a result row as an unsigned count: an integer of either engine, a
// float, or the string a JSON format gives 64-bit integers as; 0 for anything else and for
// negative values.
func Uint64(v any) uint64 {
	if n := Int64(v); n > 0 {
		return uint64(n)
	}
	if x, ok := v.(uint64); ok {
		return x
	}
	if x, ok := v.(string); ok {
		var n uint64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}

// Int64 is a value of a result row as a signed integer (see Uint64).
func Int64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	case float64:
		return int64(x)
	case string:
		var n int64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}
