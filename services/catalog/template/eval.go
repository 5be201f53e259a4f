package template

import (
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

const (
	// maxSteps bounds the work of one render (nodes evaluated).
	maxSteps = 2_000_000
	// maxOutput bounds the rendered SQL size.
	maxOutput = 256 << 20
)

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

type renderer struct {
	t       *Template
	params  map[string]string
	opts    RenderOptions
	vars    map[string]any
	jobTS   string
	missing map[string]bool
	out     strings.Builder
	res     *Result
	steps   int
}

// Render renders the template with the given parameters. See Execute.
func (t *Template) Render(params map[string]string, opts RenderOptions) (string, error) {
	r, err := t.Execute(params, opts)
	if err != nil {
		return "", err
	}
	return r.SQL, nil
}

// Execute renders the template and reports settings and table() uses.
// Errors are *Error (with line and column), *MissingParametersError (every
// missing required parameter of the render, sorted) or *UserError.
func (t *Template) Execute(params map[string]string, opts RenderOptions) (*Result, error) {
	res := &Result{Settings: map[string]string{}, t: t}
	if !t.templated {
		res.SQL = t.src
		return res, nil
	}
	r := &renderer{t: t, params: params, opts: opts, vars: map[string]any{}, missing: map[string]bool{}, res: res}
	if !opts.JobTimestamp.IsZero() {
		r.jobTS = opts.JobTimestamp.UTC().Format("2006-01-02 15:04:05")
	}
	err := r.execBody(t.body)
	if len(r.missing) > 0 {
		names := make([]string, 0, len(r.missing))
		for n := range r.missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, &MissingParametersError{Names: names}
	}
	if err != nil {
		if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
			return nil, t.errAt(0, "{%% break %%} or {%% continue %%} outside of a loop")
		}
		return nil, t.wrap(err)
	}
	out := r.out.String()
	res.SQL = strings.TrimSpace(out)
	res.trimmed = len(out) - len(strings.TrimLeft(out, " \t\r\n\v\f"))
	res.t = t
	return res, nil
}

// maxSegments bounds the source map of a check-mode render.
const maxSegments = 100_000

// mark records that what is written next comes from the template at src (check mode only,
// where positions are reported).
func (r *renderer) mark(src, n int, verbatim bool) {
	if !r.opts.Check || len(r.res.segments) >= maxSegments {
		return
	}
	r.res.segments = append(r.res.segments, segment{out: r.out.Len(), src: src, n: n, verbatim: verbatim})
}

func (r *renderer) step(off int) error {
	r.steps++
	if r.steps > maxSteps {
		return &posError{off: off, msg: "template is too complex to render (step limit exceeded)"}
	}
	return nil
}

