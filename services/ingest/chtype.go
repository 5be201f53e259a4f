package ingest

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// kind is the family of a ClickHouse type, as far as converting input values goes.
type kind int

const (
	kindString kind = iota // String, FixedString, Enum, IPv4/IPv6 and anything not listed: text
	kindInt
	kindUint
	kindFloat
	kindDecimal
	kindBool
	kindDate
	kindDateTime
	kindDateTime64
	kindUUID
	kindArray
	kindMap
	kindTuple
)

// chType is a parsed ClickHouse column type.
type chType struct {
	text     string // as DESCRIBE spells it
	kind     kind
	nullable bool
	bits     int       // Int/UInt width
	fixed    int       // FixedString(N)
	scale    int       // Decimal scale, DateTime64 precision
	enum     []string  // Enum values
	elem     []*chType // Array, Map (key, value), Tuple elements
}

// parseType reads a type as DESCRIBE TABLE prints it.
func parseType(text string) *chType {
	t := &chType{text: text}
	s := strings.TrimSpace(text)
	if inner, ok := unwrap(s, "Nullable"); ok {
		in := parseType(inner)
		in.nullable = true
		in.text = text
		return in
	}
	if inner, ok := unwrap(s, "LowCardinality"); ok {
		in := parseType(inner)
		in.text = text
		return in
	}
	name, args := s, ""
	if i := strings.IndexByte(s, '('); i > 0 && strings.HasSuffix(s, ")") {
		name, args = s[:i], s[i+1:len(s)-1]
	}
	switch name {
	case "Int8", "Int16", "Int32", "Int64":
		t.kind, t.bits = kindInt, atoi(name[3:])
	case "UInt8", "UInt16", "UInt32", "UInt64":
		t.kind, t.bits = kindUint, atoi(name[4:])
	case "Int128", "Int256", "UInt128", "UInt256":
		t.kind = kindDecimal // exact integers: validated as decimal text without a fraction
	case "Float32", "Float64", "BFloat16":
		t.kind = kindFloat
	case "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256":
		t.kind = kindDecimal
		parts := warehouse.SplitTypeArgs(args)
		if len(parts) > 0 {
			t.scale = atoi(parts[len(parts)-1])
		}
	case "Bool", "Boolean":
		t.kind = kindBool
	case "Date", "Date32":
		t.kind = kindDate
	case "DateTime":
		t.kind = kindDateTime
	case "DateTime64":
		t.kind = kindDateTime64
		if parts := warehouse.SplitTypeArgs(args); len(parts) > 0 {
			t.scale = atoi(parts[0])
		}
	case "UUID":
		t.kind = kindUUID
	case "FixedString":
		t.fixed = atoi(args)
	case "Enum8", "Enum16":
		for _, p := range warehouse.SplitTypeArgs(args) {
			lhs := p
			if i := strings.LastIndexByte(p, '='); i > 0 {
				lhs = p[:i]
			}
			if v, ok := unquote(lhs); ok {
				t.enum = append(t.enum, v)
			}
		}
	case "Array":
		t.kind = kindArray
		t.elem = []*chType{parseType(args)}
	case "Map":
		t.kind = kindMap
		for _, p := range warehouse.SplitTypeArgs(args) {
			t.elem = append(t.elem, parseType(p))
		}
	case "Tuple":
		t.kind = kindTuple
		for _, p := range warehouse.SplitTypeArgs(args) {
			t.elem = append(t.elem, parseType(warehouse.TupleElementType(p)))
		}
	}
	return t
}

// name is the type's name for messages, without Nullable and LowCardinality.
func (t *chType) name() string {
	s := t.text
	for {
		if in, ok := unwrap(s, "Nullable"); ok {
			s = in
			continue
		}
		if in, ok := unwrap(s, "LowCardinality"); ok {
			s = in
			continue
		}
		return s
	}
}

func unwrap(s, wrapper string) (string, bool) {
	if strings.HasPrefix(s, wrapper+"(") && strings.HasSuffix(s, ")") {
		return s[len(wrapper)+1 : len(s)-1], true
	}
	return "", false
}

func unquote(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

func atoi(s string) int {
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// valueError is why one value does not convert; its text follows the hosted platform's
// quarantine messages ("value 'x' on column 'c' is not Int32").
type valueError struct {
	column string
	msg    string
}

func (e *valueError) Error() string { return e.msg }

func notType(value, column string, t *chType) *valueError {
	if len(value) > 200 {
		value = value[:200] + "..."
	}
	return &valueError{column: column, msg: fmt.Sprintf("value '%s' on column '%s' is not %s", value, column, t.name())}
}
