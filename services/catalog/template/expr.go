package template

import (
	"fmt"
	"strconv"
	"strings"
)

// The expression language is the Python subset that template expressions may
// use (spec §4.1): literals, names, whitelisted calls, the methods split, get,
// join and replace, subscripts, + - *, unary - and not, comparisons (chained),
// in / not in / is / is not, and / or, and the conditional expression.

// node is an expression AST node.
type node interface{ offset() int }

type (
	nameNode struct {
		name string
		off  int
	}
	constNode struct {
		val any
		off int
	}
	listNode struct {
		items []node
		tuple bool
		off   int
	}
	dictNode struct {
		keys, vals []node
		off        int
	}
	unaryNode struct {
		op  string
		x   node
		off int
	}
	binNode struct {
		op   string
		x, y node
		off  int
	}
	boolNode struct {
		op   string // and, or
		x, y node
		off  int
	}
	cmpNode struct {
		ops   []string
		items []node // len(ops)+1
		off   int
	}
	condNode struct {
		cond, then, els node
		off             int
	}
	callNode struct {
		fn     node // nameNode or attrNode
		args   []node
		kwKeys []string
		kwVals []node
		off    int
	}
	attrNode struct {
		x    node
		name string
		off  int
	}
	indexNode struct {
		x, idx node
		off    int
	}
)

func (n *nameNode) offset() int  { return n.off }
func (n *constNode) offset() int { return n.off }
func (n *listNode) offset() int  { return n.off }
func (n *dictNode) offset() int  { return n.off }
func (n *unaryNode) offset() int { return n.off }
func (n *binNode) offset() int   { return n.off }
func (n *boolNode) offset() int  { return n.off }
func (n *cmpNode) offset() int   { return n.off }
func (n *condNode) offset() int  { return n.off }
func (n *callNode) offset() int  { return n.off }
func (n *attrNode) offset() int  { return n.off }
func (n *indexNode) offset() int { return n.off }

type exprParser struct {
	toks  []etok
	i     int
	depth int
}

// maxExprDepth bounds expression nesting (a DoS guard for the recursive parser).
const maxExprDepth = 200

func parseExpr(src string, base int) (node, error) {
	toks, err := lexExpr(src, base)
	if err != nil {
		return nil, err
	}
	p := &exprParser{toks: toks}
	if p.peek().kind == tEOF {
		return nil, &posError{off: base, msg: "empty expression"}
	}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &posError{off: t.off, msg: fmt.Sprintf("unexpected %q after expression", t.raw)}
	}
	return n, nil
}

func (p *exprParser) peek() etok { return p.toks[p.i] }
func (p *exprParser) next() etok { t := p.toks[p.i]; p.i++; return t }

func (p *exprParser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == s
}

func (p *exprParser) isKw(s string) bool {
	t := p.peek()
	return t.kind == tName && t.text == s
}

func (p *exprParser) expect(s string) error {
	t := p.peek()
	if t.kind == tOp && t.text == s {
		p.i++
		return nil
	}
	found := t.raw
	if t.kind == tEOF {
		found = "end of expression"
	}
	return &posError{off: t.off, msg: fmt.Sprintf("expected %q, found %q", s, found)}
}

// expr := or_test ['if' or_test 'else' expr]
func (p *exprParser) expr() (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return nil, &posError{off: p.peek().off, msg: "expression nested too deeply"}
	}
	if p.isKw("lambda") {
		return nil, &posError{off: p.peek().off, msg: "lambda is not allowed in templates"}
	}
	x, err := p.orTest()
	if err != nil {
		return nil, err
	}
	if p.isKw("if") {
		off := p.next().off
		cond, err := p.orTest()
		if err != nil {
			return nil, err
		}
		if !p.isKw("else") {
			return nil, &posError{off: p.peek().off, msg: "expected else in conditional expression"}
		}
		p.next()
		els, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &condNode{cond: cond, then: x, els: els, off: off}, nil
	}
	return x, nil
}

func (p *exprParser) orTest() (node, error) {
	x, err := p.andTest()
	if err != nil {
		return nil, err
	}
	for p.isKw("or") {
		off := p.next().off
		y, err := p.andTest()
		if err != nil {
			return nil, err
		}
		x = &boolNode{op: "or", x: x, y: y, off: off}
	}
	return x, nil
}

func (p *exprParser) andTest() (node, error) {
	x, err := p.notTest()
	if err != nil {
		return nil, err
	}
	for p.isKw("and") {
		off := p.next().off
		y, err := p.notTest()
		if err != nil {
			return nil, err
		}
		x = &boolNode{op: "and", x: x, y: y, off: off}
	}
	return x, nil
}

