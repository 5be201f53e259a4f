package chsql

import (
	"fmt"
	"sort"
	"strings"
)

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
