package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
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
