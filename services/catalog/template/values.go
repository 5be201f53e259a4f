package template

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// Runtime values. A value is one of: nil (None), bool, string, *intVal,
// floatVal, *listVal, *dictVal, exprVal (SQL text built by a safe function),
// symbolVal (an escaped identifier) or placeholder (an unset name in check
// mode).
type (
	intVal struct {
		v   *big.Int
		typ string // "" for a plain int; Int8…UInt256 for typed parameters
	}
	floatVal struct {
		v   float64
		typ string // "" or Float32 / Float64
	}
	listVal struct {
		items []any
		tuple bool
	}
	dictVal struct {
		keys []string
		m    map[string]any
	}
	exprVal     string
	symbolVal   string
	placeholder struct{ name string }
)

// maxIntBits bounds template integers so that arithmetic cannot be used to
// exhaust memory.
const maxIntBits = 512

// maxCollection bounds list and string sizes built by template arithmetic.
const maxCollection = 1 << 20

func newInt(i int64) *intVal { return &intVal{v: big.NewInt(i)} }

func parseIntLiteral(s string) (*intVal, bool) {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.BitLen() > maxIntBits {
		return nil, false
	}
	return &intVal{v: v}, true
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case string:
		return "str"
	case *intVal:
		return "int"
	case floatVal:
		return "float"
	case *listVal:
		if x.tuple {
			return "tuple"
		}
		return "list"
	case *dictVal:
		return "dict"
	case exprVal:
		return "SQL expression"
	case symbolVal:
		return "SQL identifier"
	case placeholder:
		return "Placeholder"
	}
	return fmt.Sprintf("%T", v)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case *intVal:
		return x.v.Sign() != 0
	case floatVal:
		return x.v != 0
	case *listVal:
		return len(x.items) > 0
	case *dictVal:
		return len(x.keys) > 0
	case exprVal:
		return x != ""
	case symbolVal:
		return x != ""
	}
	return true // placeholders are truthy objects, as in Python
}

// escapeString escapes a value for a single-quoted ClickHouse string literal
// (spec §4.4, sqlescape_for_string_expression).
func escapeString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString(`\0`)
		case '\r':
			b.WriteString(`\r`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case 0x1a:
			b.WriteString(`\x1A`)
		case '\n':
			b.WriteString(`\n`)
		case '"':
			b.WriteString(`\"`)
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case '%':
			b.WriteString(`\%`)
		case '`':
			b.WriteString("\\`")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// quoteString renders s as a single-quoted, escaped literal.
func quoteString(s string) string { return "'" + escapeString(s) + "'" }

// escapeIdent escapes an identifier for back-quotes: like escapeString, but
// double quotes are removed (spec §4.4).
func escapeIdent(s string) string {
	return escapeString(strings.ReplaceAll(s, `"`, ""))
}

func quoteIdent(s string) string { return "`" + escapeIdent(s) + "`" }

func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// sqlLiteral renders a value as SQL text. Strings are always quoted and
// escaped; only exprVal and symbolVal (built by this package from validated
// or escaped input) are emitted as-is.
func sqlLiteral(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case string:
		return quoteString(x), nil
	case *intVal:
		if x.typ != "" {
			return "to" + x.typ + "('" + x.v.String() + "')", nil
		}
		return x.v.String(), nil
	case floatVal:
		if math.IsInf(x.v, 0) || math.IsNaN(x.v) {
			return "", fmt.Errorf("cannot render non-finite number %v", x.v)
		}
		if x.typ != "" {
			return "to" + x.typ + "('" + formatFloat(x.v) + "')", nil
		}
		return formatFloat(x.v), nil
	case *listVal:
		parts := make([]string, len(x.items))
		for i, it := range x.items {
			s, err := sqlLiteral(it)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		if x.tuple {
			if len(parts) == 1 {
				return "tuple(" + parts[0] + ")", nil
			}
			return "(" + strings.Join(parts, ", ") + ")", nil
		}
		return "[" + strings.Join(parts, ",") + "]", nil
	case exprVal:
		return string(x), nil
	case symbolVal:
		return string(x), nil
	case placeholder:
		return "'__no_value__'", nil
	case *dictVal:
		keys := append([]string(nil), x.keys...)
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			s, err := sqlLiteral(x.m[k])
			if err != nil {
				return "", err
			}
			parts[i] = quoteString(k) + ", " + s
		}
		return "map(" + strings.Join(parts, ", ") + ")", nil
	}
	return "", fmt.Errorf("cannot render a %s in SQL", typeName(v))
}

