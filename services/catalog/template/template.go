// Package template implements the SQL template language of node SQL that
// starts with '%' (DATAFILES-SPEC.md §4): {{ expr }}, {% if %}/{% elif %}/
// {% else %}/{% end %}, {% for %}, {% while %}, {% set %}, {# #}, a sandboxed
// Python-like expression language, and the typed parameter functions
// (String, Int32, DateTime, Array, ...).
//
// Rendering is a pure function of (template, parameters, job timestamp).
// Parameter values never reach the SQL as raw text: they are validated for
// their type and rendered as quoted, escaped literals (or escaped
// identifiers), so no value can change the query's structure.
package template

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is a template error at a line and column of the SQL given to Parse
// (1-based; the line of the leading '%' is line 1 when it is the first line).
type Error struct {
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

// MissingParametersError names every required parameter a render needed but
// did not get, sorted.
type MissingParametersError struct {
	Names []string
}

func (e *MissingParametersError) Error() string {
	q := make([]string, len(e.Names))
	for i, n := range e.Names {
		q[i] = fmt.Sprintf("%q", n)
	}
	noun := "parameter"
	if len(q) > 1 {
		noun = "parameters"
	}
	return fmt.Sprintf("required %s not defined: %s (pass a value for each, or give it a default in the template)", noun, strings.Join(q, ", "))
}

// UserError is raised by the template itself with error() or custom_error().
type UserError struct {
	Line    int
	Column  int
	Message string
	// Code is the HTTP-like status the template asked for (default 400).
	Code int
	// Body is custom_error's payload (a map, list or string), nil for error().
	Body any
}

func (e *UserError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message)
}

// posError is an error at a byte offset of the source, turned into *Error by
// the template that owns the source.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

// Parameter is a template parameter discovered statically.
type Parameter struct {
	Name string
	// Type is the type function used (String, Int32, DateTime, Array, ...), or
	// empty when the name is only tested or printed.
	Type string
	// ElementType is Array's element type, if given.
	ElementType string
	// Default is the default value as text (list defaults joined with ',');
	// for a non-literal default it is the expression's source.
	Default    string
	HasDefault bool
	// Required is the value of an explicit required= argument.
	Required    bool
	Description string
	// Implicit marks job_timestamp, which every render provides.
	Implicit bool
	Line     int
	Column   int
}

// RenderOptions control a render.
type RenderOptions struct {
	// JobTimestamp is the value of the implicit job_timestamp parameter,
	// rendered "YYYY-MM-DD HH:MM:SS" in UTC, unless params set it. The zero
	// time leaves job_timestamp unset.
	JobTimestamp time.Time
	// Check renders for validation at push time: unset names become
	// placeholders, typed functions return type-specific dummies, error() and
	// custom_error() do nothing.
	Check bool
	// Secrets are the names tb_secret()/tb_var() may reference.
	Secrets map[string]bool
}

// Result is a render's output with its side information.
type Result struct {
	SQL string
	// Settings are query settings set by max_threads(), backend_hint(),
	// cache_ttl() and activate().
	Settings map[string]string
	// Tables are names passed to table()/TABLE(), in order of use.
	Tables []string
	// SecretParams are tb_secret()/tb_var() names rendered as query parameters.
	SecretParams []string

	// Where the rendered SQL came from (check mode only): see SourcePos.
	segments []segment
	trimmed  int
	t        *Template
}

// segment is a piece of the rendered output: text copied from the template at src, or the
// value of the {{ }} at src.
type segment struct {
	out, src, n int
	verbatim    bool
}

// SourcePos maps a byte offset of the rendered SQL of a check-mode render back to the template
// source (1-based line and column): inside text copied from the template, exactly; inside a
// value, the {{ }} that rendered it. ok is false when the render kept no map.
func (r *Result) SourcePos(off int) (line, col int, ok bool) {
	if r == nil || r.t == nil {
		return 0, 0, false
	}
	if !r.t.templated {
		line, col = r.t.lineCol(off)
		return line, col, true
	}
	if len(r.segments) == 0 {
		return 0, 0, false
	}
	o := off + r.trimmed
	i := sort.Search(len(r.segments), func(i int) bool { return r.segments[i].out > o }) - 1
	if i < 0 {
		i = 0
	}
	s := r.segments[i]
	src := s.src
	if s.verbatim && o-s.out <= s.n {
		src += o - s.out
	}
	line, col = r.t.lineCol(src)
	return line, col, true
}

