package template

import (
	"fmt"
	"strings"
)

// allowedMethods are the only attributes templates may use, and only as calls: the string,
// list and dict methods that projects written for the hosted platform call on parameters.
// Every one is implemented here in Go over template values (see stringMethod): none reaches an
// object's internals, and format() takes only plain {} / {0} / {name} fields.
var allowedMethods = map[string]bool{
	"split": true, "rsplit": true, "get": true, "join": true, "replace": true,
	"startswith": true, "endswith": true, "lower": true, "upper": true, "strip": true,
	"lstrip": true, "rstrip": true, "format": true, "capitalize": true, "title": true,
	"count": true, "find": true, "index": true, "isdigit": true, "isalpha": true,
	"isalnum": true, "isnumeric": true, "islower": true, "isupper": true, "zfill": true,
	"keys": true, "values": true, "items": true, "splitlines": true,
}

// allowedMethodList is allowedMethods for messages.
const allowedMethodList = "split, rsplit, splitlines, join, replace, startswith, endswith, lower, upper, strip, lstrip, rstrip, format, capitalize, title, count, find, index, isdigit, isalpha, isalnum, isnumeric, islower, isupper, zfill (strings); get, keys, values, items (dicts); count, index (lists)"

// reservedNames may not be used as variables (spec §4.1).
var reservedNames = map[string]bool{"format": true, "q": true}