func (p *exprParser) notTest() (node, error) {
	if p.isKw("not") {
		off := p.next().off
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxExprDepth {
			return nil, &posError{off: off, msg: "expression nested too deeply"}
		}
		x, err := p.notTest()
		if err != nil {
			return nil, err
		}
		return &unaryNode{op: "not", x: x, off: off}, nil
	}
	return p.comparison()
}

func (p *exprParser) cmpOp() (string, bool) {
	t := p.peek()
	if t.kind == tOp {
		switch t.text {
		case "==", "!=", "<", "<=", ">", ">=":
			p.i++
			return t.text, true
		case "<>":
			return "", false
		}
	}
	if t.kind == tName {
		switch t.text {
		case "in":
			p.i++
			return "in", true
		case "not":
			if n := p.toks[p.i+1]; n.kind == tName && n.text == "in" {
				p.i += 2
				return "not in", true
			}
		case "is":
			p.i++
			if p.isKw("not") {
				p.i++
				return "is not", true
			}
			return "is", true
		}
	}
	return "", false
}

func (p *exprParser) comparison() (node, error) {
	off := p.peek().off
	x, err := p.arith()
	if err != nil {
		return nil, err
	}
	var ops []string
	items := []node{x}
	for {
		op, ok := p.cmpOp()
		if !ok {
			break
		}
		y, err := p.arith()
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
		items = append(items, y)
	}
	if len(ops) == 0 {
		return x, nil
	}
	return &cmpNode{ops: ops, items: items, off: off}, nil
}

var forbiddenOps = map[string]string{
	"/":  "division (/) is not allowed in templates",
	"//": "division (//) is not allowed in templates",
	"%":  "modulo (%) is not allowed in templates",
	"**": "power (**) is not allowed in templates",
	"|":  "bitwise operators are not allowed in templates",
	"&":  "bitwise operators are not allowed in templates",
	"^":  "bitwise operators are not allowed in templates",
	"~":  "bitwise operators are not allowed in templates",
	"<<": "bitwise operators are not allowed in templates",
	">>": "bitwise operators are not allowed in templates",
	"@":  "the @ operator is not allowed in templates",
	":=": "assignment expressions are not allowed in templates",
	"<>": "use != instead of <>",
	";":  "';' is not allowed in template expressions",
}

func (p *exprParser) checkForbidden() error {
	t := p.peek()
	if t.kind == tOp {
		if msg, bad := forbiddenOps[t.text]; bad {
			return &posError{off: t.off, msg: msg}
		}
	}
	return nil
}

func (p *exprParser) arith() (node, error) {
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		if err := p.checkForbidden(); err != nil {
			return nil, err
		}
		if !p.isOp("+") && !p.isOp("-") {
			return x, nil
		}
		t := p.next()
		y, err := p.term()
		if err != nil {
			return nil, err
		}
		x = &binNode{op: t.text, x: x, y: y, off: t.off}
	}
}

func (p *exprParser) term() (node, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		if err := p.checkForbidden(); err != nil {
			return nil, err
		}
		if !p.isOp("*") {
			return x, nil
		}
		t := p.next()
		y, err := p.unary()
		if err != nil {
			return nil, err
		}
		x = &binNode{op: "*", x: x, y: y, off: t.off}
	}
}

