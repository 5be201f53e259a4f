package chsql

import (
	"fmt"
	"strings"
)

// outsideFunctions reach outside the tables a query names from an expression, with why.
var outsideFunctions = map[string]string{
	"file":                "file() reads a file of the server",
	"catboostevaluate":    "catboostEvaluate() loads a model file of the server",
	"modelevaluate":       "modelEvaluate() loads a model of the server",
	"evalmlmethod":        "evalMLMethod() evaluates a model of the server",
	"hascolumnintable":    "hasColumnInTable() looks into any database",
	"getserversetting":    "getServerSetting() reads the server's configuration",
	"getmergetreesetting": "getMergeTreeSetting() reads the server's configuration",
	"getmacro":            "getMacro() reads the server's configuration",
	// The function forms of IN read their second argument as a set, outside the analysis of
	// table references: write x IN t instead.
	"in": "in() as a function reads a table as a set (write x IN t)", "notin": "notIn() reads a table as a set (write x NOT IN t)",
	"globalin": "globalIn() reads a table as a set (write x GLOBAL IN t)", "globalnotin": "globalNotIn() reads a table as a set (write x GLOBAL NOT IN t)",
	"nullin": "nullIn() reads a table as a set (write x IN t)", "notnullin": "notNullIn() reads a table as a set (write x NOT IN t)",
	"globalnullin": "globalNullIn() reads a table as a set", "globalnotnullin": "globalNotNullIn() reads a table as a set",
	"inignoreset": "inIgnoreSet() is internal", "notinignoreset": "notInIgnoreSet() is internal",
	"globalinignoreset": "globalInIgnoreSet() is internal", "globalnotinignoreset": "globalNotInIgnoreSet() is internal",
}

// OutsideFunction says why a call of the (scalar) function name reaches outside the tables a
// query names — files, models, the server's configuration, other databases' metadata, a table
// read as a set — or "" when it does not. Table functions (IsKnownTableFunction), joinGet and
// dictGet are references, which callers check on their own.
func OutsideFunction(name string) string {
	return outsideFunctions[strings.ToLower(name)]
}

// ExprOptions say what an expression may hold besides expression syntax.
type ExprOptions struct {
	// TTL allows the clauses of a table's TTL at the top level: DELETE, WHERE,
	// GROUP BY ... SET ..., RECOMPRESS CODEC(...).
	TTL bool
}

// ColumnRef is an identifier an expression reads as a column. Name is the whole dotted name
// as written (a.b for a nested column or a subcolumn), Parts its components.
type ColumnRef struct {
	Name       string
	Parts      []string
	Start, End int
}

// Expr is an analysed expression (see AnalyzeExpr).
type Expr struct {
	// SQL is the expression normalized (see Normalize): the text to put in a statement,
	// exactly what was analysed.
	SQL string
	// Columns are the identifiers the expression reads as columns, in text order.
	Columns []ColumnRef
	// Functions are the functions it calls.
	Functions []FuncCall
}

// expressionStatementWords start or continue a query: an expression holding one holds a
// subquery or is not an expression.
var expressionStatementWords = map[string]bool{
	"SELECT": true, "WITH": true, "FROM": true, "EXPLAIN": true, "UNION": true,
	"INTERSECT": true, "EXCEPT": true, "JOIN": true, "SETTINGS": true, "FORMAT": true, "INTO": true,
}

// exprKeywords are bare words of expression syntax, never column names.
var exprKeywords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "IS": true, "NULL": true, "TRUE": true, "FALSE": true,
	"CASE": true, "WHEN": true, "THEN": true, "ELSE": true, "END": true, "LIKE": true, "ILIKE": true,
	"BETWEEN": true, "IN": true, "GLOBAL": true, "AS": true, "INTERVAL": true, "DISTINCT": true,
	"NAN": true, "INF": true, "XOR": true,
}

