package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// intTypes are the sized integer types with their ranges.
var intTypes = map[string]struct {
	bits   uint
	signed bool
}{
	"Int8": {8, true}, "Int16": {16, true}, "Int32": {32, true}, "Int64": {64, true},
	"Int128": {128, true}, "Int256": {256, true},
	"UInt8": {8, false}, "UInt16": {16, false}, "UInt32": {32, false}, "UInt64": {64, false},
	"UInt128": {128, false}, "UInt256": {256, false},
}

// scalarTypes are the type functions other than Array and JSON.
var scalarTypes = map[string]bool{
	"String": true, "Boolean": true, "bool": true, "Date": true, "DateTime": true, "DateTime64": true,
	"Float32": true, "Float64": true, "Int": true, "Integer": true,
}

func isTypeFunction(name string) bool {
	_, isInt := intTypes[name]
	return isInt || scalarTypes[name] || name == "Array" || name == "JSON"
}

func canonicalType(name string) string {
	switch name {
	case "bool":
		return "Boolean"
	}
	return name
}

var otherBuiltins = map[string]bool{
	"symbol": true, "Symbol": true, "Column": true, "table": true, "TABLE": true, "column": true,
	"columns": true, "defined": true, "day_diff": true, "date_diff_in_seconds": true,
	"date_diff_in_minutes": true, "date_diff_in_hours": true, "date_diff_in_days": true,
	"split_to_array": true, "enumerate_with_last": true, "sql_and": true, "sql_unescape": true,
	"error": true, "custom_error": true, "cache_ttl": true, "backend_hint": true, "activate": true,
	"max_threads": true, "tb_secret": true, "tb_var": true, "len": true, "list": true,
	"min": true, "max": true, "int": true, "float": true,
}

func isBuiltin(name string) bool { return isTypeFunction(name) || otherBuiltins[name] }

var (
	reDate       = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	reDateTime   = regexp.MustCompile(`^(\d{4}.\d{2}.\d{2}[T ]\d{2}:\d{2}:\d{2}|\d{2}.\d{2}.\d{4}[T ]\d{1,2}:\d{1,2}:\d{1,2})`)
	reDateTime64 = regexp.MustCompile(`^(\d{4}.\d{2}.\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?|\d{2}.\d{2}.\d{4}[T ]\d{1,2}:\d{1,2}:\d{1,2}(\.\d{1,9})?)`)
	reInt        = regexp.MustCompile(`^[+-]?\d+$`)
	reIdent      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	reTable      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
)

// checkPlaceholder is the dummy value of each type in check mode.
func checkPlaceholder(typ string) any {
	switch typ {
	case "Date":
		return "2019-01-01"
	case "DateTime":
		return "2019-01-01 00:00:00"
	case "DateTime64":
		return "2019-01-01 00:00:00.000"
	case "Float32", "Float64":
		return floatVal{v: 0}
	case "String":
		return "__no_value__"
	case "Boolean", "bool":
		return false
	}
	return newInt(0)
}

type kwargs struct {
	keys []string
	vals []any
}

func (k kwargs) get(name string) (any, bool) {
	for i, key := range k.keys {
		if key == name {
			return k.vals[i], true
		}
	}
	return nil, false
}

// arg returns positional argument i, or keyword name, or nil.
func arg(args []any, kw kwargs, i int, name string) (any, bool) {
	if i < len(args) {
		return args[i], true
	}
	return kw.get(name)
}

func (r *renderer) call(c *callNode) (any, error) {
	args := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := r.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	kw := kwargs{keys: c.kwKeys, vals: make([]any, len(c.kwVals))}
	for i, a := range c.kwVals {
		v, err := r.eval(a)
		if err != nil {
			return nil, err
		}
		kw.vals[i] = v
	}
	var v any
	var err error
	switch fn := c.fn.(type) {
	case *attrNode:
		recv, rerr := r.eval(fn.x)
		if rerr != nil {
			return nil, rerr
		}
		v, err = method(recv, fn.name, args, kw)
	case *nameNode:
		v, err = r.builtin(fn.name, c, args, kw)
	default:
		err = fmt.Errorf("only named functions can be called")
	}
	if err != nil {
		var ue *UserError
		var pe *posError
		var te *Error
		if errors.As(err, &ue) || errors.As(err, &pe) || errors.As(err, &te) {
			return nil, err
		}
		return nil, &posError{off: c.off, msg: err.Error()}
	}
	return v, nil
}

