package template

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// stringMethod implements the str methods templates may call besides split, join and replace,
// with Python's meaning. Results are bounded like every other string a template builds.
func stringMethod(s, name string, args []any, kw kwargs) (any, error) {
	strArg := func(i int, what string) (string, bool, error) {
		v, ok := arg(args, kw, i, what)
		if !ok || v == nil {
			return "", false, nil
		}
		str, isStr := v.(string)
		if !isStr {
			return "", false, fmt.Errorf("%s() argument must be a string, not %s", name, typeName(v))
		}
		return str, true, nil
	}
	switch name {
	case "startswith", "endswith":
		v, ok := arg(args, kw, 0, "prefix")
		if !ok {
			return nil, fmt.Errorf("%s() takes one argument", name)
		}
		var cands []string
		switch x := v.(type) {
		case string:
			cands = []string{x}
		case *listVal:
			for _, it := range x.items {
				c, isStr := it.(string)
				if !isStr {
					return nil, fmt.Errorf("%s() tuple items must be strings", name)
				}
				cands = append(cands, c)
			}
		default:
			return nil, fmt.Errorf("%s() argument must be a string or a tuple of strings", name)
		}
		for _, c := range cands {
			if name == "startswith" && strings.HasPrefix(s, c) || name == "endswith" && strings.HasSuffix(s, c) {
				return true, nil
			}
		}
		return false, nil
	case "lower":
		return strings.ToLower(s), nil
	case "upper":
		return strings.ToUpper(s), nil
	case "capitalize":
		if s == "" {
			return s, nil
		}
		r := []rune(strings.ToLower(s))
		r[0] = unicode.ToUpper(r[0])
		return string(r), nil
	case "title":
		prev := false
		return strings.Map(func(r rune) rune {
			letter := unicode.IsLetter(r)
			defer func() { prev = letter }()
			if letter && !prev {
				return unicode.ToUpper(r)
			}
			return unicode.ToLower(r)
		}, s), nil
	case "strip", "lstrip", "rstrip":
		chars, given, err := strArg(0, "chars")
		if err != nil {
			return nil, err
		}
		trim := func(r rune) bool { return unicode.IsSpace(r) }
		if given {
			trim = func(r rune) bool { return strings.ContainsRune(chars, r) }
		}
		switch name {
		case "strip":
			return strings.TrimFunc(s, trim), nil
		case "lstrip":
			return strings.TrimLeftFunc(s, trim), nil
		}
		return strings.TrimRightFunc(s, trim), nil
	case "rsplit":
		sep, given, err := strArg(0, "sep")
		if err != nil {
			return nil, err
		}
		parts := strings.Fields(s)
		if given {
			if sep == "" {
				return nil, fmt.Errorf("rsplit() separator must not be empty")
			}
			parts = strings.Split(s, sep)
		}
		if m, ok := arg(args, kw, 1, "maxsplit"); ok {
			n, isInt := m.(*intVal)
			if !isInt || !n.v.IsInt64() {
				return nil, fmt.Errorf("rsplit() maxsplit must be an integer")
			}
			if max := int(n.v.Int64()); max >= 0 && given && len(parts) > max+1 {
				head := strings.Join(parts[:len(parts)-max], sep)
				parts = append([]string{head}, parts[len(parts)-max:]...)
			}
		}
		return stringList(parts), nil
	case "splitlines":
		return stringList(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })), nil
	case "count", "find", "index":
		sub, given, err := strArg(0, "sub")
		if err != nil || !given {
			return nil, fmt.Errorf("%s() takes a string argument", name)
		}
		if name == "count" {
			if sub == "" {
				return newInt(int64(len([]rune(s)) + 1)), nil
			}
			return newInt(int64(strings.Count(s, sub))), nil
		}
		i := strings.Index(s, sub)
		if i < 0 && name == "index" {
			return nil, fmt.Errorf("substring not found")
		}
		if i >= 0 {
			i = len([]rune(s[:i]))
		}
		return newInt(int64(i)), nil
	case "isdigit", "isnumeric", "isalpha", "isalnum", "islower", "isupper":
		if s == "" {
			return false, nil
		}
		cased := false
		for _, r := range s {
			var ok bool
			switch name {
			case "isdigit", "isnumeric":
				ok = unicode.IsDigit(r)
			case "isalpha":
				ok = unicode.IsLetter(r)
			case "isalnum":
				ok = unicode.IsLetter(r) || unicode.IsDigit(r)
			case "islower":
				ok = !unicode.IsUpper(r)
				cased = cased || unicode.IsLower(r)
			case "isupper":
				ok = !unicode.IsLower(r)
				cased = cased || unicode.IsUpper(r)
			}
			if !ok {
				return false, nil
			}
		}
		return cased || (name != "islower" && name != "isupper"), nil
	case "zfill":
		v, _ := arg(args, kw, 0, "width")
		n, ok := v.(*intVal)
		if !ok || !n.v.IsInt64() {
			return nil, fmt.Errorf("zfill() takes an integer width")
		}
		w := int(n.v.Int64())
		if w > maxCollection {
			return nil, fmt.Errorf("string result too large")
		}
		sign := ""
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			sign, s = s[:1], s[1:]
		}
		if pad := w - len(sign) - len([]rune(s)); pad > 0 {
			s = strings.Repeat("0", pad) + s
		}
		return sign + s, nil
	case "format":
		return formatString(s, args, kw)
	}
	return nil, fmt.Errorf("'str' object has no method %s()", name)
}