// literalWords are keywords that are literals: followed by '(' they are calls.
var literalWords = map[string]bool{"NULL": true, "TRUE": true, "FALSE": true, "NAN": true, "INF": true}

var intervalUnits = map[string]bool{
	"NANOSECOND": true, "MICROSECOND": true, "MILLISECOND": true, "SECOND": true, "MINUTE": true,
	"HOUR": true, "DAY": true, "WEEK": true, "MONTH": true, "QUARTER": true, "YEAR": true,
	"NANOSECONDS": true, "MICROSECONDS": true, "MILLISECONDS": true, "SECONDS": true, "MINUTES": true,
	"HOURS": true, "DAYS": true, "WEEKS": true, "MONTHS": true, "QUARTERS": true, "YEARS": true,
}

// unitFunctions take a bare interval unit as their first argument: date_add(DAY, 1, d).
var unitFunctions = map[string]bool{
	"date_add": true, "dateadd": true, "date_sub": true, "datesub": true, "timestamp_add": true,
	"timestampadd": true, "timestamp_sub": true, "timestampsub": true, "date_diff": true,
	"datediff": true, "timestamp_diff": true, "timestampdiff": true, "age": true, "extract": true,
}

// ttlWords are the words of TTL clauses.
var ttlWords = map[string]bool{"DELETE": true, "WHERE": true, "GROUP": true, "BY": true, "SET": true, "RECOMPRESS": true}

type exprFrame struct {
	fn      string // lower-case function name before '(' (or "")
	sepUsed bool   // the function's FROM/IN separator was seen
	// typeFrom is the token index after which the frame holds a type (CAST(x AS T)), or -1.
	typeFrom int
}

// AnalyzeExpr analyses one ClickHouse expression — or a comma list of them, such as a table's
// sorting key — of a definition Sluice puts into DDL: a column's DEFAULT, MATERIALIZED, ALIAS
// or EPHEMERAL expression, a key, a TTL, an index expression. Such an expression may only
// compute from its row: it is refused (an *Error at the offending byte) when it holds a
// subquery or another statement's clause, reads a table as a set (x IN t), calls a table
// function, joinGet, dictGet or a function that reaches outside the table (file(), ...), holds
// a query parameter, or does not normalize (nested comments, non-ASCII outside quotes). The
// columns it reads are returned for the caller to check against the table's own.
func AnalyzeExpr(expr string, opts ExprOptions) (*Expr, error) {
	all, err := Lex(expr)
	if err != nil {
		return nil, err
	}
	norm, err := Normalize(expr)
	if err != nil {
		return nil, err
	}
	toks := Significant(all)
	x := &exprScan{toks: toks, opts: opts, out: &Expr{SQL: strings.TrimSpace(norm)}, skip: map[int]bool{}, lambda: map[string]bool{}, alias: map[string]bool{}}
	if err := x.run(); err != nil {
		return nil, err
	}
	// Names declared by lambdas and aliases are not columns.
	cols := x.out.Columns[:0]
	for _, c := range x.out.Columns {
		if len(c.Parts) == 1 && (x.lambda[c.Name] || x.alias[c.Name]) {
			continue
		}
		cols = append(cols, c)
	}
	x.out.Columns = cols
	return x.out, nil
}

type exprScan struct {
	toks   []Token
	opts   ExprOptions
	out    *Expr
	frames []exprFrame
	skip   map[int]bool // token indexes that are not references (units, alias names, types)
	lambda map[string]bool
	alias  map[string]bool
}

func (x *exprScan) tok(i int) Token {
	if i < 0 || i >= len(x.toks) {
		end := 0
		if len(x.toks) > 0 {
			end = x.toks[len(x.toks)-1].End
		}
		return Token{Kind: EOF, Start: end, End: end}
	}
	return x.toks[i]
}

func refusal(t Token, format string, args ...any) *Error {
	return &Error{Offset: t.Start, Msg: fmt.Sprintf(format, args...)}
}