func (r *renderer) execBody(body []tnode) error {
	for _, n := range body {
		if err := r.step(n.pos()); err != nil {
			return err
		}
		switch x := n.(type) {
		case *textNode:
			r.mark(x.off, len(x.s), x.off+len(x.s) <= len(r.t.src) && r.t.src[x.off:x.off+len(x.s)] == x.s)
			r.out.WriteString(x.s)
		case *outNode:
			r.mark(x.off, 0, false)
			v, err := r.eval(x.e)
			if err != nil {
				return err
			}
			if v == nil {
				if nm, ok := x.e.(*nameNode); ok && !r.isSet(nm.name) {
					r.missing[nm.name] = true
					continue
				}
				name := x.src
				if len(name) > 20 {
					name = name[:20] + "..."
				}
				return &posError{off: x.off, msg: fmt.Sprintf("expression %q evaluated to null", name)}
			}
			s, err := sqlLiteral(v)
			if err != nil {
				return &posError{off: x.off, msg: err.Error()}
			}
			if typ := dateCall(x.e); typ != "" {
				if text, ok := v.(string); ok {
					s = typedDate(typ, text, r.out.String())
				}
			}
			r.out.WriteString(s)
		case *ifNode:
			done := false
			for i, c := range x.conds {
				v, err := r.eval(c)
				if err != nil {
					return err
				}
				if truthy(v) {
					if err := r.execBody(x.bodies[i]); err != nil {
						return err
					}
					done = true
					break
				}
			}
			if !done && x.els != nil {
				if err := r.execBody(x.els); err != nil {
					return err
				}
			}
		case *forNode:
			it, err := r.eval(x.iter)
			if err != nil {
				return err
			}
			items, err := iterate(it)
			if err != nil {
				return &posError{off: x.iter.offset(), msg: err.Error()}
			}
			for _, item := range items {
				if err := r.assign(x.vars, item, x.off); err != nil {
					return err
				}
				err := r.execBody(x.body)
				if errors.Is(err, errBreak) {
					break
				}
				if err != nil && !errors.Is(err, errContinue) {
					return err
				}
			}
		case *whileNode:
			for {
				v, err := r.eval(x.cond)
				if err != nil {
					return err
				}
				if !truthy(v) {
					break
				}
				if err := r.step(x.off); err != nil {
					return err
				}
				err = r.execBody(x.body)
				if errors.Is(err, errBreak) {
					break
				}
				if err != nil && !errors.Is(err, errContinue) {
					return err
				}
			}
		case *setNode:
			v, err := r.eval(x.e)
			if err != nil {
				return err
			}
			if err := r.assign(x.targets, v, x.off); err != nil {
				return err
			}
		case *loopCtlNode:
			if x.brk {
				return errBreak
			}
			return errContinue
		}
		if r.out.Len() > maxOutput {
			return &posError{off: n.pos(), msg: "rendered SQL is too large"}
		}
	}
	return nil
}

func (r *renderer) assign(targets []string, v any, off int) error {
	if len(targets) == 1 {
		r.vars[targets[0]] = v
		return nil
	}
	items, err := iterate(v)
	if err != nil {
		return &posError{off: off, msg: err.Error()}
	}
	if len(items) != len(targets) {
		return &posError{off: off, msg: fmt.Sprintf("cannot unpack %d values into %d names", len(items), len(targets))}
	}
	for i, t := range targets {
		r.vars[t] = items[i]
	}
	return nil
}

// isSet reports whether a name has a value (a variable, a parameter or the
// job timestamp).
func (r *renderer) isSet(name string) bool {
	if _, ok := r.vars[name]; ok {
		return true
	}
	if _, ok := r.params[name]; ok {
		return true
	}
	return name == "job_timestamp" && r.jobTS != ""
}

func (r *renderer) lookup(name string) any {
	if v, ok := r.vars[name]; ok {
		return v
	}
	if v, ok := r.params[name]; ok {
		return v
	}
	if name == "job_timestamp" && r.jobTS != "" {
		return r.jobTS
	}
	if r.opts.Check {
		return placeholder{name: name}
	}
	return nil
}

