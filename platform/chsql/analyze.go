package chsql

import (
	"fmt"
	"sort"
	"strings"
)

// RefKind is what a reference points at.
type RefKind int

const (
	// RefTable is a table (or view, or Data Source) name.
	RefTable RefKind = iota
	// RefNode is a name matching an earlier node of the pipe.
	RefNode
	// RefTableFunction is a table function call such as numbers(10) or
	// file('...'); Name is the function name, Args its argument text.
	RefTableFunction
	// RefJoinGet is the table named by joinGet's first argument.
	RefJoinGet
	// RefDictionary is the dictionary named by a dictGet*/dictHas first argument.
	RefDictionary
	// RefDatabase is a database named by SHOW ... FROM db.
	RefDatabase
	// RefQueryParameter is a {name:Type} query parameter used as a table name.
	RefQueryParameter
	// RefOutfile is an INTO OUTFILE clause (writes a file).
	RefOutfile
)

func (k RefKind) String() string {
	return [...]string{"table", "node", "table function", "joinGet table", "dictionary", "database", "query parameter", "outfile"}[k]
}

// TableRef is one reference found in a query.
type TableRef struct {
	Kind RefKind
	// Database is the explicit database ("" when unqualified).
	Database string
	// Name is the table, node, function or dictionary name (unquoted).
	Name string
	// Alias is the explicit alias, if any.
	Alias string
	// Start and End delimit the text Qualify replaces: the (possibly
	// qualified) name, the whole table function call, or the string literal
	// naming a joinGet table or a dictionary.
	Start, End int
	// Args is a table function's argument text.
	Args string
	// Context is where the reference stands: FROM, JOIN, IN, INTO, DESCRIBE,
	// SHOW, joinGet, dictGet.
	Context string
	// Depth is the parenthesis depth of the reference (0 = outermost query).
	Depth int
	// CanAlias reports whether an alias may follow the reference (FROM and
	// JOIN), so a replacement may carry " AS name".
	CanAlias bool
	// Quoted reports whether the name was written as a string literal
	// (joinGet/dictGet), so a replacement must be a string literal too.
	Quoted bool
	// Dynamic reports a joinGet/dictGet whose first argument is an
	// expression rather than a name: Name is empty and the table cannot be
	// known before the query runs.
	Dynamic bool
}

// EffectiveAlias is the name column references use for this table: the
// explicit alias, or else the table name.
func (r TableRef) EffectiveAlias() string {
	if r.Alias != "" {
		return r.Alias
	}
	return r.Name
}

// QualifiedName is `db`.`name` as SQL text.
func (r TableRef) QualifiedName(db string) string {
	return QuoteIdent(db) + "." + QuoteIdent(r.Name)
}

// Qualified returns replacement text naming the reference in database db,
// keeping column references like name.col working by aliasing it to its
// original name when it has no explicit alias.
func (r TableRef) Qualified(db string) string {
	if r.Quoted {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db+"."+r.Name) + "'"
	}
	s := r.QualifiedName(db)
	if r.CanAlias && r.Alias == "" {
		s += " AS " + QuoteIdent(r.Name)
	}
	return s
}

// Subquery returns replacement text that reads from the given SELECT
// instead, aliased so that column references keep working.
func (r TableRef) Subquery(selectSQL string) string {
	s := "(" + selectSQL + ")"
	if r.CanAlias && r.Alias == "" {
		s += " AS " + QuoteIdent(r.EffectiveAlias())
	}
	return s
}

// FromClause records one FROM clause, for finding the left-most table.
type FromClause struct {
	Offset int
	Depth  int
	// First is the index in Analysis.Refs of the clause's first table
	// reference, or -1 when it starts with a subquery.
	First int
	// SubStart and SubEnd delimit the subquery when the clause starts with
	// one (-1 otherwise).
	SubStart, SubEnd int
	// CTE is the CTE name when the clause starts with a CTE reference.
	CTE string
}

// FuncCall is a function call outside table positions (e.g. file(...) used
// as a scalar function), for callers that deny-list functions.
type FuncCall struct {
	Name       string
	Start, End int // the name's offsets
}

// CTE is a common table expression defined with WITH name AS (SELECT ...).
type CTE struct {
	Name               string
	BodyStart, BodyEnd int
	Depth              int
}

// Analysis is the result of Analyze.
type Analysis struct {
	SQL  string
	Refs []TableRef
	// CTEs are the WITH name AS (...) definitions.
	CTEs []CTE
	// CTERefs are references that resolved to a CTE in scope.
	CTERefs []TableRef
	Froms   []FromClause
	// Functions are the function calls found outside table positions.
	Functions []FuncCall
	Kind      StatementKind
	// Statements is the number of non-empty statements.
	Statements int
	// Settings are the settings named by SETTINGS clauses, at any depth.
	Settings []Setting
	// Formats are FORMAT clauses (the name of the output format).
	Formats []FuncCall
}