func (x *exprScan) top() *exprFrame {
	if len(x.frames) == 0 {
		return nil
	}
	return &x.frames[len(x.frames)-1]
}

// matching returns the index of the bracket closing the one opened at i.
func (x *exprScan) matching(i int) int {
	depth := 0
	for k := i; k < len(x.toks); k++ {
		switch t := x.toks[k]; {
		case t.is("(") || t.is("["):
			depth++
		case t.is(")") || t.is("]"):
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return len(x.toks)
}

func (x *exprScan) run() error {
	x.declareLambdas()
	for i := 0; i < len(x.toks); i++ {
		t := x.toks[i]
		if f := x.top(); f != nil && f.typeFrom >= 0 && i > f.typeFrom && !t.is(")") {
			// Inside CAST(x AS <type>): the type names no column, but may not hide a query.
			if t.Kind == Ident && expressionStatementWords[t.Upper()] {
				return refusal(t, "%s inside a type: a Data Source's definition holds no query", t.Text)
			}
			if t.is("(") {
				name := -1
				if p := x.tok(i - 1); (p.Kind == Ident || p.Kind == QuotedIdent) && i-1 > f.typeFrom {
					name = i - 1
				}
				if err := x.checkType(name, i); err != nil {
					return err
				}
				x.frames = append(x.frames, exprFrame{typeFrom: -1})
				i = x.skipGroup(i)
			}
			continue
		}
		switch t.Kind {
		case Punct:
			if err := x.punct(i); err != nil {
				return err
			}
			if t.is("::") {
				next, err := x.skipType(i + 1)
				if err != nil {
					return err
				}
				i = next
			}
		case Ident, QuotedIdent:
			next, err := x.word(i)
			if err != nil {
				return err
			}
			i = next
		}
	}
	if len(x.frames) > 0 {
		return &Error{Offset: x.toks[len(x.toks)-1].End, Msg: "unclosed '(' or '['"}
	}
	return nil
}

// skipGroup skips the bracketed group opened at i (a type's arguments), returning the index
// of its closing bracket; the frame pushed for it is popped.
func (x *exprScan) skipGroup(i int) int {
	k := x.matching(i)
	x.frames = x.frames[:len(x.frames)-1]
	if k >= len(x.toks) {
		return len(x.toks) - 1
	}
	return k
}

// skipType skips a type after "::" starting at i; returns the index of its last token. A
// type name that is the name of a refused function is refused (it is no type).
func (x *exprScan) skipType(i int) (int, error) {
	t := x.tok(i)
	if t.Kind != Ident && t.Kind != QuotedIdent {
		return i - 1, nil
	}
	if t.Kind == Ident && expressionStatementWords[t.Upper()] {
		return i, refusal(t, "%s is no type: a Data Source's definition holds no query", t.Text)
	}
	x.skip[i] = true
	if !x.tok(i + 1).is("(") {
		return i, nil
	}
	if err := x.checkType(i, i+1); err != nil {
		return i, err
	}
	x.frames = append(x.frames, exprFrame{typeFrom: -1})
	return x.skipGroup(i + 1), nil
}

// checkType checks a type's bracketed arguments opened at open (name at name, or -1): no
// query word, no call of a refused function, and the bracket closes.
func (x *exprScan) checkType(name, open int) error {
	end := x.matching(open)
	if end >= len(x.toks) {
		return refusal(x.tok(open), "unclosed '('")
	}
	from := open + 1
	if name >= 0 {
		from = name
	}
	for k := from; k < end; k++ {
		u := x.toks[k]
		if u.Kind == Ident && expressionStatementWords[u.Upper()] {
			return refusal(u, "%s inside a type: a Data Source's definition holds no query", u.Text)
		}
		if (u.Kind == Ident || u.Kind == QuotedIdent) && x.tok(k+1).is("(") {
			if err := x.call(k); err != nil {
				return err
			}
			x.out.Functions = x.out.Functions[:len(x.out.Functions)-1]
		}
	}
	return nil
}

func (x *exprScan) punct(i int) error {
	t := x.toks[i]
	switch t.Text {
	case "(", "[":
		fn := ""
		if t.Text == "(" {
			if p := x.tok(i - 1); (p.Kind == Ident || p.Kind == QuotedIdent) && i > 0 && !x.skip[i-1] {
				fn = strings.ToLower(p.Value())
			}
		}
		x.frames = append(x.frames, exprFrame{fn: fn, typeFrom: -1})
	case ")", "]":
		f := x.top()
		if f == nil {
			return refusal(t, "unbalanced %q", t.Text)
		}
		x.frames = x.frames[:len(x.frames)-1]
	case "{", "}":
		return refusal(t, "a query parameter ({name:Type}) cannot stand in a Data Source's definition")
	case ";":
		return refusal(t, "';' ends a statement: a Data Source's definition holds expressions only")
	}
	return nil
}

// word handles an identifier at i and returns the index of the last token it consumed.
func (x *exprScan) word(i int) (int, error) {
	t := x.toks[i]
	if x.skip[i] && !x.tok(i+1).is("(") {
		return i, nil
	}
	upper := t.Upper()
	if t.Kind == Ident && expressionStatementWords[upper] {
		if upper == "FROM" && x.fromSeparator(i) {
			return i, nil
		}
		switch upper {
		case "SELECT", "WITH", "FROM", "EXPLAIN", "UNION", "INTERSECT", "EXCEPT", "JOIN":
			return i, refusal(t, "%s: subqueries are refused in a Data Source's definition (it may only compute from its own columns)", t.Text)
		}
		return i, refusal(t, "%s is not part of an expression", t.Text)
	}
	if t.Kind == Ident {
		switch {
		case upper == "IN":
			return x.in(i)
		case upper == "AS":
			return x.as(i)
		case upper == "INTERVAL":
			x.interval(i)
			return i, nil
		case exprKeywords[upper] && !(literalWords[upper] && x.tok(i+1).is("(")):
			// Also before '(': not(x) and and(a, b) compute from their arguments, CASE (...)
			// and BETWEEN (...) are operators. NULL(...) is the call of a table function.
			return i, nil
		}
	}
	if x.tok(i + 1).is("(") {
		return i, x.call(i)
	}
	if x.tok(i+1).is(".") && (x.tok(i+2).Kind == Ident || x.tok(i+2).Kind == QuotedIdent) {
		// A dotted name: a nested column, a subcolumn or a tuple element.
		ref := ColumnRef{Name: t.Value(), Parts: []string{t.Value()}, Start: t.Start, End: t.End}
		k := i
		for x.tok(k+1).is(".") && (x.tok(k+2).Kind == Ident || x.tok(k+2).Kind == QuotedIdent) {
			k += 2
			if p := x.tok(k); p.Kind == Ident && expressionStatementWords[p.Upper()] {
				// Not a danger as a name, but a query's word in an expression is refused
				// everywhere, so that what is accepted never reads like a subquery.
				return k, refusal(p, "%s: a query's keyword in a dotted name (back-quote the column)", p.Text)
			}
			ref.Parts = append(ref.Parts, x.tok(k).Value())
			ref.End = x.tok(k).End
		}
		if x.tok(k + 1).is("(") {
			return k, refusal(x.tok(k), "%s(): qualified function names are not supported", strings.Join(ref.Parts, "."))
		}
		ref.Name = strings.Join(ref.Parts, ".")
		if t.Kind == Ident && exprKeywords[upper] {
			return k, refusal(t, "%s: a keyword cannot start a dotted name (back-quote the column)", t.Text)
		}
		x.out.Columns = append(x.out.Columns, ref)
		return k, nil
	}
	if t.Kind == QuotedIdent {
		x.column(i)
		return i, nil
	}
	switch {
	case upper == "TO" && x.opts.TTL && len(x.frames) == 0:
		return i, refusal(t, "TTL ... TO DISK or TO VOLUME is refused: which disks hold a table is the server operator's choice")
	case x.opts.TTL && len(x.frames) == 0 && ttlWords[upper]:
		return i, nil
	case (upper == "DATE" || upper == "TIMESTAMP" || upper == "TIME") && x.tok(i+1).Kind == String:
		return i, nil
	case intervalUnits[upper] && x.unitArgument(i):
		return i, nil
	case x.functionKeyword(i):
		return i, nil
	}
	x.column(i)
	return i, nil
}

func (x *exprScan) column(i int) {
	t := x.toks[i]
	x.out.Columns = append(x.out.Columns, ColumnRef{Name: t.Value(), Parts: []string{t.Value()}, Start: t.Start, End: t.End})
}

// call checks the function called at i.
func (x *exprScan) call(i int) error {
	t := x.toks[i]
	name := t.Value()
	lower := strings.ToLower(name)
	x.out.Functions = append(x.out.Functions, FuncCall{Name: name, Start: t.Start, End: t.End})
	switch {
	case OutsideFunction(lower) != "":
		return refusal(t, "%s(): refused, %s", name, OutsideFunction(lower))
	case strings.HasPrefix(lower, "__"):
		return refusal(t, "%s(): internal ClickHouse functions are refused", name)
	case lower == "joinget" || lower == "joingetornull":
		return refusal(t, "%s() reads another table: a Data Source's definition may only compute from its own columns", name)
	case strings.HasPrefix(lower, "dictget") || lower == "dicthas" || lower == "dictisin" || lower == "dictgethierarchy" || lower == "dictgetchildren" || lower == "dictgetdescendants":
		return refusal(t, "%s() reads a dictionary: a Data Source's definition may only compute from its own columns", name)
	case IsKnownTableFunction(lower) && lower != "format":
		return refusal(t, "%s(): table functions are refused in a Data Source's definition (they read files, the network or other tables)", name)
	}
	return nil
}

// in handles IN at i: a table (or a parenthesised table name) on its right is refused, as is
// the function form in(x, t).
func (x *exprScan) in(i int) (int, error) {
	t := x.toks[i]
	if f := x.top(); f != nil && (f.fn == "position" || f.fn == "locate") && !f.sepUsed {
		f.sepUsed = true
		return i, nil
	}
	if x.tok(i+1).is("(") && !x.afterOperand(i) {
		return i, refusal(t, "%s(): refused, %s", t.Text, OutsideFunction("in"))
	}
	j := i + 1
	open := 0
	for x.tok(j + open).is("(") {
		open++
	}
	k := j + open
	n := x.tok(k)
	if n.Kind != Ident && n.Kind != QuotedIdent {
		return i, nil
	}
	if n.Kind == Ident && expressionStatementWords[n.Upper()] {
		return i, nil // refused when the scan reaches it
	}
	end := k + 1
	if x.tok(end).is(".") && (x.tok(end+1).Kind == Ident || x.tok(end+1).Kind == QuotedIdent) {
		end += 2
	}
	if open == 0 && x.tok(end).is("(") {
		return i, nil // IN f(...): a function (table functions are refused as calls)
	}
	for c := 0; c < open; c++ {
		if !x.tok(end + c).is(")") {
			return i, nil // IN (a, b) or IN (expr): a tuple of values
		}
	}
	name := n.Value()
	if end > k+1 {
		name += "." + x.tok(k+2).Value()
	}
	return i, refusal(n, "IN %s reads table %s as a set: a Data Source's definition may only compute from its own columns (write IN (value, ...))", name, name)
}

// afterOperand reports whether IN at i follows an operand (x IN ...), as opposed to starting
// an expression (in(x, t)).
func (x *exprScan) afterOperand(i int) bool {
	j := i - 1
	for j >= 0 && (x.toks[j].Upper() == "NOT" || x.toks[j].Upper() == "GLOBAL") {
		j--
	}
	if j < 0 {
		return false
	}
	p := x.toks[j]
	switch p.Kind {
	case Ident:
		return !exprKeywords[p.Upper()] || p.Upper() == "NULL" || p.Upper() == "TRUE" || p.Upper() == "FALSE"
	case QuotedIdent, String, Number:
		return true
	}
	return p.is(")") || p.is("]")
}

// as handles AS at i: in CAST(x AS T) the rest of the call is a type; elsewhere it names an
// alias.
func (x *exprScan) as(i int) (int, error) {
	if f := x.top(); f != nil && (f.fn == "cast" || f.fn == "_cast") && f.typeFrom < 0 {
		f.typeFrom = i
		return i, nil
	}
	n := x.tok(i + 1)
	if (n.Kind == QuotedIdent || n.Kind == Ident && !expressionStatementWords[n.Upper()]) && !x.tok(i+2).is("(") {
		x.alias[n.Value()] = true
		x.skip[i+1] = true
	}
	return i, nil
}

// interval marks the unit of INTERVAL <operand> <unit> at i.
func (x *exprScan) interval(i int) {
	j := i + 1
	switch o := x.tok(j); {
	case o.is("("):
		j = x.matching(j)
	case o.is("-") || o.is("+"):
		j++
	}
	if u := x.tok(j + 1); u.Kind == Ident && intervalUnits[u.Upper()] {
		x.skip[j+1] = true
	}
}

// unitArgument reports whether the unit word at i is the first argument of a function that
// takes one (date_add(DAY, 1, d), extract(DAY FROM d)).
func (x *exprScan) unitArgument(i int) bool {
	f := x.top()
	return f != nil && unitFunctions[f.fn] && x.tok(i-1).is("(") && (x.tok(i+1).is(",") || x.tok(i+1).Upper() == "FROM")
}

// functionKeyword reports the keywords of special function syntax at i: trim(BOTH ' ' FROM
// s), substring(s FROM 1 FOR 2).
func (x *exprScan) functionKeyword(i int) bool {
	f := x.top()
	if f == nil {
		return false
	}
	switch u := x.toks[i].Upper(); f.fn {
	case "trim":
		return u == "BOTH" || u == "LEADING" || u == "TRAILING"
	case "substring", "substr":
		return u == "FOR"
	}
	return false
}

// fromSeparator reports whether FROM at i is the separator of extract/substring/trim/overlay
// directly enclosing it, or part of IS [NOT] DISTINCT FROM.
func (x *exprScan) fromSeparator(i int) bool {
	if x.tok(i-1).Upper() == "DISTINCT" && (x.tok(i-2).Upper() == "IS" || x.tok(i-2).Upper() == "NOT") {
		return true
	}
	f := x.top()
	if f == nil || f.sepUsed {
		return false
	}
	switch f.fn {
	case "extract", "substring", "substr", "trim", "overlay":
		f.sepUsed = true
		return true
	}
	return false
}

// declareLambdas records lambda parameters (x -> ..., (x, y) -> ...) and marks their tokens.
func (x *exprScan) declareLambdas() {
	for k, t := range x.toks {
		if !t.is("->") || k == 0 {
			continue
		}
		p := x.toks[k-1]
		if p.Kind == Ident || p.Kind == QuotedIdent {
			x.lambda[p.Value()] = true
			x.skip[k-1] = true
			continue
		}
		if !p.is(")") {
			continue
		}
		for j := k - 2; j >= 0; j-- {
			q := x.toks[j]
			if q.is("(") {
				break
			}
			if q.Kind == Ident || q.Kind == QuotedIdent {
				x.lambda[q.Value()] = true
				x.skip[j] = true
			}
		}
	}
}