// formatString is str.format with plain fields only: {}, {0}, {name} and {{ }} escapes. Field
// attributes, indexes and format specs ({0.attr}, {0[1]}, {:>10}) are refused: they are how
// Python templates reach objects' internals.
func formatString(s string, args []any, kw kwargs) (any, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '}' {
			if i+1 < len(s) && s[i+1] == '}' {
				b.WriteByte('}')
				i++
				continue
			}
			return nil, fmt.Errorf("format(): single '}' in the format string")
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("format(): unclosed '{' in the format string")
		}
		field := s[i+1 : i+end]
		i += end
		var v any
		switch {
		case field == "":
			if auto >= len(args) {
				return nil, fmt.Errorf("format(): not enough arguments")
			}
			v = args[auto]
			auto++
		case strings.Trim(field, "0123456789") == "":
			n, _ := strconv.Atoi(field)
			if n >= len(args) {
				return nil, fmt.Errorf("format(): no argument %d", n)
			}
			v = args[n]
		case isName(field):
			var ok bool
			if v, ok = kw.get(field); !ok {
				return nil, fmt.Errorf("format(): no argument named %s", field)
			}
		default:
			return nil, fmt.Errorf("format(): only plain fields ({}, {0}, {name}) are supported, not {%s}", field)
		}
		b.WriteString(str(v))
		if b.Len() > maxCollection*16 {
			return nil, fmt.Errorf("string result too large")
		}
	}
	return b.String(), nil
}

func isName(s string) bool {
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

func stringList(parts []string) *listVal {
	l := &listVal{items: make([]any, len(parts))}
	for i, p := range parts {
		l.items[i] = p
	}
	return l
}

// listMethod implements list.count and list.index.
func listMethod(l *listVal, name string, args []any) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s() takes exactly one argument", name)
	}
	n := 0
	for i, it := range l.items {
		if equal(it, args[0]) {
			if name == "index" {
				return newInt(int64(i)), nil
			}
			n++
		}
	}
	switch name {
	case "count":
		return newInt(int64(n)), nil
	case "index":
		return nil, fmt.Errorf("%s is not in list", str(args[0]))
	}
	return nil, fmt.Errorf("'list' object has no method %s()", name)
}

// dictMethod implements dict.keys, values and items (as lists).
func dictMethod(d *dictVal, name string) (any, error) {
	out := &listVal{}
	for _, k := range d.keys {
		switch name {
		case "keys":
			out.items = append(out.items, k)
		case "values":
			out.items = append(out.items, d.m[k])
		case "items":
			out.items = append(out.items, &listVal{items: []any{k, d.m[k]}, tuple: true})
		default:
			return nil, fmt.Errorf("'dict' object has no method %s()", name)
		}
	}
	return out, nil
}