// str is Python's str() for values used as text (e.g. passed to String()).
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case *intVal:
		return x.v.String()
	case floatVal:
		return formatFloat(x.v)
	case exprVal:
		return string(x)
	case symbolVal:
		return string(x)
	case placeholder:
		return "__no_value__"
	case *listVal:
		parts := make([]string, len(x.items))
		for i, it := range x.items {
			if s, ok := it.(string); ok {
				parts[i] = "'" + strings.ReplaceAll(s, "'", "\\'") + "'"
			} else {
				parts[i] = str(it)
			}
		}
		if x.tuple {
			return "(" + strings.Join(parts, ", ") + ")"
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *dictVal:
		return "{...}"
	}
	return fmt.Sprint(v)
}

// equal is Python ==.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		switch y := b.(type) {
		case bool:
			return x == y
		case *intVal, floatVal:
			return equal(boolInt(x), y)
		}
		return false
	case string:
		y, ok := b.(string)
		return ok && x == y
	case *intVal:
		switch y := b.(type) {
		case *intVal:
			return x.v.Cmp(y.v) == 0
		case floatVal:
			f, _ := new(big.Float).SetInt(x.v).Float64()
			return f == y.v
		case bool:
			return equal(x, boolInt(y))
		}
		return false
	case floatVal:
		switch y := b.(type) {
		case floatVal:
			return x.v == y.v
		case *intVal, bool:
			return equal(y, x)
		}
		return false
	case *listVal:
		y, ok := b.(*listVal)
		if !ok || x.tuple != y.tuple || len(x.items) != len(y.items) {
			return false
		}
		for i := range x.items {
			if !equal(x.items[i], y.items[i]) {
				return false
			}
		}
		return true
	case *dictVal:
		y, ok := b.(*dictVal)
		if !ok || len(x.keys) != len(y.keys) {
			return false
		}
		for k, v := range x.m {
			w, ok := y.m[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case exprVal:
		y, ok := b.(exprVal)
		return ok && x == y
	case symbolVal:
		y, ok := b.(symbolVal)
		return ok && x == y
	}
	return false // placeholders equal nothing (identity semantics)
}

// numeric is v with a bool as the int Python counts it as (True is 1); anything else as is.
func numeric(v any) any {
	if x, ok := v.(bool); ok {
		return boolInt(x)
	}
	return v
}

func boolInt(b bool) *intVal {
	if b {
		return newInt(1)
	}
	return newInt(0)
}

// compare is Python ordering (<): -1, 0, 1, or an error for unorderable types.
func compare(a, b any) (int, error) {
	a, b = numeric(a), numeric(b)
	switch x := a.(type) {
	case *intVal:
		switch y := b.(type) {
		case *intVal:
			return x.v.Cmp(y.v), nil
		case floatVal:
			return new(big.Float).SetInt(x.v).Cmp(big.NewFloat(y.v)), nil
		}
	case floatVal:
		switch y := b.(type) {
		case floatVal:
			switch {
			case x.v < y.v:
				return -1, nil
			case x.v > y.v:
				return 1, nil
			}
			return 0, nil
		case *intVal:
			c, err := compare(y, x)
			return -c, err
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	case *listVal:
		if y, ok := b.(*listVal); ok && x.tuple == y.tuple {
			for i := 0; i < len(x.items) && i < len(y.items); i++ {
				if !equal(x.items[i], y.items[i]) {
					return compare(x.items[i], y.items[i])
				}
			}
			switch {
			case len(x.items) < len(y.items):
				return -1, nil
			case len(x.items) > len(y.items):
				return 1, nil
			}
			return 0, nil
		}
	}
	msg := fmt.Sprintf("'<' not supported between instances of '%s' and '%s'", typeName(a), typeName(b))
	if _, ok := a.(placeholder); ok {
		msg += ". If you are using a dynamic parameter, wrap it in a type function (e.g. Int32(name))"
	} else if _, ok := b.(placeholder); ok {
		msg += ". If you are using a dynamic parameter, wrap it in a type function (e.g. Int32(name))"
	}
	return 0, fmt.Errorf("%s", msg)
}

func contains(container, item any) (bool, error) {
	switch c := container.(type) {
	case *listVal:
		for _, it := range c.items {
			if equal(item, it) {
				return true, nil
			}
		}
		return false, nil
	case string:
		s, ok := item.(string)
		if !ok {
			if _, isP := item.(placeholder); isP {
				return false, nil
			}
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(c, s), nil
	case *dictVal:
		s, ok := item.(string)
		if !ok {
			return false, nil
		}
		_, found := c.m[s]
		return found, nil
	case placeholder:
		return false, nil
	case nil:
		return false, fmt.Errorf("argument of type 'None' is not iterable")
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}