func (p *exprParser) unary() (node, error) {
	if err := p.checkForbidden(); err != nil {
		return nil, err
	}
	if p.isOp("-") || p.isOp("+") {
		t := p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxExprDepth {
			return nil, &posError{off: t.off, msg: "expression nested too deeply"}
		}
		if t.text == "+" {
			return nil, &posError{off: t.off, msg: "unary + is not allowed in templates (only - and not)"}
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unaryNode{op: "-", x: x, off: t.off}, nil
	}
	x, err := p.postfix()
	if err != nil {
		return nil, err
	}
	if err := p.checkForbidden(); err != nil {
		return nil, err
	}
	return x, nil
}

func (p *exprParser) postfix() (node, error) {
	x, err := p.atom()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("("):
			off := p.next().off
			call := &callNode{fn: x, off: x.offset()}
			_ = off
			for !p.isOp(")") {
				if p.peek().kind == tOp && (p.peek().text == "*" || p.peek().text == "**") {
					return nil, &posError{off: p.peek().off, msg: "argument unpacking is not allowed in templates"}
				}
				if t := p.peek(); t.kind == tName && p.toks[p.i+1].kind == tOp && p.toks[p.i+1].text == "=" {
					p.i += 2
					v, err := p.expr()
					if err != nil {
						return nil, err
					}
					for _, k := range call.kwKeys {
						if k == t.text {
							return nil, &posError{off: t.off, msg: fmt.Sprintf("keyword argument %q repeated", k)}
						}
					}
					call.kwKeys = append(call.kwKeys, t.text)
					call.kwVals = append(call.kwVals, v)
				} else {
					if len(call.kwKeys) > 0 {
						return nil, &posError{off: p.peek().off, msg: "positional argument follows keyword argument"}
					}
					a, err := p.expr()
					if err != nil {
						return nil, err
					}
					call.args = append(call.args, a)
				}
				if !p.isOp(",") {
					break
				}
				p.next()
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			x = call
		case p.isOp("["):
			off := p.next().off
			if p.isOp(":") {
				return nil, &posError{off: p.peek().off, msg: "slices are not supported in templates"}
			}
			idx, err := p.expr()
			if err != nil {
				return nil, err
			}
			if p.isOp(":") {
				return nil, &posError{off: p.peek().off, msg: "slices are not supported in templates"}
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &indexNode{x: x, idx: idx, off: off}
		case p.isOp("."):
			p.next()
			t := p.next()
			if t.kind != tName {
				return nil, &posError{off: t.off, msg: "expected an attribute name after '.'"}
			}
			x = &attrNode{x: x, name: t.text, off: t.off}
		default:
			return x, nil
		}
	}
}

func (p *exprParser) atom() (node, error) {
	t := p.peek()
	switch t.kind {
	case tEOF:
		return nil, &posError{off: t.off, msg: "unexpected end of expression"}
	case tInt:
		p.i++
		v, ok := parseIntLiteral(t.text)
		if !ok {
			return nil, &posError{off: t.off, msg: fmt.Sprintf("invalid integer %q", t.raw)}
		}
		return &constNode{val: v, off: t.off}, nil
	case tFloat:
		p.i++
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, &posError{off: t.off, msg: fmt.Sprintf("invalid number %q", t.raw)}
		}
		return &constNode{val: floatVal{v: f}, off: t.off}, nil
	case tString:
		p.i++
		s := t.text
		// Adjacent string literals concatenate, as in Python.
		for p.peek().kind == tString {
			s += p.next().text
		}
		return &constNode{val: s, off: t.off}, nil
	case tName:
		p.i++
		switch t.text {
		case "None":
			return &constNode{val: nil, off: t.off}, nil
		case "True":
			return &constNode{val: true, off: t.off}, nil
		case "False":
			return &constNode{val: false, off: t.off}, nil
		case "and", "or", "not", "in", "is", "if", "else", "for", "lambda", "import", "from", "yield", "await", "def", "class", "return", "del", "global", "nonlocal", "assert", "pass", "raise", "try", "except", "while", "with", "as", "async", "break", "continue", "elif", "finally":
			return nil, &posError{off: t.off, msg: fmt.Sprintf("unexpected keyword %q in expression", t.text)}
		}
		if strings.HasPrefix(t.text, "__") {
			return nil, &posError{off: t.off, msg: fmt.Sprintf("name %q is not allowed in templates", t.text)}
		}
		return &nameNode{name: t.text, off: t.off}, nil
	case tOp:
		switch t.text {
		case "(":
			p.i++
			if p.isOp(")") {
				p.i++
				return &listNode{tuple: true, off: t.off}, nil
			}
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if p.isOp(")") {
				p.i++
				return x, nil
			}
			items := []node{x}
			for p.isOp(",") {
				p.i++
				if p.isOp(")") {
					break
				}
				y, err := p.expr()
				if err != nil {
					return nil, err
				}
				items = append(items, y)
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return &listNode{items: items, tuple: true, off: t.off}, nil
		case "[":
			p.i++
			l := &listNode{off: t.off}
			for !p.isOp("]") {
				x, err := p.expr()
				if err != nil {
					return nil, err
				}
				if p.isKw("for") {
					return nil, &posError{off: p.peek().off, msg: "comprehensions are not allowed in templates"}
				}
				l.items = append(l.items, x)
				if !p.isOp(",") {
					break
				}
				p.i++
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			return l, nil
		case "{":
			p.i++
			d := &dictNode{off: t.off}
			for !p.isOp("}") {
				k, err := p.expr()
				if err != nil {
					return nil, err
				}
				if err := p.expect(":"); err != nil {
					return nil, err
				}
				v, err := p.expr()
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
				if !p.isOp(",") {
					break
				}
				p.i++
			}
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			return d, nil
		}
		if msg, bad := forbiddenOps[t.text]; bad {
			return nil, &posError{off: t.off, msg: msg}
		}
	}
	return nil, &posError{off: t.off, msg: fmt.Sprintf("unexpected %q in expression", t.raw)}
}