func iterate(v any) ([]any, error) {
	switch x := v.(type) {
	case *listVal:
		return x.items, nil
	case string:
		var out []any
		for _, c := range x {
			out = append(out, string(c))
		}
		return out, nil
	case *dictVal:
		out := make([]any, len(x.keys))
		for i, k := range x.keys {
			out[i] = k
		}
		return out, nil
	case placeholder:
		// Python iterates a Placeholder through __getitem__: three items.
		return []any{placeholder{}, placeholder{}, placeholder{}}, nil
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

func (r *renderer) eval(n node) (any, error) {
	if err := r.step(n.offset()); err != nil {
		return nil, err
	}
	switch x := n.(type) {
	case *constNode:
		return x.val, nil
	case *nameNode:
		return r.lookup(x.name), nil
	case *listNode:
		l := &listVal{tuple: x.tuple, items: make([]any, len(x.items))}
		for i, it := range x.items {
			v, err := r.eval(it)
			if err != nil {
				return nil, err
			}
			l.items[i] = v
		}
		return l, nil
	case *dictNode:
		d := &dictVal{m: map[string]any{}}
		for i := range x.keys {
			k, err := r.eval(x.keys[i])
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, &posError{off: x.keys[i].offset(), msg: "dictionary keys must be strings"}
			}
			v, err := r.eval(x.vals[i])
			if err != nil {
				return nil, err
			}
			if _, dup := d.m[ks]; !dup {
				d.keys = append(d.keys, ks)
			}
			d.m[ks] = v
		}
		return d, nil
	case *unaryNode:
		v, err := r.eval(x.x)
		if err != nil {
			return nil, err
		}
		if x.op == "not" {
			return !truthy(v), nil
		}
		switch y := v.(type) {
		case *intVal:
			return &intVal{v: new(big.Int).Neg(y.v)}, nil
		case floatVal:
			return floatVal{v: -y.v}, nil
		case bool:
			return &intVal{v: new(big.Int).Neg(boolInt(y).v)}, nil
		}
		return nil, &posError{off: x.off, msg: fmt.Sprintf("bad operand type for unary -: '%s'", typeName(v))}
	case *binNode:
		a, err := r.eval(x.x)
		if err != nil {
			return nil, err
		}
		b, err := r.eval(x.y)
		if err != nil {
			return nil, err
		}
		v, err := binop(x.op, a, b)
		if err != nil {
			return nil, &posError{off: x.off, msg: err.Error()}
		}
		return v, nil
	case *boolNode:
		a, err := r.eval(x.x)
		if err != nil {
			return nil, err
		}
		if (x.op == "and") != truthy(a) {
			return a, nil
		}
		return r.eval(x.y)
	case *cmpNode:
		left, err := r.eval(x.items[0])
		if err != nil {
			return nil, err
		}
		for i, op := range x.ops {
			right, err := r.eval(x.items[i+1])
			if err != nil {
				return nil, err
			}
			ok, err := cmpop(op, left, right)
			if err != nil {
				return nil, &posError{off: x.items[i+1].offset(), msg: err.Error()}
			}
			if !ok {
				return false, nil
			}
			left = right
		}
		return true, nil
	case *condNode:
		c, err := r.eval(x.cond)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(x.then)
		}
		return r.eval(x.els)
	case *indexNode:
		v, err := r.eval(x.x)
		if err != nil {
			return nil, err
		}
		i, err := r.eval(x.idx)
		if err != nil {
			return nil, err
		}
		out, err := index(v, i)
		if err != nil {
			return nil, &posError{off: x.off, msg: err.Error()}
		}
		return out, nil
	case *attrNode:
		return nil, &posError{off: x.off, msg: fmt.Sprintf("attribute access %q is not allowed in templates", x.name)}
	case *callNode:
		return r.call(x)
	}
	return nil, &posError{off: n.offset(), msg: "unsupported expression"}
}

func binop(op string, a, b any) (any, error) {
	if _, ok := a.(placeholder); ok && op == "+" {
		return placeholder{}, nil
	}
	a, b = numeric(a), numeric(b)
	switch x := a.(type) {
	case *intVal:
		switch y := b.(type) {
		case *intVal:
			z := new(big.Int)
			switch op {
			case "+":
				z.Add(x.v, y.v)
			case "-":
				z.Sub(x.v, y.v)
			case "*":
				z.Mul(x.v, y.v)
			}
			if z.BitLen() > maxIntBits {
				return nil, fmt.Errorf("integer result too large")
			}
			return &intVal{v: z}, nil
		case floatVal:
			f, _ := new(big.Float).SetInt(x.v).Float64()
			return binop(op, floatVal{v: f}, y)
		case string:
			if op == "*" {
				return repeatString(y, x)
			}
		case *listVal:
			if op == "*" {
				return repeatList(y, x)
			}
		}
	case floatVal:
		var f float64
		switch y := b.(type) {
		case floatVal:
			f = y.v
		case *intVal:
			f, _ = new(big.Float).SetInt(y.v).Float64()
		default:
			return nil, unsupported(op, a, b)
		}
		switch op {
		case "+":
			return floatVal{v: x.v + f}, nil
		case "-":
			return floatVal{v: x.v - f}, nil
		case "*":
			return floatVal{v: x.v * f}, nil
		}
	case string:
		switch y := b.(type) {
		case string:
			if op == "+" {
				if len(x)+len(y) > maxCollection*16 {
					return nil, fmt.Errorf("string result too large")
				}
				return x + y, nil
			}
		case *intVal:
			if op == "*" {
				return repeatString(x, y)
			}
		case placeholder:
			if op == "+" {
				return placeholder{}, nil
			}
		}
	case *listVal:
		switch y := b.(type) {
		case *listVal:
			if op == "+" && x.tuple == y.tuple {
				if len(x.items)+len(y.items) > maxCollection {
					return nil, fmt.Errorf("list result too large")
				}
				items := append(append([]any{}, x.items...), y.items...)
				return &listVal{items: items, tuple: x.tuple}, nil
			}
		case *intVal:
			if op == "*" {
				return repeatList(x, y)
			}
		}
	}
	return nil, unsupported(op, a, b)
}