// Template is a parsed SQL template.
type Template struct {
	src       string
	templated bool
	body      []tnode
	lineStart []int
}

// Templated reports whether the SQL started with '%'. A non-templated SQL
// renders verbatim.
func (t *Template) Templated() bool { return t.templated }

type (
	tnode    interface{ pos() int }
	textNode struct {
		s   string
		off int
	}
	outNode struct {
		e   node
		src string
		off int
	}
	ifNode struct {
		conds  []node
		bodies [][]tnode
		els    []tnode
		off    int
	}
	forNode struct {
		vars []string
		iter node
		body []tnode
		off  int
	}
	whileNode struct {
		cond node
		body []tnode
		off  int
	}
	setNode struct {
		targets []string
		e       node
		off     int
	}
	loopCtlNode struct {
		brk bool
		off int
	}
)

func (n *textNode) pos() int    { return n.off }
func (n *outNode) pos() int     { return n.off }
func (n *ifNode) pos() int      { return n.off }
func (n *forNode) pos() int     { return n.off }
func (n *whileNode) pos() int   { return n.off }
func (n *setNode) pos() int     { return n.off }
func (n *loopCtlNode) pos() int { return n.off }

func (t *Template) errAt(off int, format string, args ...any) *Error {
	line, col := t.lineCol(off)
	return &Error{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (t *Template) lineCol(off int) (int, int) {
	if off < 0 {
		off = 0
	}
	if off > len(t.src) {
		off = len(t.src)
	}
	i := sort.Search(len(t.lineStart), func(i int) bool { return t.lineStart[i] > off }) - 1
	if i < 0 {
		i = 0
	}
	return i + 1, utf8.RuneCountInString(t.src[t.lineStart[i]:off]) + 1
}

func (t *Template) wrap(err error) error {
	var pe *posError
	if errors.As(err, &pe) {
		return t.errAt(pe.off, "%s", pe.msg)
	}
	return err
}

// Parse parses node SQL. SQL whose first non-blank character is '%' is a
// template (the '%' is dropped); any other SQL renders verbatim.
func Parse(sql string) (*Template, error) {
	t := &Template{src: sql, lineStart: []int{0}}
	for i := 0; i < len(sql); i++ {
		if sql[i] == '\n' {
			t.lineStart = append(t.lineStart, i+1)
		}
	}
	trimmed := strings.TrimLeft(sql, " \t\r\n")
	if !strings.HasPrefix(trimmed, "%") {
		t.body = []tnode{&textNode{s: sql}}
		return t, nil
	}
	t.templated = true
	start := len(sql) - len(trimmed) + 1
	p := &tparser{t: t, src: sql, i: start}
	body, end, err := p.parseBody("")
	if err != nil {
		return nil, t.wrap(err)
	}
	if end != "" {
		return nil, t.errAt(p.lastOff, "{%% %s %%} without a matching block", end)
	}
	t.body = body
	if err := t.checkSandbox(); err != nil {
		return nil, t.wrap(err)
	}
	return t, nil
}

type tparser struct {
	t       *Template
	src     string
	i       int
	lastOff int
	elifOff int
}

var forbiddenStatements = map[string]bool{
	"import": true, "from": true, "extends": true, "include": true, "autoescape": true,
	"raw": true, "module": true, "apply": true, "block": true,
}

// parseBody parses chunks until EOF or an intermediate/end statement, which
// it returns ("end", "else", "elif <cond>").
func (p *tparser) parseBody(in string) ([]tnode, string, error) {
	var out []tnode
	for {
		j := strings.IndexByte(p.src[p.i:], '{')
		for j >= 0 {
			k := p.i + j
			if k+1 < len(p.src) && (p.src[k+1] == '{' || p.src[k+1] == '%' || p.src[k+1] == '#') {
				break
			}
			n := strings.IndexByte(p.src[k+1:], '{')
			if n < 0 {
				j = -1
				break
			}
			j = j + 1 + n
		}
		if j < 0 {
			if p.i < len(p.src) {
				out = append(out, &textNode{s: p.src[p.i:], off: p.i})
			}
			p.i = len(p.src)
			if in != "" {
				return nil, "", &posError{off: p.lastOff, msg: fmt.Sprintf("missing {%% end %%} for {%% %s %%}", in)}
			}
			return out, "", nil
		}
		k := p.i + j
		if k > p.i {
			out = append(out, &textNode{s: p.src[p.i:k], off: p.i})
		}
		kind := p.src[k+1]
		// "{{!" and "{%!" emit the delimiter literally (Tornado).
		if k+2 < len(p.src) && p.src[k+2] == '!' && kind != '#' {
			out = append(out, &textNode{s: p.src[k : k+2], off: k})
			p.i = k + 3
			continue
		}
		closer := map[byte]string{'{': "}}", '%': "%}", '#': "#}"}[kind]
		e := strings.Index(p.src[k+2:], closer)
		if e < 0 {
			return nil, "", &posError{off: k, msg: fmt.Sprintf("missing %q to close %q", closer, p.src[k:k+2])}
		}
		contentOff := k + 2
		content := p.src[contentOff : contentOff+e]
		p.i = contentOff + e + 2
		p.lastOff = k
		switch kind {
		case '#':
			continue
		case '{':
			lead := len(content) - len(strings.TrimLeft(content, " \t\r\n"))
			expr := strings.TrimSpace(content)
			if expr == "" {
				return nil, "", &posError{off: k, msg: "empty expression in {{ }}"}
			}
			n, err := parseExpr(expr, contentOff+lead)
			if err != nil {
				return nil, "", err
			}
			out = append(out, &outNode{e: n, src: expr, off: contentOff + lead})
			continue
		}
		lead := len(content) - len(strings.TrimLeft(content, " \t\r\n"))
		stmt := strings.TrimSpace(content)
		stmtOff := contentOff + lead
		if stmt == "" {
			return nil, "", &posError{off: k, msg: "empty {% %} statement"}
		}
		op, rest, _ := strings.Cut(stmt, " ")
		if i := strings.IndexAny(op, "\t\r\n"); i >= 0 {
			op, rest = stmt[:i], stmt[i+1:]
		}
		rest = strings.TrimSpace(rest)
		restOff := stmtOff + len(stmt) - len(rest)
		if forbiddenStatements[op] {
			return nil, "", &posError{off: stmtOff, msg: fmt.Sprintf("{%% %s %%} is forbidden in templates", op)}
		}
		switch op {
		case "end", "else", "elif":
			if in == "" {
				return nil, "", &posError{off: stmtOff, msg: fmt.Sprintf("{%% %s %%} outside of a block", op)}
			}
			if op != "end" && in != "if" {
				return nil, "", &posError{off: stmtOff, msg: fmt.Sprintf("{%% %s %%} inside {%% %s %%}: expected {%% end %%}", op, in)}
			}
			if op == "end" && rest != "" {
				return nil, "", &posError{off: stmtOff, msg: "{% end %} takes no arguments"}
			}
			if op == "else" && rest != "" {
				return nil, "", &posError{off: stmtOff, msg: "{% else %} takes no arguments (did you mean {% elif ... %}?)"}
			}
			p.elifOff = restOff
			return out, op + " " + rest, nil
		case "comment":
			continue
		case "if":
			n, err := p.parseIf(rest, restOff, stmtOff)
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		case "for":
			n, err := p.parseFor(rest, restOff, stmtOff)
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		case "while":
			cond, err := p.cond(rest, restOff, "while")
			if err != nil {
				return nil, "", err
			}
			body, end, err := p.parseBody("while")
			if err != nil {
				return nil, "", err
			}
			_ = end
			out = append(out, &whileNode{cond: cond, body: body, off: stmtOff})
		case "set":
			n, err := p.parseSet(rest, restOff, stmtOff)
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		case "break", "continue":
			if rest != "" {
				return nil, "", &posError{off: stmtOff, msg: fmt.Sprintf("{%% %s %%} takes no arguments", op)}
			}
			out = append(out, &loopCtlNode{brk: op == "break", off: stmtOff})
		default:
			return nil, "", &posError{off: stmtOff, msg: fmt.Sprintf("unknown template statement %q: expected if, elif, else, end, for, while, set, break or continue", op)}
		}
	}
}

func (p *tparser) cond(rest string, off int, op string) (node, error) {
	if rest == "" {
		return nil, &posError{off: off, msg: fmt.Sprintf("{%% %s %%} needs a condition", op)}
	}
	return parseExpr(rest, off)
}

func (p *tparser) parseIf(rest string, restOff, stmtOff int) (tnode, error) {
	n := &ifNode{off: stmtOff}
	cond, err := p.cond(rest, restOff, "if")
	if err != nil {
		return nil, err
	}
	for {
		body, end, err := p.parseBody("if")
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		kw, arg, _ := strings.Cut(end, " ")
		switch kw {
		case "end":
			return n, nil
		case "elif":
			if cond, err = p.cond(strings.TrimSpace(arg), p.elifOff, "elif"); err != nil {
				return nil, err
			}
		case "else":
			els, end2, err := p.parseBody("else")
			if err != nil {
				return nil, err
			}
			_ = end2
			n.els = els
			return n, nil
		}
	}
}

func (p *tparser) parseFor(rest string, restOff, stmtOff int) (tnode, error) {
	idx := strings.Index(rest, " in ")
	if idx < 0 {
		return nil, &posError{off: restOff, msg: "expected {% for name in expression %}"}
	}
	lhs := strings.TrimSpace(rest[:idx])
	lhs = strings.TrimSuffix(strings.TrimPrefix(lhs, "("), ")")
	var vars []string
	for _, v := range strings.Split(lhs, ",") {
		v = strings.TrimSpace(v)
		if v == "" && len(vars) > 0 {
			continue
		}
		if !isIdentifier(v) {
			return nil, &posError{off: restOff, msg: fmt.Sprintf("invalid loop variable %q: expected a name", v)}
		}
		vars = append(vars, v)
	}
	iterSrc := rest[idx+4:]
	iterOff := restOff + idx + 4
	lead := len(iterSrc) - len(strings.TrimLeft(iterSrc, " \t\r\n"))
	iter, err := parseExpr(strings.TrimSpace(iterSrc), iterOff+lead)
	if err != nil {
		return nil, err
	}
	body, _, err := p.parseBody("for")
	if err != nil {
		return nil, err
	}
	return &forNode{vars: vars, iter: iter, body: body, off: stmtOff}, nil
}

func (p *tparser) parseSet(rest string, restOff, stmtOff int) (tnode, error) {
	eq := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '=' && (i+1 >= len(rest) || rest[i+1] != '=') && (i == 0 || !strings.ContainsRune("=!<>", rune(rest[i-1]))) {
			eq = i
			break
		}
	}
	if eq < 0 {
		return nil, &posError{off: restOff, msg: "expected {% set name = expression %}"}
	}
	var targets []string
	lhs := strings.TrimSpace(rest[:eq])
	lhs = strings.TrimSuffix(strings.TrimPrefix(lhs, "("), ")")
	for _, v := range strings.Split(lhs, ",") {
		v = strings.TrimSpace(v)
		if !isIdentifier(v) {
			return nil, &posError{off: restOff, msg: fmt.Sprintf("invalid {%% set %%} target %q: expected a name", v)}
		}
		targets = append(targets, v)
	}
	rhs := rest[eq+1:]
	lead := len(rhs) - len(strings.TrimLeft(rhs, " \t\r\n"))
	e, err := parseExpr(strings.TrimSpace(rhs), restOff+eq+1+lead)
	if err != nil {
		return nil, err
	}
	return &setNode{targets: targets, e: e, off: stmtOff}, nil
}

func isIdentifier(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return !strings.HasPrefix(s, "__")
}