// checkSandbox enforces the expression whitelist on the whole template.
func (t *Template) checkSandbox() error {
	var err error
	t.walkExprs(func(n node, isCallee bool) bool {
		switch x := n.(type) {
		case *callNode:
			switch fn := x.fn.(type) {
			case *nameNode:
				if !isBuiltin(fn.name) {
					err = &posError{off: fn.off, msg: fmt.Sprintf("function %q is not allowed in templates", fn.name)}
					return false
				}
			case *attrNode:
				if !allowedMethods[fn.name] {
					err = &posError{off: fn.off, msg: fmt.Sprintf("method %q is not allowed in templates (allowed: %s)", fn.name, allowedMethodList)}
					return false
				}
			default:
				err = &posError{off: x.off, msg: "only named functions and the allowed methods can be called (" + allowedMethodList + ")"}
				return false
			}
		case *attrNode:
			if !isCallee {
				err = &posError{off: x.off, msg: fmt.Sprintf("attribute access %q is not allowed in templates", x.name)}
				return false
			}
		case *nameNode:
			if reservedNames[x.name] && !isCallee {
				err = &posError{off: x.off, msg: fmt.Sprintf("%q is a reserved parameter name and cannot be used in templates", x.name)}
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	var verr error
	t.walkNodes(t.body, func(n tnode) {
		if verr != nil {
			return
		}
		var names []string
		switch x := n.(type) {
		case *setNode:
			names = x.targets
		case *forNode:
			names = x.vars
		}
		for _, v := range names {
			if reservedNames[v] || isBuiltin(v) {
				verr = &posError{off: n.pos(), msg: fmt.Sprintf("%q cannot be assigned in templates", v)}
			}
		}
	})
	return verr
}

func (t *Template) walkNodes(body []tnode, f func(tnode)) {
	for _, n := range body {
		f(n)
		switch x := n.(type) {
		case *ifNode:
			for _, b := range x.bodies {
				t.walkNodes(b, f)
			}
			t.walkNodes(x.els, f)
		case *forNode:
			t.walkNodes(x.body, f)
		case *whileNode:
			t.walkNodes(x.body, f)
		}
	}
}

// walkExprs visits every expression node; f returns false to stop.
func (t *Template) walkExprs(f func(n node, isCallee bool) bool) {
	stop := false
	var visit func(n node, callee bool)
	visit = func(n node, callee bool) {
		if stop || n == nil {
			return
		}
		if !f(n, callee) {
			stop = true
			return
		}
		switch x := n.(type) {
		case *listNode:
			for _, it := range x.items {
				visit(it, false)
			}
		case *dictNode:
			for i := range x.keys {
				visit(x.keys[i], false)
				visit(x.vals[i], false)
			}
		case *unaryNode:
			visit(x.x, false)
		case *binNode:
			visit(x.x, false)
			visit(x.y, false)
		case *boolNode:
			visit(x.x, false)
			visit(x.y, false)
		case *cmpNode:
			for _, it := range x.items {
				visit(it, false)
			}
		case *condNode:
			visit(x.cond, false)
			visit(x.then, false)
			visit(x.els, false)
		case *callNode:
			visit(x.fn, true)
			for _, a := range x.args {
				visit(a, false)
			}
			for _, a := range x.kwVals {
				visit(a, false)
			}
		case *attrNode:
			visit(x.x, false)
		case *indexNode:
			visit(x.x, false)
			visit(x.idx, false)
		}
	}
	t.walkNodes(t.body, func(n tnode) {
		switch x := n.(type) {
		case *outNode:
			visit(x.e, false)
		case *ifNode:
			for _, c := range x.conds {
				visit(c, false)
			}
		case *forNode:
			visit(x.iter, false)
		case *whileNode:
			visit(x.cond, false)
		case *setNode:
			visit(x.e, false)
		}
	})
}

// Parameters returns the template's parameters in order of first use,
// discovered statically from typed-function calls and from names the
// template reads. Names assigned with {% set %} or {% for %} are not
// parameters. job_timestamp is reported with Implicit set.
func (t *Template) Parameters() []Parameter {
	locals := map[string]bool{}
	t.walkNodes(t.body, func(n tnode) {
		switch x := n.(type) {
		case *setNode:
			for _, v := range x.targets {
				locals[v] = true
			}
		case *forNode:
			for _, v := range x.vars {
				locals[v] = true
			}
		}
	})
	var order []string
	params := map[string]*Parameter{}
	get := func(name string, off int) *Parameter {
		p, ok := params[name]
		if !ok {
			line, col := t.lineCol(off)
			p = &Parameter{Name: name, Line: line, Column: col, Implicit: name == "job_timestamp"}
			params[name] = p
			order = append(order, name)
		}
		return p
	}
	t.walkExprs(func(n node, callee bool) bool {
		switch x := n.(type) {
		case *nameNode:
			if !callee && !locals[x.name] {
				get(x.name, x.off)
			}
		case *callNode:
			fn, ok := x.fn.(*nameNode)
			if !ok || !isTypeFunction(fn.name) || len(x.args) == 0 {
				return true
			}
			arg, ok := x.args[0].(*nameNode)
			if !ok || locals[arg.name] {
				return true
			}
			p := get(arg.name, arg.off)
			if p.Type == "" {
				p.Type = canonicalType(fn.name)
			}
			defIdx := 1
			if fn.name == "Array" {
				defIdx = 2
				if len(x.args) > 1 {
					if c, ok := x.args[1].(*constNode); ok {
						if s, ok := c.val.(string); ok && p.ElementType == "" {
							p.ElementType = s
						}
					}
				}
			}
			var def node
			if len(x.args) > defIdx {
				def = x.args[defIdx]
			}
			for i, k := range x.kwKeys {
				switch k {
				case "default":
					def = x.kwVals[i]
				case "required":
					if c, ok := x.kwVals[i].(*constNode); ok && truthy(c.val) {
						p.Required = true
					}
				case "description":
					if c, ok := x.kwVals[i].(*constNode); ok && p.Description == "" {
						if s, ok := c.val.(string); ok {
							p.Description = s
						}
					}
				case "type":
					if c, ok := x.kwVals[i].(*constNode); ok && fn.name == "Array" {
						if s, ok := c.val.(string); ok && p.ElementType == "" {
							p.ElementType = s
						}
					}
				}
			}
			if def != nil && !p.HasDefault {
				if c, ok := def.(*constNode); ok {
					if c.val != nil {
						p.HasDefault, p.Default = true, str(c.val)
					}
				} else if l, ok := def.(*listNode); ok {
					var parts []string
					for _, it := range l.items {
						if c, ok := it.(*constNode); ok {
							parts = append(parts, str(c.val))
						}
					}
					p.HasDefault, p.Default = true, strings.Join(parts, ",")
				} else {
					p.HasDefault = true
					p.Default = t.exprSource(def)
				}
			}
		}
		return true
	})
	out := make([]Parameter, 0, len(order))
	for _, n := range order {
		out = append(out, *params[n])
	}
	return out
}

// exprSource returns an approximate source text for a default expression.
func (t *Template) exprSource(n node) string {
	off := n.offset()
	end := strings.IndexAny(t.src[off:], ",)}")
	if end < 0 {
		return strings.TrimSpace(t.src[off:])
	}
	return strings.TrimSpace(t.src[off : off+end])
}