func unsupported(op string, a, b any) error {
	return fmt.Errorf("unsupported operand types for %s: '%s' and '%s'", op, typeName(a), typeName(b))
}

func repeatString(s string, n *intVal) (any, error) {
	if !n.v.IsInt64() || n.v.Int64() < 0 {
		return "", nil
	}
	k := n.v.Int64()
	if k*int64(len(s)) > maxCollection*16 {
		return nil, fmt.Errorf("string result too large")
	}
	return strings.Repeat(s, int(k)), nil
}

func repeatList(l *listVal, n *intVal) (any, error) {
	if !n.v.IsInt64() || n.v.Int64() <= 0 {
		return &listVal{tuple: l.tuple}, nil
	}
	k := n.v.Int64()
	if k*int64(len(l.items)) > maxCollection {
		return nil, fmt.Errorf("list result too large")
	}
	var items []any
	for i := int64(0); i < k; i++ {
		items = append(items, l.items...)
	}
	return &listVal{items: items, tuple: l.tuple}, nil
}

func cmpop(op string, a, b any) (bool, error) {
	switch op {
	case "==":
		return equal(a, b), nil
	case "!=":
		return !equal(a, b), nil
	case "is":
		return same(a, b), nil
	case "is not":
		return !same(a, b), nil
	case "in":
		return contains(b, a)
	case "not in":
		ok, err := contains(b, a)
		return !ok, err
	}
	c, err := compare(a, b)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown operator %s", op)
}

func same(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	x, ok1 := a.(bool)
	y, ok2 := b.(bool)
	if ok1 && ok2 {
		return x == y
	}
	return false
}

func index(v, i any) (any, error) {
	switch x := v.(type) {
	case placeholder:
		n, ok := i.(*intVal)
		if ok && n.v.Cmp(big.NewInt(2)) > 0 {
			return nil, fmt.Errorf("index out of range")
		}
		return placeholder{}, nil
	case *dictVal:
		k, ok := i.(string)
		if !ok {
			return nil, fmt.Errorf("dictionary keys must be strings")
		}
		val, found := x.m[k]
		if !found {
			return nil, fmt.Errorf("key %q not found", k)
		}
		return val, nil
	}
	n, ok := i.(*intVal)
	if !ok || !n.v.IsInt64() {
		return nil, fmt.Errorf("indices must be integers, not %s", typeName(i))
	}
	k := n.v.Int64()
	var items []any
	switch x := v.(type) {
	case *listVal:
		items = x.items
	case string:
		rs := []rune(x)
		if k < 0 {
			k += int64(len(rs))
		}
		if k < 0 || k >= int64(len(rs)) {
			return nil, fmt.Errorf("string index out of range")
		}
		return string(rs[k]), nil
	default:
		return nil, fmt.Errorf("'%s' object is not subscriptable", typeName(v))
	}
	if k < 0 {
		k += int64(len(items))
	}
	if k < 0 || k >= int64(len(items)) {
		return nil, fmt.Errorf("index out of range")
	}
	return items[k], nil
}
