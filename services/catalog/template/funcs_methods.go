package template

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
