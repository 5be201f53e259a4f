package template

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

func describe(v any) string {
	if s, ok := v.(string); ok {
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return strconv.Quote(s)
	}
	return typeName(v)
}

func toInt(v any) (*big.Int, error) {
	switch x := v.(type) {
	case *intVal:
		return new(big.Int).Set(x.v), nil
	case bool:
		return boolInt(x).v, nil
	case floatVal:
		if math.IsInf(x.v, 0) || math.IsNaN(x.v) || math.Abs(x.v) > 1e150 {
			return nil, fmt.Errorf("cannot convert %v to int", x.v)
		}
		n, _ := big.NewFloat(math.Trunc(x.v)).Int(nil)
		return n, nil
	case string:
		s := strings.TrimSpace(x)
		if !reInt.MatchString(s) || len(s) > 160 {
			return nil, fmt.Errorf("invalid literal for int(): %s", describe(x))
		}
		n, _ := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
		return n, nil
	}
	return nil, fmt.Errorf("int() argument must be a string or a number, not '%s'", typeName(v))
}

// typed implements the scalar type functions (spec §4.2).
func (r *renderer) typed(name string, c *callNode, args []any, kw kwargs) (any, error) {
	x, _ := arg(args, kw, 0, "")
	def, _ := arg(args, kw, 1, "default")
	if name == "Boolean" || name == "bool" {
		switch x.(type) {
		case nil, placeholder:
			if def == nil {
				return newInt(0), nil
			}
			x = def
		}
		return toBoolean(x)
	}
	definedArg := definedKeyword(kw)
	switch x.(type) {
	case placeholder:
		if truthy(def) {
			x = def
		} else {
			x = checkPlaceholder(name)
		}
	case nil:
		x = def
		if x == nil {
			if !definedArg {
				return nil, nil
			}
			r.missing[paramName(c)] = true
			x = checkPlaceholder(name)
		}
	}
	v, err := convertTyped(name, x)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// convertTyped validates a value for a type and returns its typed value.
func convertTyped(name string, x any) (any, error) {
	s := str(x)
	bad := func() error {
		shown := s
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		return fmt.Errorf("error validating '%s' to type %s", shown, name)
	}
	switch name {
	case "String":
		return s, nil
	case "Date":
		if !reDate.MatchString(s) {
			return nil, bad()
		}
		return s, nil
	case "DateTime":
		if !reDateTime.MatchString(s) {
			return nil, bad()
		}
		return s, nil
	case "DateTime64":
		if !reDateTime64.MatchString(s) {
			return nil, bad()
		}
		return s, nil
	case "Float32", "Float64":
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || strings.Contains(s, "_") || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, bad()
		}
		if name == "Float32" && math.Abs(f) > math.MaxFloat32 {
			return nil, bad()
		}
		return floatVal{v: f, typ: name}, nil
	case "Int", "Integer":
		n, err := checkInt(s, 32, true)
		if err != nil {
			return nil, bad()
		}
		return &intVal{v: n}, nil
	}
	if it, ok := intTypes[name]; ok {
		n, err := checkInt(s, it.bits, it.signed)
		if err != nil {
			return nil, bad()
		}
		return &intVal{v: n, typ: name}, nil
	}
	return nil, fmt.Errorf("unknown type %s", name)
}

func checkInt(s string, bits uint, signed bool) (*big.Int, error) {
	s = strings.TrimSpace(s)
	if !reInt.MatchString(s) || len(s) > 100 {
		return nil, fmt.Errorf("not an integer")
	}
	n, ok := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
	if !ok {
		return nil, fmt.Errorf("not an integer")
	}
	var lo, hi *big.Int
	if signed {
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits-1), big.NewInt(1))
		lo = new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), bits-1))
	} else {
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits), big.NewInt(1))
		lo = big.NewInt(0)
	}
	if n.Cmp(lo) < 0 || n.Cmp(hi) > 0 {
		return nil, fmt.Errorf("out of range")
	}
	return n, nil
}

func toBoolean(x any) (any, error) {
	switch y := x.(type) {
	case bool:
		return boolInt(y), nil
	case *intVal:
		return boolInt(y.v.Sign() != 0), nil
	case string:
		switch strings.ToLower(strings.TrimSpace(y)) {
		case "1", "true":
			return newInt(1), nil
		case "0", "false":
			return newInt(0), nil
		}
		return nil, fmt.Errorf("error validating '%s' to type Boolean: expected 0, 1, true or false", describe(y))
	}
	return boolInt(truthy(x)), nil
}

// array implements Array(name, 'T', default): a list literal whose elements
// are each validated as T and rendered as literals.
func (r *renderer) array(c *callNode, args []any, kw kwargs) (any, error) {
	x, _ := arg(args, kw, 0, "")
	typArg, _ := arg(args, kw, 1, "type")
	def, _ := arg(args, kw, 2, "default")
	typ := ""
	if typArg != nil {
		s, ok := typArg.(string)
		if !ok {
			return nil, fmt.Errorf("Array() element type must be a string such as 'Int32'")
		}
		typ = s
		if !isTypeFunction(typ) || typ == "Array" || typ == "JSON" {
			return nil, fmt.Errorf("unknown Array element type %q", typ)
		}
	}
	definedArg := definedKeyword(kw)
	switch x.(type) {
	case placeholder:
		if truthy(def) {
			x = def
		} else if typ != "" {
			p := checkPlaceholder(typ)
			x = &listVal{items: []any{p, p}}
		} else {
			x = &listVal{items: []any{"__no_value__0", "__no_value__1"}}
		}
	case nil:
		x = def
		if x == nil {
			if !definedArg {
				return nil, nil
			}
			r.missing[paramName(c)] = true
			x = &listVal{}
		}
	}
	var items []any
	switch y := x.(type) {
	case *listVal:
		items = y.items
	default:
		for _, p := range strings.Split(str(y), ",") {
			items = append(items, p)
		}
	}
	parts := make([]string, len(items))
	for i, it := range items {
		v := it
		if typ != "" {
			var err error
			if typ == "Boolean" || typ == "bool" {
				v, err = toBoolean(it)
			} else {
				v, err = convertTyped(typ, it)
			}
			if err != nil {
				return nil, fmt.Errorf("error validating %s[%d] (%s) to type %s", paramName(c), i, describe(str(it)), typ)
			}
			// Elements render as plain literals: [1,2], ['a','b'].
			switch n := v.(type) {
			case *intVal:
				v = &intVal{v: n.v}
			case floatVal:
				v = floatVal{v: n.v}
			}
		} else if _, isP := it.(placeholder); isP {
			v = "__no_value__"
		}
		s, err := sqlLiteral(v)
		if err != nil {
			return nil, err
		}
		parts[i] = s
	}
	return exprVal("[" + strings.Join(parts, ",") + "]"), nil
}