func paramName(c *callNode) string {
	if len(c.args) > 0 {
		if n, ok := c.args[0].(*nameNode); ok {
			return n.name
		}
	}
	return "expression"
}

func checkArgs(name string, args []any, kw kwargs, maxPos int, allowed ...string) error {
	if len(args) > maxPos {
		return fmt.Errorf("%s() takes at most %d positional arguments (%d given)", name, maxPos, len(args))
	}
	for _, k := range kw.keys {
		ok := false
		for _, a := range allowed {
			if a == k {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%s() got an unexpected keyword argument %q", name, k)
		}
	}
	return nil
}

var typeKw = []string{"default", "defined", "required", "description", "enum", "example", "format"}

func (r *renderer) builtin(name string, c *callNode, args []any, kw kwargs) (any, error) {
	if _, ok := intTypes[name]; ok || scalarTypes[name] {
		if err := checkArgs(name, args, kw, 2, typeKw...); err != nil {
			return nil, err
		}
		return r.typed(name, c, args, kw)
	}
	switch name {
	case "Array":
		if err := checkArgs(name, args, kw, 3, append([]string{"type"}, typeKw...)...); err != nil {
			return nil, err
		}
		return r.array(c, args, kw)
	case "JSON":
		if err := checkArgs(name, args, kw, 2, typeKw...); err != nil {
			return nil, err
		}
		return r.jsonType(c, args, kw)
	case "defined":
		if len(args) == 0 {
			return false, nil
		}
		switch args[0].(type) {
		case nil, placeholder:
			return false, nil
		}
		return true, nil
	case "column":
		if err := checkArgs(name, args, kw, 2, "default"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		def, _ := arg(args, kw, 1, "default")
		return column(x, def)
	case "columns":
		if err := checkArgs(name, args, kw, 3, "default", "fn"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		def, _ := arg(args, kw, 1, "default")
		fn, _ := arg(args, kw, 2, "fn")
		return columns(x, def, fn)
	case "symbol", "Symbol", "Column":
		if err := checkArgs(name, args, kw, 2, "quote"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		q, hasQ := arg(args, kw, 1, "quote")
		if _, ok := x.(placeholder); ok {
			return symbolVal("`placeholder`"), nil
		}
		if x == nil {
			return nil, fmt.Errorf("symbol() needs a value")
		}
		quote := "`"
		if hasQ {
			qs, ok := q.(string)
			if !ok || (qs != "`" && qs != `"`) {
				return nil, fmt.Errorf("symbol() quote must be ` or \"")
			}
			quote = qs
		}
		return symbolVal(quote + escapeIdent(str(x)) + quote), nil
	case "table", "TABLE":
		if err := checkArgs(name, args, kw, 2, "quote"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		if _, ok := x.(placeholder); ok {
			return symbolVal("placeholder"), nil
		}
		s, ok := x.(string)
		if !ok || !reTable.MatchString(s) {
			return nil, fmt.Errorf("table() expects a table name (letters, digits, '_', optionally database.table), got %s", describe(x))
		}
		r.res.Tables = append(r.res.Tables, s)
		return symbolVal(s), nil
	case "sql_and":
		if len(args) > 0 {
			return nil, fmt.Errorf("sql_and() takes keyword arguments only, e.g. sql_and(a=x, b__in=y)")
		}
		return sqlAnd(kw)
	case "split_to_array":
		if err := checkArgs(name, args, kw, 3, "default", "separator"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		def, hasDef := arg(args, kw, 1, "default")
		sep, hasSep := arg(args, kw, 2, "separator")
		if !hasDef {
			def = ""
		}
		separator := ","
		if hasSep {
			s, ok := sep.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("split_to_array() separator must be a non-empty string")
			}
			separator = s
		}
		switch x.(type) {
		case nil, placeholder:
			x = def
		}
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("first argument of split_to_array must be a string that can be split into a list, got %s", typeName(x))
		}
		parts := strings.Split(s, separator)
		l := &listVal{items: make([]any, len(parts))}
		for i, p := range parts {
			l.items[i] = strings.TrimSpace(p)
		}
		return l, nil
	case "enumerate_with_last":
		if len(args) != 1 {
			return nil, fmt.Errorf("enumerate_with_last() takes one list")
		}
		items, err := iterate(args[0])
		if err != nil {
			return nil, err
		}
		l := &listVal{items: make([]any, len(items))}
		for i, it := range items {
			l.items[i] = &listVal{tuple: true, items: []any{i == len(items)-1, it}}
		}
		return l, nil
	case "day_diff":
		if err := checkArgs(name, args, kw, 3, "default"); err != nil {
			return nil, err
		}
		d0, _ := arg(args, kw, 0, "")
		d1, _ := arg(args, kw, 1, "")
		v, err := dateDiff(d0, d1, "%Y-%m-%d", nil, "", "days", false)
		if err != nil {
			return nil, fmt.Errorf("invalid date format in function day_diff: dates must be YYYY-MM-DD, e.g. 2018-09-26 (for other formats use date_diff_in_days)")
		}
		return v, nil
	case "date_diff_in_seconds", "date_diff_in_minutes", "date_diff_in_hours", "date_diff_in_days":
		if err := checkArgs(name, args, kw, 6, "date_format", "default", "backup_date_format", "none_if_error"); err != nil {
			return nil, err
		}
		unit := strings.TrimPrefix(name, "date_diff_in_")
		format := "%Y-%m-%d %H:%M:%S"
		if unit == "days" {
			format = "%Y-%m-%d"
		}
		d0, _ := arg(args, kw, 0, "")
		d1, _ := arg(args, kw, 1, "")
		if f, ok := arg(args, kw, 2, "date_format"); ok {
			fs, isStr := f.(string)
			if !isStr {
				return nil, fmt.Errorf("%s() date_format must be a string", name)
			}
			format = fs
		}
		def, _ := arg(args, kw, 3, "default")
		backup := ""
		if b, ok := arg(args, kw, 4, "backup_date_format"); ok && b != nil {
			bs, isStr := b.(string)
			if !isStr {
				return nil, fmt.Errorf("%s() backup_date_format must be a string", name)
			}
			backup = bs
		}
		noneIfErr := false
		if b, ok := arg(args, kw, 5, "none_if_error"); ok {
			noneIfErr = truthy(b)
		}
		v, err := dateDiff(d0, d1, format, def, backup, unit, noneIfErr)
		if err != nil {
			return nil, fmt.Errorf("invalid date in %s(): %w (format %s)", name, err, format)
		}
		return v, nil
	case "sql_unescape":
		if err := checkArgs(name, args, kw, 2, "what"); err != nil {
			return nil, err
		}
		x, _ := arg(args, kw, 0, "")
		what, _ := arg(args, kw, 1, "what")
		w, ok := what.(string)
		if !ok || utf8.RuneCountInString(w) != 1 || w == "'" || w == `\` {
			return nil, fmt.Errorf("sql_unescape() second argument must be one character other than ' and \\, e.g. '%%'")
		}
		var s string
		switch y := x.(type) {
		case string:
			s = y
		case placeholder:
			s = "__no_value__"
		default:
			return nil, fmt.Errorf("sql_unescape() expects a String value, got %s", typeName(x))
		}
		return exprVal("'" + strings.ReplaceAll(escapeString(s), `\`+w, w) + "'"), nil
	case "error", "custom_error":
		if r.opts.Check {
			return exprVal(""), nil
		}
		msg, _ := arg(args, kw, 0, "")
		code := 400
		if cv, ok := arg(args, kw, 1, "code"); ok {
			if n, isInt := cv.(*intVal); isInt && n.v.IsInt64() {
				code = int(n.v.Int64())
			}
		}
		ue := &UserError{Message: str(msg), Code: code}
		if name == "custom_error" {
			ue.Body = toGo(msg)
			if b, err := json.Marshal(ue.Body); err == nil {
				ue.Message = string(b)
			}
		}
		ue.Line, ue.Column = r.t.lineCol(c.off)
		return nil, ue
	case "max_threads":
		x, _ := arg(args, kw, 0, "")
		n, err := toInt(x)
		if err != nil || n.Sign() <= 0 || n.BitLen() > 31 {
			return nil, fmt.Errorf("max_threads() expects a positive integer, got %s", describe(x))
		}
		r.res.Settings["max_threads"] = n.String()
		return exprVal("-- max_threads " + n.String() + "\n"), nil
	case "backend_hint":
		x, _ := arg(args, kw, 0, "")
		if x == nil || x == false {
			delete(r.res.Settings, "backend_hint")
			return exprVal("-- backend_hint None\n"), nil
		}
		h := str(x)
		if strings.ContainsAny(h, "\r\n\x00") {
			return nil, fmt.Errorf("backend_hint() value must be a single line")
		}
		r.res.Settings["backend_hint"] = h
		return exprVal("-- backend_hint " + h + "\n"), nil
	case "cache_ttl":
		x, _ := arg(args, kw, 0, "")
		s, _ := x.(string)
		switch s {
		case "5s", "1m", "5m", "30m", "1h":
		default:
			return nil, fmt.Errorf("invalid cache_ttl %s: expected one of 5s, 1m, 5m, 30m, 1h", describe(x))
		}
		r.res.Settings["cache_ttl"] = s
		return exprVal("-- cache_ttl " + s + "\n"), nil
	case "activate":
		x, _ := arg(args, kw, 0, "")
		s, _ := x.(string)
		if s != "analyzer" && s != "parallel_replicas" {
			return nil, fmt.Errorf("%s is not a valid activate() argument: expected analyzer or parallel_replicas", describe(x))
		}
		r.res.Settings["activate"] = s
		return exprVal("-- activate " + s + "\n"), nil
	case "tb_secret", "tb_var":
		x, _ := arg(args, kw, 0, "")
		s, ok := x.(string)
		if !ok || !reIdent.MatchString(s) {
			return nil, fmt.Errorf("%s() expects a secret name (letters, digits, '_'), got %s", name, describe(x))
		}
		if !r.opts.Check && !r.opts.Secrets[s] {
			return nil, fmt.Errorf("cannot access secret %q: check the secret exists in the workspace", s)
		}
		r.res.SecretParams = append(r.res.SecretParams, s)
		return exprVal("{" + s + ": String}"), nil
	case "len":
		if len(args) != 1 {
			return nil, fmt.Errorf("len() takes exactly one argument")
		}
		switch x := args[0].(type) {
		case string:
			return newInt(int64(utf8.RuneCountInString(x))), nil
		case *listVal:
			return newInt(int64(len(x.items))), nil
		case *dictVal:
			return newInt(int64(len(x.keys))), nil
		}
		return nil, fmt.Errorf("object of type '%s' has no len()", typeName(args[0]))
	case "list":
		if len(args) == 0 {
			return &listVal{}, nil
		}
		items, err := iterate(args[0])
		if err != nil {
			return nil, err
		}
		return &listVal{items: append([]any(nil), items...)}, nil
	case "int":
		if len(args) != 1 {
			return nil, fmt.Errorf("int() takes exactly one argument")
		}
		n, err := toInt(args[0])
		if err != nil {
			return nil, err
		}
		return &intVal{v: n}, nil
	case "float":
		if len(args) != 1 {
			return nil, fmt.Errorf("float() takes exactly one argument")
		}
		switch x := args[0].(type) {
		case *intVal:
			f, _ := new(big.Float).SetInt(x.v).Float64()
			return floatVal{v: f}, nil
		case floatVal:
			return floatVal{v: x.v}, nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("could not convert string to float: %q", x)
			}
			return floatVal{v: f}, nil
		case bool:
			if x {
				return floatVal{v: 1}, nil
			}
			return floatVal{v: 0}, nil
		}
		return nil, fmt.Errorf("float() argument must be a string or a number, not '%s'", typeName(args[0]))
	case "min", "max":
		items := args
		if len(args) == 1 {
			var err error
			if items, err = iterate(args[0]); err != nil {
				return nil, err
			}
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("%s() arg is an empty sequence", name)
		}
		best := items[0]
		for _, it := range items[1:] {
			c, err := compare(it, best)
			if err != nil {
				return nil, err
			}
			if (name == "min" && c < 0) || (name == "max" && c > 0) {
				best = it
			}
		}
		return best, nil
	}
	return nil, fmt.Errorf("function %q is not allowed in templates", name)
}

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
	definedArg := true
	if d, ok := kw.get("defined"); ok {
		definedArg = truthy(d)
	}
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
	definedArg := true
	if d, ok := kw.get("defined"); ok {
		definedArg = truthy(d)
	}
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

func method(recv any, name string, args []any, kw kwargs) (any, error) {
	if _, ok := recv.(placeholder); ok {
		// Check mode: a parameter without a value stands for any string.
		switch name {
		case "split", "rsplit", "splitlines":
			return &listVal{items: []any{placeholder{}, placeholder{}}}, nil
		case "startswith", "endswith", "isdigit", "isnumeric", "isalpha", "isalnum", "islower", "isupper":
			return false, nil
		case "count", "find":
			return newInt(0), nil
		case "lower", "upper", "strip", "lstrip", "rstrip", "capitalize", "title", "replace", "format", "zfill", "join":
			return placeholder{}, nil
		}
		return nil, fmt.Errorf("a parameter without a value has no method %s(): check it with defined() first", name)
	}
	switch x := recv.(type) {
	case string:
		switch name {
		case "split":
			sep, hasSep := arg(args, kw, 0, "sep")
			max := -1
			if m, ok := arg(args, kw, 1, "maxsplit"); ok {
				n, isInt := m.(*intVal)
				if !isInt || !n.v.IsInt64() {
					return nil, fmt.Errorf("split() maxsplit must be an integer")
				}
				max = int(n.v.Int64())
			}
			var parts []string
			if !hasSep || sep == nil {
				parts = strings.Fields(x)
				if max >= 0 && len(parts) > max+1 {
					head := parts[:max]
					rest := x
					for _, h := range head {
						rest = strings.TrimLeft(rest, " \t\r\n\f\v")
						rest = rest[len(h):]
					}
					parts = append(append([]string{}, head...), strings.TrimLeft(rest, " \t\r\n\f\v"))
				}
			} else {
				s, ok := sep.(string)
				if !ok || s == "" {
					return nil, fmt.Errorf("split() separator must be a non-empty string")
				}
				n := -1
				if max >= 0 {
					n = max + 1
				}
				parts = strings.SplitN(x, s, n)
			}
			l := &listVal{items: make([]any, len(parts))}
			for i, p := range parts {
				l.items[i] = p
			}
			return l, nil
		case "join":
			if len(args) != 1 {
				return nil, fmt.Errorf("join() takes exactly one argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			ss := make([]string, len(items))
			for i, it := range items {
				s, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
				}
				ss[i] = s
			}
			out := strings.Join(ss, x)
			if len(out) > maxCollection*16 {
				return nil, fmt.Errorf("string result too large")
			}
			return out, nil
		case "replace":
			if len(args) < 2 {
				return nil, fmt.Errorf("replace() takes two strings")
			}
			old, ok1 := args[0].(string)
			nw, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("replace() arguments must be strings")
			}
			n := -1
			if len(args) > 2 {
				c, ok := args[2].(*intVal)
				if !ok || !c.v.IsInt64() {
					return nil, fmt.Errorf("replace() count must be an integer")
				}
				n = int(c.v.Int64())
			}
			if old == "" || len(nw) > len(old) {
				if int64(len(x))*int64(len(nw)+1) > maxCollection*16 {
					return nil, fmt.Errorf("string result too large")
				}
			}
			return strings.Replace(x, old, nw, n), nil
		default:
			return stringMethod(x, name, args, kw)
		}
	case *listVal:
		return listMethod(x, name, args)
	case *dictVal:
		if name == "get" {
			k, _ := arg(args, kw, 0, "")
			def, _ := arg(args, kw, 1, "default")
			ks, ok := k.(string)
			if !ok {
				return def, nil
			}
			if v, found := x.m[ks]; found {
				return v, nil
			}
			return def, nil
		}
		return dictMethod(x, name)
	}
	return nil, fmt.Errorf("'%s' object has no method %s()", typeName(recv), name)
}

// dateDiff implements day_diff and date_diff_in_* (absolute difference,
// truncated to an integer of the unit).
func dateDiff(d0, d1 any, format string, def any, backup string, unit string, noneIfErr bool) (any, error) {
	_, p0 := d0.(placeholder)
	_, p1 := d1.(placeholder)
	if p0 || p1 {
		if truthy(def) {
			return def, nil
		}
		return newInt(0), nil
	}
	s0, ok0 := d0.(string)
	s1, ok1 := d1.(string)
	if !ok0 || !ok1 {
		if noneIfErr {
			return nil, nil
		}
		return nil, fmt.Errorf("dates must be strings, got %s and %s", typeName(d0), typeName(d1))
	}
	t0, err0 := parseDate(s0, format, backup)
	t1, err1 := parseDate(s1, format, backup)
	if err0 != nil || err1 != nil {
		if noneIfErr {
			return nil, nil
		}
		if err0 != nil {
			return nil, err0
		}
		return nil, err1
	}
	d := t1.Sub(t0)
	if d < 0 {
		d = -d
	}
	var n int64
	switch unit {
	case "days":
		n = int64(d / (24 * time.Hour))
	case "hours":
		n = int64(d / time.Hour)
	case "minutes":
		n = int64(d / time.Minute)
	default:
		n = int64(d / time.Second)
	}
	return newInt(n), nil
}

func parseDate(s, format, backup string) (time.Time, error) {
	t, err := strptime(s, format)
	if err != nil && backup != "" {
		if t2, err2 := strptime(s, backup); err2 == nil {
			return t2, nil
		}
	}
	return t, err
}

// strptime parses s with a Python strptime format supporting %Y %m %d %H %M
// %S %f and %%.
func strptime(s, format string) (time.Time, error) {
	fail := fmt.Errorf("%q does not match format %q", s, format)
	var year, month, day, hour, minute, sec, nsec int
	month, day = 1, 1
	i := 0
	num := func(maxDigits int) (int, bool) {
		j := i
		for j < len(s) && j-i < maxDigits && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return 0, false
		}
		n, _ := strconv.Atoi(s[i:j])
		i = j
		return n, true
	}
	for k := 0; k < len(format); k++ {
		c := format[k]
		if c != '%' {
			if i >= len(s) || s[i] != c {
				return time.Time{}, fail
			}
			i++
			continue
		}
		k++
		if k >= len(format) {
			return time.Time{}, fail
		}
		var ok bool
		switch format[k] {
		case 'Y':
			year, ok = num(4)
		case 'm':
			month, ok = num(2)
		case 'd':
			day, ok = num(2)
		case 'H':
			hour, ok = num(2)
		case 'M':
			minute, ok = num(2)
		case 'S':
			sec, ok = num(2)
		case 'f':
			start := i
			var f int
			f, ok = num(6)
			if ok {
				digits := i - start
				for ; digits < 9; digits++ {
					f *= 10
				}
				nsec = f
			}
		case '%':
			ok = i < len(s) && s[i] == '%'
			i++
		default:
			return time.Time{}, fmt.Errorf("unsupported date format directive %%%c", format[k])
		}
		if !ok {
			return time.Time{}, fail
		}
	}
	if i != len(s) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 61 {
		return time.Time{}, fail
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, fail
	}
	return t, nil
}