// Setting is one "name = value" of a SETTINGS clause; Name is "" when the
// clause could not be read as such a list.
type Setting struct {
	Name       string
	Start, End int
}

// Tables returns the RefTable references.
func (a *Analysis) Tables() []TableRef { return a.filter(RefTable) }

// Nodes returns the RefNode references.
func (a *Analysis) Nodes() []TableRef { return a.filter(RefNode) }

// TableFunctions returns the RefTableFunction references.
func (a *Analysis) TableFunctions() []TableRef { return a.filter(RefTableFunction) }

func (a *Analysis) filter(k RefKind) []TableRef {
	var out []TableRef
	for _, r := range a.Refs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// Dependencies returns the distinct names of tables (db.name when
// qualified) and nodes the query reads, sorted.
func (a *Analysis) Dependencies() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range a.Refs {
		if r.Kind != RefTable && r.Kind != RefNode && r.Kind != RefJoinGet {
			continue
		}
		n := r.Name
		if r.Database != "" {
			n = r.Database + "." + n
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// LeftTable returns the left-most table of the outermost query — the table
// whose inserts trigger a materialized view — following subqueries and CTEs
// in the first FROM position.
func (a *Analysis) LeftTable() (TableRef, bool) {
	lo, hi, depth := 0, len(a.SQL)+1, 0
	for guard := 0; guard < 64; guard++ {
		best := -1
		for i, f := range a.Froms {
			if f.Offset < lo || f.Offset >= hi || f.Depth != depth {
				continue
			}
			if best < 0 || f.Offset < a.Froms[best].Offset {
				best = i
			}
		}
		if best < 0 {
			return TableRef{}, false
		}
		f := a.Froms[best]
		switch {
		case f.First >= 0:
			return a.Refs[f.First], true
		case f.CTE != "":
			found := false
			for _, c := range a.CTEs {
				if c.Name == f.CTE && c.BodyEnd <= f.Offset {
					lo, hi, depth, found = c.BodyStart, c.BodyEnd, c.Depth+1, true
				}
			}
			if !found {
				return TableRef{}, false
			}
		case f.SubStart >= 0:
			lo, hi, depth = f.SubStart, f.SubEnd, depth+1
		default:
			return TableRef{}, false
		}
	}
	return TableRef{}, false
}

// keywords that cannot be an implicit alias after a table expression.
var notAlias = map[string]bool{
	"WHERE": true, "PREWHERE": true, "GROUP": true, "ORDER": true, "LIMIT": true, "HAVING": true,
	"JOIN": true, "LEFT": true, "RIGHT": true, "INNER": true, "OUTER": true, "FULL": true, "CROSS": true,
	"ANY": true, "ALL": true, "ASOF": true, "SEMI": true, "ANTI": true, "ARRAY": true, "GLOBAL": true,
	"ON": true, "USING": true, "UNION": true, "EXCEPT": true, "INTERSECT": true, "FINAL": true,
	"SAMPLE": true, "SETTINGS": true, "FORMAT": true, "WINDOW": true, "QUALIFY": true, "INTO": true,
	"AS": true, "PASTE": true, "OFFSET": true, "FETCH": true, "WITH": true, "SELECT": true,
	"FROM": true, "LOCAL": true, "NATURAL": true, "INTERPOLATE": true, "PARALLEL": true,
}

// functions whose special syntax uses FROM or IN as a separator:
// extract(DAY FROM d), substring(s FROM 1 FOR 2), trim(BOTH ' ' FROM s),
// position(needle IN haystack). Only the first such keyword directly inside
// their parentheses is a separator; any other is analysed normally.
var exprFromFunctions = map[string]string{
	"extract": "FROM", "substring": "FROM", "substr": "FROM", "trim": "FROM",
	"overlay": "FROM", "position": "IN", "locate": "IN",
}

// tableFunctionsInExpr are table functions recognised after IN even though a
// name followed by '(' after IN is normally an ordinary function.
var knownTableFunctions = map[string]bool{
	"file": true, "url": true, "urlcluster": true, "s3": true, "s3cluster": true, "gcs": true,
	"remote": true, "remotesecure": true, "cluster": true, "clusterallreplicas": true,
	"mysql": true, "postgresql": true, "odbc": true, "jdbc": true, "hdfs": true, "hdfscluster": true,
	"executable": true, "input": true, "azureblobstorage": true, "azureblobstoragecluster": true,
	"iceberg": true, "icebergs3": true, "icebergazure": true, "iceberghdfs": true, "deltalake": true,
	"hudi": true, "mongodb": true, "redis": true, "sqlite": true, "merge": true, "dictionary": true,
	"view": true, "viewifpermitted": true, "loop": true, "fuzzjson": true, "filecluster": true,
	"format": true, "numbers": true, "numbers_mt": true, "zeros": true, "zeros_mt": true,
	"generaterandom": true, "values": true, "null": true, "generate_series": true, "generateseries": true,
	"primes": true, "mergetreeindex": true, "mergetreeprojection": true,
	// The rest of chDB 26.7's system.table_functions.
	"sqlstandardvalues": true, "arrowstream": true, "cosn": true, "deltalakeazure": true,
	"deltalakeazurecluster": true, "deltalakecluster": true, "deltalakelocal": true, "deltalakes3": true,
	"deltalakes3cluster": true, "eval": true, "filesystem": true, "fuzzquery": true, "hudicluster": true,
	"icebergazurecluster": true, "icebergcluster": true, "iceberghdfscluster": true, "iceberglocal": true,
	"iceberglocalcluster": true, "icebergs3cluster": true, "mergetreeanalyzeindexes": true,
	"mergetreeanalyzeindexesuuid": true, "mergetreetextindex": true, "oss": true, "paimon": true,
	"paimonazure": true, "paimonazurecluster": true, "paimoncluster": true, "paimonhdfs": true,
	"paimonhdfscluster": true, "paimonlocal": true, "paimons3": true, "paimons3cluster": true,
	"prometheusquery": true, "prometheusqueryrange": true, "timeseriesdata": true, "timeseriesmetrics": true,
	"timeseriessamples": true, "timeseriesselector": true, "timeseriestags": true, "viewexplain": true,
	"ytsaurus": true,
	// ClickHouse 18.16's.
	"catboostpool": true, "shardbyhash": true,
}

// IsKnownTableFunction reports whether name is a ClickHouse table function
// this package knows (case-insensitive).
func IsKnownTableFunction(name string) bool { return knownTableFunctions[strings.ToLower(name)] }

type parenFrame struct {
	fn    string // lower-case name of the function before '(' (or "")
	start int    // token index of '('
	// sepUsed records that the function's FROM/IN separator was seen.
	sepUsed bool
}

type cteScope struct {
	depth int
	names map[string]int // name -> index in Analysis.CTEs
}

type pendingCTE struct {
	name      string
	bodyDepth int // depth inside the body's parentheses
	bodyStart int
	withDepth int
	// index is the CTE's entry in Analysis.CTEs when it was defined before its body (WITH
	// RECURSIVE: the body reads the CTE itself), else -1.
	index int
}

type analyzer struct {
	sql     string
	toks    []Token
	nodes   map[string]bool
	a       *Analysis
	parens  []parenFrame
	scopes  []cteScope
	pending []pendingCTE
	// withDepth is the depth of an open WITH list, or -1.
	withDepth int
	withItem  bool // the next token starts a WITH item
	// withRecursive: the open WITH list is WITH RECURSIVE.
	withRecursive bool
	claimed       map[int]bool
	// lastCTE is the CTE name the last tableExpr resolved to.
	lastCTE       string
	seenShowTable bool
}

// Analyze finds the references in sql (a rendered query, one or more
// statements). nodes are the names of earlier nodes of the pipe; a matching
// unqualified name is reported as RefNode.
func Analyze(sql string, nodes map[string]bool) (*Analysis, error) {
	all, err := Lex(sql)
	if err != nil {
		return nil, err
	}
	toks := Significant(all)
	an := &analyzer{sql: sql, toks: toks, nodes: nodes, a: &Analysis{SQL: sql}, withDepth: -1, claimed: map[int]bool{}}
	an.a.Kind, an.a.Statements = classifyTokens(toks)
	if err := an.run(); err != nil {
		return nil, err
	}
	// Refs are reported in text order; FromClause.First follows the sort.
	starts := make([]int, len(an.a.Froms))
	for i, f := range an.a.Froms {
		starts[i] = -1
		if f.First >= 0 {
			starts[i] = an.a.Refs[f.First].Start
		}
	}
	sort.SliceStable(an.a.Refs, func(i, j int) bool { return an.a.Refs[i].Start < an.a.Refs[j].Start })
	for i := range an.a.Froms {
		if starts[i] < 0 {
			continue
		}
		for k, r := range an.a.Refs {
			if r.Start == starts[i] {
				an.a.Froms[i].First = k
				break
			}
		}
	}
	return an.a, nil
}

func (an *analyzer) tok(i int) Token {
	if i < 0 || i >= len(an.toks) {
		return Token{Kind: EOF, Start: len(an.sql), End: len(an.sql)}
	}
	return an.toks[i]
}

func (an *analyzer) depth() int { return len(an.parens) }

// separatorKeyword reports whether keyword kw (FROM or IN) is the special
// separator of the function whose parentheses directly enclose it.
func (an *analyzer) separatorKeyword(kw string) bool {
	if len(an.parens) == 0 {
		return false
	}
	f := &an.parens[len(an.parens)-1]
	if exprFromFunctions[f.fn] != kw || f.sepUsed {
		return false
	}
	f.sepUsed = true
	return true
}

func (an *analyzer) isCTE(name string) (int, bool) {
	for i := len(an.scopes) - 1; i >= 0; i-- {
		if idx, ok := an.scopes[i].names[name]; ok {
			return idx, true
		}
	}
	return 0, false
}

func (an *analyzer) closeScopes(depth int) {
	for len(an.scopes) > 0 && an.scopes[len(an.scopes)-1].depth >= depth {
		an.scopes = an.scopes[:len(an.scopes)-1]
	}
}

func (an *analyzer) addRef(r TableRef) int {
	r.Depth = an.depth()
	an.a.Refs = append(an.a.Refs, r)
	return len(an.a.Refs) - 1
}

func (an *analyzer) run() error {
	for i := 0; i < len(an.toks); i++ {
		t := an.toks[i]
		if t.Kind == Punct {
			switch t.Text {
			case "(":
				fn := ""
				if p := an.tok(i - 1); (p.Kind == Ident || p.Kind == QuotedIdent) && i > 0 {
					fn = strings.ToLower(p.Value())
				}
				an.parens = append(an.parens, parenFrame{fn: fn, start: i})
			case ")":
				if len(an.parens) == 0 {
					return &Error{Offset: t.Start, Msg: "unbalanced ')'"}
				}
				an.parens = an.parens[:len(an.parens)-1]
				d := an.depth()
				an.closeScopes(d + 1)
				// A CTE body closed: its name becomes visible.
				for len(an.pending) > 0 {
					p := an.pending[len(an.pending)-1]
					if p.bodyDepth != d+1 {
						break
					}
					an.pending = an.pending[:len(an.pending)-1]
					if p.index >= 0 {
						an.a.CTEs[p.index].BodyEnd = t.End
						continue
					}
					an.a.CTEs = append(an.a.CTEs, CTE{Name: p.name, BodyStart: p.bodyStart, BodyEnd: t.End, Depth: p.withDepth})
					an.defineCTE(p.withDepth, p.name, len(an.a.CTEs)-1)
				}
				if an.withDepth > d {
					an.withDepth = -1
				}
			case ",":
				if an.withDepth == an.depth() {
					an.withItem = true
					continue
				}
			case ";":
				an.scopes = nil
				an.withDepth = -1
			}
			if an.withItem {
				an.withItem = false
			}
			continue
		}
		if an.withItem && an.withDepth == an.depth() {
			if t.Kind == Ident && t.Upper() == "RECURSIVE" && an.tok(i-1).Upper() == "WITH" {
				an.withRecursive = true
				continue
			}
			an.withItem = false
			// WITH name AS (subquery) defines a CTE. A recursive one is visible in its own body.
			if (t.Kind == Ident || t.Kind == QuotedIdent) && an.tok(i+1).Upper() == "AS" && an.tok(i+2).is("(") {
				p := pendingCTE{name: t.Value(), bodyDepth: an.depth() + 1, bodyStart: an.tok(i + 2).Start, withDepth: an.depth(), index: -1}
				if an.withRecursive {
					an.a.CTEs = append(an.a.CTEs, CTE{Name: p.name, BodyStart: p.bodyStart, BodyEnd: p.bodyStart, Depth: p.withDepth})
					p.index = len(an.a.CTEs) - 1
					an.defineCTE(p.withDepth, p.name, p.index)
				}
				an.pending = append(an.pending, p)
			}
		}
		if t.Kind == QuotedIdent && an.tok(i+1).is("(") && !an.claimed[i] {
			// `file`('x') is a call of file too.
			an.a.Functions = append(an.a.Functions, FuncCall{Name: t.Value(), Start: t.Start, End: t.End})
			an.functionArgRef(i)
			continue
		}
		if t.Kind != Ident {
			continue
		}
		switch t.Upper() {
		case "SETTINGS":
			if n := an.tok(i + 1); (n.Kind == Ident || n.Kind == QuotedIdent) && !an.tok(i+1).is("(") {
				an.settings(i)
				continue
			}
		case "FORMAT":
			if an.formatClause(i) {
				continue
			}
		}
		switch t.Upper() {
		case "WITH":
			switch an.tok(i + 1).Upper() {
			case "TOTALS", "ROLLUP", "CUBE", "FILL", "TIES":
				continue
			}
			an.withDepth = an.depth()
			an.withItem = true
			an.withRecursive = false
		case "SELECT":
			if an.withDepth == an.depth() {
				an.withDepth = -1
			}
		case "UNION", "EXCEPT", "INTERSECT":
			an.closeScopes(an.depth())
		case "FROM":
			if (an.tok(i-1).Upper() == "DISTINCT" && (an.tok(i-2).Upper() == "IS" || an.tok(i-2).Upper() == "NOT")) || an.separatorKeyword("FROM") || an.fillFrom(i) {
				continue
			}
			if an.a.Kind == KindShow {
				an.showFrom(i)
				continue
			}
			an.fromClause(i)
		case "JOIN":
			if an.tok(i-1).Upper() == "ARRAY" {
				continue
			}
			an.tableExpr(i+1, "JOIN", true)
		case "IN":
			if an.separatorKeyword("IN") {
				continue
			}
			if an.tok(i+1).is("(") && !an.afterOperand(i) {
				// in(x, db.t): the function form of IN, whose set is its second argument.
				an.a.Functions = append(an.a.Functions, FuncCall{Name: t.Text, Start: t.Start, End: t.End})
				continue
			}
			if an.a.Kind == KindShow {
				an.showFrom(i)
				continue
			}
			an.inTarget(i + 1)
		case "INTO":
			an.into(i + 1)
		case "DESCRIBE", "DESC":
			if i == an.statementStart(i) || an.tok(i-1).Upper() == "EXPLAIN" {
				j := i + 1
				if an.tok(j).Upper() == "TABLE" {
					j++
				}
				an.tableExpr(j, "DESCRIBE", false)
			}
		case "EXISTS":
			if i == an.statementStart(i) {
				j := i + 1
				if u := an.tok(j).Upper(); u == "TABLE" || u == "DICTIONARY" || u == "VIEW" || u == "TEMPORARY" {
					j++
				}
				an.tableExpr(j, "EXISTS", false)
			}
		case "CREATE":
			if an.a.Kind == KindShow && an.tok(i-1).Upper() == "SHOW" {
				j := i + 1
				if an.tok(j).Upper() == "TEMPORARY" {
					j++
				}
				switch an.tok(j).Upper() {
				case "DATABASE":
					if n := an.tok(j + 1); n.Kind == Ident || n.Kind == QuotedIdent {
						an.addRef(TableRef{Kind: RefDatabase, Name: n.Value(), Start: n.Start, End: n.End, Context: "SHOW"})
						an.claimed[j+1] = true
					}
					continue
				case "TABLE", "DICTIONARY", "VIEW":
					j++
				}
				an.tableExpr(j, "SHOW", false)
			}
		default:
			if an.tok(i+1).is("(") && !an.claimed[i] {
				an.a.Functions = append(an.a.Functions, FuncCall{Name: t.Text, Start: t.Start, End: t.End})
				an.functionArgRef(i)
			}
		}
	}
	if len(an.parens) > 0 {
		return &Error{Offset: an.toks[an.parens[len(an.parens)-1].start].Start, Msg: "unclosed '('"}
	}
	return nil
}

// exprStart are keywords after which an expression starts, so that a following IN( is the
// function in() rather than the operator.
var exprStart = map[string]bool{
	"SELECT": true, "WHERE": true, "PREWHERE": true, "HAVING": true, "AND": true, "OR": true,
	"ON": true, "WHEN": true, "THEN": true, "ELSE": true, "CASE": true, "BY": true, "DISTINCT": true,
	"LIMIT": true, "OFFSET": true, "QUALIFY": true, "XOR": true, "IF": true, "ALL": true,
	"INTERVAL": true, "ARRAY": true, "SETTINGS": true, "WITH": true, "USING": true,
}

// afterOperand reports whether the IN at i follows an operand (x IN ..., x NOT IN ...,
// x GLOBAL IN ...), as opposed to starting an expression (SELECT in(x, t)).
func (an *analyzer) afterOperand(i int) bool {
	j := i - 1
	for j >= 0 && (an.toks[j].Upper() == "NOT" || an.toks[j].Upper() == "GLOBAL") {
		j--
	}
	if j < 0 {
		return false
	}
	p := an.toks[j]
	switch p.Kind {
	case Ident:
		return !exprStart[p.Upper()]
	case QuotedIdent, String, Number:
		return true
	}
	return p.is(")") || p.is("]") || p.is("}")
}

func (an *analyzer) defineCTE(depth int, name string, idx int) {
	if len(an.scopes) == 0 || an.scopes[len(an.scopes)-1].depth != depth {
		an.scopes = append(an.scopes, cteScope{depth: depth, names: map[string]int{}})
	}
	an.scopes[len(an.scopes)-1].names[name] = idx
}

// fillFrom reports whether the FROM at i starts the range of ORDER BY ... WITH FILL FROM x TO y
// (an expression, not a table): going back at the same depth, WITH FILL comes before anything
// that starts another clause or ORDER BY item.
func (an *analyzer) fillFrom(i int) bool {
	for j := i - 1; j >= 0; j-- {
		t := an.toks[j]
		switch {
		case t.is(")"):
			depth := 0
			for ; j >= 0; j-- {
				if an.toks[j].is(")") {
					depth++
				} else if an.toks[j].is("(") {
					if depth--; depth == 0 {
						break
					}
				}
			}
			continue
		case t.is("(") || t.is(",") || t.is(";"):
			return false
		case t.Kind != Ident:
			continue
		}
		switch t.Upper() {
		case "FILL":
			return an.tok(j-1).Upper() == "WITH"
		case "SELECT", "FROM", "WHERE", "PREWHERE", "HAVING", "JOIN", "ON", "USING", "UNION", "LIMIT", "GROUP", "BY", "SETTINGS":
			return false
		}
	}
	return false
}

// statementStart returns the index of the first token of the statement that
// contains token i.
func (an *analyzer) statementStart(i int) int {
	for j := i - 1; j >= 0; j-- {
		if an.toks[j].is(";") {
			return j + 1
		}
	}
	return 0
}

// fromClause handles FROM: a comma-separated list of table expressions.
func (an *analyzer) fromClause(i int) {
	fc := FromClause{Offset: an.toks[i].Start, Depth: an.depth(), First: -1, SubStart: -1, SubEnd: -1}
	j := i + 1
	first := true
	for {
		if an.tok(j).is("(") {
			k := an.matchParen(j)
			if first {
				fc.SubStart, fc.SubEnd = an.tok(j).Start, an.tok(k).End
				an.a.Froms = append(an.a.Froms, fc)
				first = false
			}
			sub := TableRef{CanAlias: true}
			next := an.alias(k+1, &sub)
			if !an.tok(next).is(",") {
				return
			}
			j = next + 1
			continue
		}
		an.lastCTE = ""
		idx, next := an.tableExpr(j, "FROM", true)
		if first {
			if idx >= 0 {
				fc.First = idx
			} else {
				fc.CTE = an.lastCTE
			}
			an.a.Froms = append(an.a.Froms, fc)
			first = false
		}
		if next < 0 || !an.tok(next).is(",") {
			return
		}
		j = next + 1
	}
}

func (an *analyzer) matchParen(j int) int {
	depth := 0
	for k := j; k < len(an.toks); k++ {
		switch {
		case an.toks[k].is("("):
			depth++
		case an.toks[k].is(")"):
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return len(an.toks) - 1
}

// tableExpr parses a table expression at j: a (possibly qualified) name, a
// table function call, or a subquery (left to the main scan). It returns the
// index of the reference added (or -1) and the index of the first token
// after the expression and its alias (or -1 when it did not recognise one).
func (an *analyzer) tableExpr(j int, ctx string, canAlias bool) (int, int) {
	t := an.tok(j)
	if an.claimed[j] {
		return -1, -1
	}
	switch {
	case t.is("("):
		return -1, -1
	case t.is("{"):
		k := j
		for k < len(an.toks) && !an.toks[k].is("}") {
			k++
		}
		end := an.tok(k).End
		idx := an.addRef(TableRef{Kind: RefQueryParameter, Name: an.sql[t.Start:end], Start: t.Start, End: end, Context: ctx})
		return idx, k + 1
	case t.Kind == Ident && (t.Upper() == "SELECT" || t.Upper() == "WITH"):
		return -1, -1
	case t.Kind != Ident && t.Kind != QuotedIdent:
		return -1, -1
	}
	an.claimed[j] = true
	// Table function: name(...).
	if an.tok(j + 1).is("(") {
		k := an.matchParen(j + 1)
		args := ""
		if k > j+1 {
			args = an.sql[an.tok(j+1).End:an.tok(k).Start]
		}
		ref := TableRef{Kind: RefTableFunction, Name: t.Value(), Start: t.Start, End: an.tok(k).End, Args: strings.TrimSpace(args), Context: ctx, CanAlias: canAlias}
		next := an.alias(k+1, &ref)
		return an.addRef(ref), next
	}
	ref := TableRef{Kind: RefTable, Name: t.Value(), Start: t.Start, End: t.End, Context: ctx, CanAlias: canAlias}
	k := j + 1
	if an.tok(k).is(".") && (an.tok(k+1).Kind == Ident || an.tok(k+1).Kind == QuotedIdent) {
		ref.Database = ref.Name
		ref.Name = an.tok(k + 1).Value()
		ref.End = an.tok(k + 1).End
		an.claimed[k+1] = true
		k += 2
	}
	next := an.alias(k, &ref)
	if ref.Database == "" {
		if _, ok := an.isCTE(ref.Name); ok {
			an.lastCTE = ref.Name
			ref.Depth = an.depth()
			an.a.CTERefs = append(an.a.CTERefs, ref)
			return -1, next
		}
		if an.nodes[ref.Name] {
			ref.Kind = RefNode
		}
	}
	return an.addRef(ref), next
}

// alias consumes FINAL, [AS] alias and SAMPLE after a table expression.
func (an *analyzer) alias(k int, ref *TableRef) int {
	if !ref.CanAlias {
		return k
	}
	for {
		t := an.tok(k)
		u := t.Upper()
		switch {
		case u == "FINAL":
			k++
		case u == "AS":
			if n := an.tok(k + 1); n.Kind == Ident || n.Kind == QuotedIdent {
				ref.Alias = n.Value()
				an.claimed[k+1] = true
				k += 2
			} else {
				return k
			}
		case u == "SAMPLE":
			k++
			for {
				n := an.tok(k)
				if n.Kind == Number || n.is("/") || n.Upper() == "OFFSET" {
					k++
					continue
				}
				break
			}
		case (t.Kind == Ident && !notAlias[u]) || t.Kind == QuotedIdent:
			if ref.Alias != "" {
				return k
			}
			ref.Alias = t.Value()
			an.claimed[k] = true
			k++
		case t.is("(") && ref.Alias != "":
			// A column list after the alias, AS a(x, y): skip it, so that what
			// follows (", other_table") is still read as part of the FROM list.
			k = an.matchParen(k) + 1
		default:
			return k
		}
	}
}

// inTarget handles "IN name" / "IN db.name" (a table used as a set), also
// when parenthesised: ClickHouse reads "IN (name)" and "IN ((db.name))" as
// the same identifier.
func (an *analyzer) inTarget(j int) {
	open := 0
	for an.tok(j + open).is("(") {
		open++
	}
	if open > 0 {
		k := j + open
		if n := an.tok(k); n.Kind != Ident && n.Kind != QuotedIdent {
			return
		}
		end := k + 1
		if an.tok(end).is(".") && (an.tok(end+1).Kind == Ident || an.tok(end+1).Kind == QuotedIdent) {
			end += 2
		}
		for c := 0; c < open; c++ {
			if !an.tok(end + c).is(")") {
				return
			}
		}
		if u := an.tok(k).Upper(); u == "SELECT" || u == "WITH" {
			return
		}
		an.tableExpr(k, "IN", false)
		return
	}
	t := an.tok(j)
	if t.Kind != Ident && t.Kind != QuotedIdent {
		return
	}
	if an.tok(j + 1).is("(") {
		if t.Kind == Ident && IsKnownTableFunction(t.Text) {
			an.tableExpr(j, "IN", false)
		}
		return
	}
	if t.Kind == Ident {
		switch t.Upper() {
		case "SELECT", "WITH":
			return
		}
	}
	an.tableExpr(j, "IN", false)
}

func (an *analyzer) into(j int) {
	t := an.tok(j)
	switch t.Upper() {
	case "OUTFILE":
		end := an.tok(j + 1).End
		an.addRef(TableRef{Kind: RefOutfile, Name: an.tok(j + 1).Value(), Start: t.Start, End: end, Context: "INTO"})
		return
	case "TABLE":
		j++
	case "FUNCTION":
		j++
	}
	an.tableExpr(j, "INTO", false)
}

func (an *analyzer) showFrom(i int) {
	// SHOW COLUMNS FROM table [FROM db]: the first FROM names a table.
	start := an.statementStart(i)
	if u := an.tok(start + 1).Upper(); (u == "COLUMNS" || u == "FIELDS" || u == "FULL") && !an.seenShowTable {
		an.seenShowTable = true
		an.tableExpr(i+1, "SHOW", false)
		return
	}
	n := an.tok(i + 1)
	if n.Kind == Ident || n.Kind == QuotedIdent {
		an.claimed[i+1] = true
		an.addRef(TableRef{Kind: RefDatabase, Name: n.Value(), Start: n.Start, End: n.End, Context: "SHOW"})
	}
}

// functionArgRef reports the table/dictionary named by the first argument of
// joinGet and dictGet-style functions.
func (an *analyzer) functionArgRef(i int) {
	name := strings.ToLower(an.toks[i].Text)
	var kind RefKind
	ctx := ""
	switch {
	case name == "joinget" || name == "joingetornull":
		kind, ctx = RefJoinGet, "joinGet"
	case strings.HasPrefix(name, "dictget") || name == "dicthas" || name == "dictisin":
		kind, ctx = RefDictionary, "dictGet"
	default:
		return
	}
	a := an.tok(i + 2)
	argEnd := func(k int) bool { return an.tok(k).is(",") || an.tok(k).is(")") }
	switch {
	case a.Kind == String && argEnd(i+3):
		db, n := splitQualified(a.Value())
		an.addRef(TableRef{Kind: kind, Database: db, Name: n, Start: a.Start, End: a.End, Context: ctx, Quoted: true})
		return
	case a.Kind == Ident || a.Kind == QuotedIdent:
		ref := TableRef{Kind: kind, Name: a.Value(), Start: a.Start, End: a.End, Context: ctx}
		k := i + 3
		if an.tok(k).is(".") && (an.tok(k+1).Kind == Ident || an.tok(k+1).Kind == QuotedIdent) {
			ref.Database, ref.Name, ref.End = ref.Name, an.tok(k+1).Value(), an.tok(k+1).End
			k += 2
		}
		if argEnd(k) {
			an.claimed[i+2] = true
			if k > i+3 {
				an.claimed[i+4] = true
			}
			an.addRef(ref)
			return
		}
	}
	// The name is computed ('a' || 'b', concat(...), ('x'), {p:String}): it
	// cannot be checked, so it is reported with no name for callers to refuse.
	start, end := an.tok(i+2).Start, an.tok(an.matchParen(i+1)).Start
	if end <= start { // joinGet(): the name's span instead
		start, end = an.toks[i].Start, an.toks[i].End
	}
	an.addRef(TableRef{Kind: kind, Start: start, End: end, Context: ctx, Dynamic: true})
}

// settings records the "name = value" items of the SETTINGS clause at i.
func (an *analyzer) settings(i int) {
	j := i + 1
	for {
		n := an.tok(j)
		if (n.Kind != Ident && n.Kind != QuotedIdent) || !an.tok(j+1).is("=") {
			an.a.Settings = append(an.a.Settings, Setting{Start: n.Start, End: n.End})
			return
		}
		an.a.Settings = append(an.a.Settings, Setting{Name: n.Value(), Start: n.Start, End: n.End})
		// Skip the value: up to a ',' at this depth, or the clause's end.
		depth := 0
		for j += 2; j < len(an.toks); j++ {
			t := an.toks[j]
			switch {
			case t.is("(") || t.is("["):
				depth++
				continue
			case t.is(")") || t.is("]"):
				if depth == 0 {
					return
				}
				depth--
				continue
			case t.is(";"):
				return
			}
			if depth == 0 && (t.is(",") || t.Kind == Ident && (t.Upper() == "FORMAT" || t.Upper() == "UNION" || t.Upper() == "INTO" || t.Upper() == "EXCEPT" || t.Upper() == "INTERSECT")) {
				break
			}
		}
		if !an.tok(j).is(",") {
			return
		}
		j++
	}
}

// formatClause records "FORMAT name" at i when it is the output format
// clause rather than a column or alias named format.
func (an *analyzer) formatClause(i int) bool {
	p, n := an.tok(i-1), an.tok(i+1)
	if i == 0 || p.Upper() == "AS" || p.Upper() == "SELECT" || p.Upper() == "DISTINCT" || p.Kind == Punct && !p.is(")") && !p.is("]") {
		return false
	}
	if n.Kind != Ident && n.Kind != QuotedIdent || notAlias[n.Upper()] && n.Kind == Ident {
		return false
	}
	if f := an.tok(i + 2); f.is("(") || f.is(".") {
		return false
	}
	an.a.Formats = append(an.a.Formats, FuncCall{Name: n.Value(), Start: an.toks[i].Start, End: n.End})
	an.claimed[i+1] = true
	return true
}

func splitQualified(s string) (string, string) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

// Rewrite replaces each reference's text with fn's result. A replacement
// equal to the original text leaves it alone; overlapping replacements are
// an error (e.g. rewriting both a table function and a table inside it).
func (a *Analysis) Rewrite(fn func(ref TableRef) (string, error)) (string, error) {
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	for _, r := range a.Refs {
		rep, err := fn(r)
		if err != nil {
			return "", err
		}
		if rep == a.SQL[r.Start:r.End] {
			continue
		}
		edits = append(edits, edit{r.Start, r.End, rep})
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	var b strings.Builder
	pos := 0
	for _, e := range edits {
		if e.start < pos {
			return "", fmt.Errorf("overlapping rewrites at offset %d", e.start)
		}
		b.WriteString(a.SQL[pos:e.start])
		b.WriteString(e.text)
		pos = e.end
	}
	b.WriteString(a.SQL[pos:])
	return b.String(), nil
}

// Qualify analyzes sql and replaces the text of every reference with fn's
// result (see Analysis.Rewrite).
func Qualify(sql string, fn func(ref TableRef) (string, error)) (string, error) {
	return QualifyNodes(sql, nil, fn)
}

// QualifyNodes is Qualify with the names of earlier pipe nodes, reported as
// RefNode.
func QualifyNodes(sql string, nodes map[string]bool, fn func(ref TableRef) (string, error)) (string, error) {
	a, err := Analyze(sql, nodes)
	if err != nil {
		return "", err
	}
	return a.Rewrite(fn)
}