func (r *renderer) jsonType(c *callNode, args []any, kw kwargs) (any, error) {
	x, _ := arg(args, kw, 0, "")
	def, _ := arg(args, kw, 1, "default")
	switch x.(type) {
	case placeholder:
		if truthy(def) {
			x = def
		} else {
			return &dictVal{m: map[string]any{}}, nil
		}
	case nil:
		if s, ok := def.(string); ok {
			x = s
		} else if def != nil {
			return def, nil
		} else {
			x = "{}"
		}
	}
	s, ok := x.(string)
	if !ok {
		return x, nil
	}
	var raw any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("error parsing JSON %s: %w", describe(s), err)
	}
	return fromGo(raw, 0)
}

func fromGo(v any, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("JSON nested too deeply")
	}
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case json.Number:
		if n, ok := new(big.Int).SetString(x.String(), 10); ok && n.BitLen() <= maxIntBits {
			return &intVal{v: n}, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, err
		}
		return floatVal{v: f}, nil
	case []any:
		l := &listVal{items: make([]any, len(x))}
		for i, it := range x {
			v, err := fromGo(it, depth+1)
			if err != nil {
				return nil, err
			}
			l.items[i] = v
		}
		return l, nil
	case map[string]any:
		d := &dictVal{m: map[string]any{}}
		for k, it := range x {
			v, err := fromGo(it, depth+1)
			if err != nil {
				return nil, err
			}
			d.keys = append(d.keys, k)
			d.m[k] = v
		}
		return d, nil
	}
	return nil, fmt.Errorf("unsupported JSON value")
}

func toGo(v any) any {
	switch x := v.(type) {
	case *intVal:
		if x.v.IsInt64() {
			return x.v.Int64()
		}
		return x.v.String()
	case floatVal:
		return x.v
	case *listVal:
		out := make([]any, len(x.items))
		for i, it := range x.items {
			out[i] = toGo(it)
		}
		return out
	case *dictVal:
		out := map[string]any{}
		for k, it := range x.m {
			out[k] = toGo(it)
		}
		return out
	case exprVal, symbolVal, placeholder:
		return str(x)
	}
	return v
}

func column(x, def any) (any, error) {
	switch x.(type) {
	case nil, placeholder:
		if def == nil {
			return nil, fmt.Errorf("missing column() default value: use column(column_name, 'default_column_name')")
		}
		x = def
	}
	s := str(x)
	segs := strings.Split(s, ".")
	for i, seg := range segs {
		segs[i] = quoteIdent(seg)
	}
	return symbolVal(strings.Join(segs, ".")), nil
}

func columns(x, def, fn any) (any, error) {
	switch x.(type) {
	case nil, placeholder:
		if def == nil {
			return nil, fmt.Errorf("missing columns() default value: use columns(column_names, 'default_column_name')")
		}
		x = def
	}
	s, ok := x.(string)
	if !ok {
		return nil, fmt.Errorf("the columns() function expects a String, not %s", typeName(x))
	}
	fname := ""
	if fn != nil {
		f, ok := fn.(string)
		if !ok || !reIdent.MatchString(f) {
			return nil, fmt.Errorf("columns() fn must be a function name, got %s", describe(fn))
		}
		fname = f
	}
	var parts []string
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		col, _ := column(c, c)
		if fname != "" {
			parts = append(parts, fname+"("+string(col.(symbolVal))+") as "+quoteIdent(c))
		} else {
			parts = append(parts, string(col.(symbolVal)))
		}
	}
	return exprVal(strings.Join(parts, ",")), nil
}

var sqlAndOps = map[string]string{"in": "in", "not_in": "not in", "gt": ">", "lt": "<", "gte": ">=", "lte": "<="}

func sqlAnd(kw kwargs) (any, error) {
	var parts []string
	for i, k := range kw.keys {
		v := kw.vals[i]
		if v == nil {
			continue
		}
		name, op := k, "="
		if j := strings.LastIndex(k, "__"); j >= 0 {
			suffix := k[j+2:]
			o, ok := sqlAndOps[suffix]
			if !ok {
				return nil, fmt.Errorf("sql_and() operand %q not supported: expected __in, __not_in, __gt, __lt, __gte or __lte", suffix)
			}
			name, op = k[:j], o
		}
		lit, err := sqlLiteral(v)
		if err != nil {
			return nil, err
		}
		parts = append(parts, name+" "+op+" "+lit)
	}
	return exprVal(strings.Join(parts, " and ")), nil
}

// definedKeyword is a type function's defined= argument (true when not given).
func definedKeyword(kw kwargs) bool {
	if d, ok := kw.get("defined"); ok {
		return truthy(d)
	}
	return true
}
