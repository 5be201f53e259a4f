package datafile

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/platform/chsql"
)

// CheckStatement verifies a statement built for a Data Source (DDL, an ALTER of its plan, or
// its DROP) once more before it is sent, from the statement's own tokens: it is one statement,
// on the expected table (as emitted, e.g. "`ws_db`.`events`"), of a form Sluice builds, with
// nothing after it, and every expression, type, argument and setting in it passes the same
// analysis as the datafile's parts. A failure means Sluice built something it did not intend.
func CheckStatement(stmt, table string) error {
	all, err := chsql.Lex(stmt)
	if err != nil {
		return fmt.Errorf("statement does not lex: %w", err)
	}
	for _, t := range all {
		if t.Kind == chsql.Comment {
			return fmt.Errorf("statement holds a comment at offset %d", t.Start)
		}
	}
	st, err := chsql.Split(stmt)
	if err != nil {
		return err
	}
	if len(st) != 1 || strings.TrimSpace(stmt) != st[0].SQL {
		return fmt.Errorf("expected one statement and nothing after it, found %d", len(st))
	}
	want, err := chsql.Lex(table)
	if err != nil || len(want) != 3 || want[0].Kind != chsql.QuotedIdent || !want[1].Is(".") || want[2].Kind != chsql.QuotedIdent {
		return fmt.Errorf("expected table %s is not a qualified name", table)
	}
	c := &stmtCheck{sql: stmt, toks: chsql.Significant(all)}
	head := func(words ...string) bool {
		for i, w := range words {
			if c.tok(i).Kind != chsql.Ident || !strings.EqualFold(c.tok(i).Text, w) {
				return false
			}
		}
		n := len(words)
		return c.tok(n).Kind == chsql.QuotedIdent && c.tok(n).Value() == want[0].Value() && c.tok(n+1).Is(".") &&
			c.tok(n+2).Kind == chsql.QuotedIdent && c.tok(n+2).Value() == want[2].Value()
	}
	switch {
	case head("CREATE", "TABLE"):
		return c.create(5)
	case head("ALTER", "TABLE"):
		return c.alter(5)
	case head("DROP", "TABLE", "IF", "EXISTS"):
		if len(c.toks) != 7 {
			return fmt.Errorf("unexpected %q after DROP TABLE %s", c.tok(7).Text, table)
		}
		return nil
	}
	return fmt.Errorf("expected CREATE TABLE, ALTER TABLE or DROP TABLE IF EXISTS of %s", table)
}

type stmtCheck struct {
	sql  string
	toks []chsql.Token
}

func (c *stmtCheck) tok(i int) chsql.Token {
	if i < 0 || i >= len(c.toks) {
		return chsql.Token{Kind: chsql.EOF, Start: len(c.sql), End: len(c.sql)}
	}
	return c.toks[i]
}

func (c *stmtCheck) word(i int, w string) bool {
	return c.tok(i).Kind == chsql.Ident && strings.EqualFold(c.tok(i).Text, w)
}

// closing returns the index of the bracket closing the one at i (len(toks) when none).
func (c *stmtCheck) closing(i int) int {
	depth := 0
	for k := i; k < len(c.toks); k++ {
		switch {
		case c.toks[k].Is("(") || c.toks[k].Is("["):
			depth++
		case c.toks[k].Is(")") || c.toks[k].Is("]"):
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return len(c.toks)
}

// text is the statement's text from token i to token j (exclusive).
func (c *stmtCheck) text(i, j int) string {
	if i >= j {
		return ""
	}
	return c.sql[c.tok(i).Start:c.tok(j-1).End]
}

// topSplit splits tokens [i, j) at depth-0 commas.
func (c *stmtCheck) topSplit(i, j int) [][2]int {
	var out [][2]int
	depth, start := 0, i
	for k := i; k < j; k++ {
		switch t := c.toks[k]; {
		case t.Is("(") || t.Is("["):
			depth++
		case t.Is(")") || t.Is("]"):
			depth--
		case t.Is(",") && depth == 0:
			out = append(out, [2]int{start, k})
			start = k + 1
		}
	}
	return append(out, [2]int{start, j})
}

func (c *stmtCheck) analyse(i, j int, what string, opts chsql.ExprOptions) error {
	text := c.text(i, j)
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("empty %s", what)
	}
	if _, err := chsql.AnalyzeExpr(text, opts); err != nil {
		return fmt.Errorf("%s %q: %w", what, text, err)
	}
	return nil
}

// element checks a column or index declaration in tokens [i, j), reading it the way the
// builder wrote it: `name` [type] [DEFAULT|MATERIALIZED|ALIAS|EPHEMERAL expr] [CODEC(...)],
// or INDEX `name` expr TYPE type [GRANULARITY n]; each part goes through the parser's own
// check of that part.
func (c *stmtCheck) element(i, j int) error {
	if c.word(i, "INDEX") {
		return c.index(i+1, j)
	}
	if c.tok(i).Kind != chsql.QuotedIdent {
		return fmt.Errorf("expected a back-quoted column name, found %q", c.tok(i).Text)
	}
	name := c.tok(i).Value()
	if j == i+1 {
		return fmt.Errorf("column %s has no type", name)
	}
	kindAt, codecAt := -1, -1
	depth := 0
	for k := i + 1; k < j; k++ {
		t := c.toks[k]
		switch {
		case t.Is("(") || t.Is("["):
			depth++
		case t.Is(")") || t.Is("]"):
			depth--
		case depth == 0 && t.Kind == chsql.Ident && kindAt < 0 && codecAt < 0 && columnClauses[t.Upper()] && t.Upper() != "CODEC" && t.Upper() != "NULL" && t.Upper() != "NOT":
			kindAt = k
		case depth == 0 && c.word(k, "CODEC") && c.tok(k+1).Is("("):
			codecAt = k
		}
	}
	typeEnd := j
	for _, at := range []int{kindAt, codecAt} {
		if at >= 0 && at < typeEnd {
			typeEnd = at
		}
	}
	none := func(int) Pos { return Pos{} }
	if typeEnd > i+1 {
		if _, err := parseType(c.text(i+1, typeEnd), 0, none, name); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	if kindAt >= 0 {
		end := j
		if codecAt > kindAt {
			end = codecAt
		}
		if end > kindAt+1 {
			if err := c.analyse(kindAt+1, end, "column "+name+" "+c.tok(kindAt).Upper(), chsql.ExprOptions{}); err != nil {
				return err
			}
		} else if c.tok(kindAt).Upper() != "EPHEMERAL" {
			return fmt.Errorf("column %s: %s without an expression", name, c.tok(kindAt).Text)
		}
	}
	if codecAt >= 0 {
		end := c.closing(codecAt + 1)
		if end != j-1 {
			return fmt.Errorf("column %s: unexpected %q after CODEC(...)", name, c.tok(end+1).Text)
		}
		if _, err := parseCodec(c.text(codecAt+2, end), 0, none, name); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	return nil
}

// index checks `name` expr TYPE type [GRANULARITY n] in tokens [i, j).
func (c *stmtCheck) index(i, j int) error {
	if c.tok(i).Kind != chsql.QuotedIdent {
		return fmt.Errorf("expected an index name after INDEX, found %q", c.tok(i).Text)
	}
	typeAt, granAt := indexKeywords(c.toks[:j], i+1)
	if typeAt < i+2 {
		return fmt.Errorf("index %s: expected expr TYPE type", c.tok(i).Text)
	}
	if err := c.analyse(i+1, typeAt, "index "+c.tok(i).Text, chsql.ExprOptions{}); err != nil {
		return err
	}
	typeEnd := j
	if granAt >= 0 {
		if granAt != j-2 || c.tok(j-1).Kind != chsql.Number {
			return fmt.Errorf("index %s: expected GRANULARITY n at the end", c.tok(i).Text)
		}
		typeEnd = granAt
	}
	none := func(int) Pos { return Pos{} }
	if _, err := lexPart(c.text(typeAt+1, typeEnd), 0, none, "index type"); err != nil {
		return err
	}
	_, err := parseIndexType(c.toks[typeAt+1:typeEnd], c.sql, func(int) Pos { return Pos{} }, c.tok(i).Text)
	return err
}

// indexKeywords finds, in toks from `from`, the depth-0 TYPE keyword of an index (the last
// one, so that a column named type can be indexed) and the GRANULARITY after it (-1 when
// none).
func indexKeywords(toks []chsql.Token, from int) (typeAt, granAt int) {
	typeAt, granAt = -1, -1
	depth := 0
	for k := from; k < len(toks); k++ {
		t := toks[k]
		switch {
		case t.Is("(") || t.Is("["):
			depth++
		case t.Is(")") || t.Is("]"):
			depth--
		case depth == 0 && t.Kind == chsql.Ident && strings.EqualFold(t.Text, "TYPE") && k > from:
			typeAt, granAt = k, -1
		case depth == 0 && t.Kind == chsql.Ident && strings.EqualFold(t.Text, "GRANULARITY") && typeAt >= 0:
			granAt = k
		}
	}
	return typeAt, granAt
}

// engineClauses are what may follow ENGINE = Name(...), in this order.
var engineClauses = [][]string{{"PARTITION", "BY"}, {"ORDER", "BY"}, {"PRIMARY", "KEY"}, {"SAMPLE", "BY"}, {"TTL"}, {"SETTINGS"}}

func (c *stmtCheck) create(i int) error {
	if !c.tok(i).Is("(") {
		return fmt.Errorf("expected the column list after the table name, found %q", c.tok(i).Text)
	}
	end := c.closing(i)
	if end >= len(c.toks) {
		return fmt.Errorf("unclosed column list")
	}
	for _, el := range c.topSplit(i+1, end) {
		if err := c.element(el[0], el[1]); err != nil {
			return err
		}
	}
	k := end + 1
	if !c.word(k, "ENGINE") || !c.tok(k+1).Is("=") || c.tok(k+2).Kind != chsql.Ident || !c.tok(k+3).Is("(") {
		return fmt.Errorf("expected ENGINE = Name(...) after the column list, found %q", c.tok(k).Text)
	}
	if _, ok := canonicalEngine(c.tok(k + 2).Text); !ok {
		return fmt.Errorf("engine %s is not one Sluice creates", c.tok(k+2).Text)
	}
	argsEnd := c.closing(k + 3)
	if argsEnd >= len(c.toks) {
		return fmt.Errorf("unclosed engine arguments")
	}
	if argsEnd > k+4 {
		if err := c.analyse(k+4, argsEnd, "engine arguments", chsql.ExprOptions{}); err != nil {
			return err
		}
	}
	// Clauses, in order, each once; the text between two clause keywords is the clause.
	k = argsEnd + 1
	next := 0
	for k < len(c.toks) {
		found := -1
		for n := next; n < len(engineClauses); n++ {
			ok := true
			for w, word := range engineClauses[n] {
				ok = ok && c.word(k+w, word)
			}
			if ok {
				found = n
				break
			}
		}
		if found < 0 {
			return fmt.Errorf("unexpected %q after the engine", c.tok(k).Text)
		}
		start := k + len(engineClauses[found])
		stop := start
		for depth := 0; stop < len(c.toks); stop++ {
			t := c.toks[stop]
			if t.Is("(") || t.Is("[") {
				depth++
			} else if t.Is(")") || t.Is("]") {
				depth--
			}
			if depth == 0 && c.isClauseAt(stop, found+1) {
				break
			}
		}
		clause := strings.Join(engineClauses[found], " ")
		var err error
		if clause == "SETTINGS" {
			err = c.settings(start, stop)
		} else {
			err = c.analyse(start, stop, clause, chsql.ExprOptions{TTL: clause == "TTL"})
		}
		if err != nil {
			return err
		}
		k, next = stop, found+1
	}
	return nil
}

func (c *stmtCheck) isClauseAt(k, from int) bool {
	for n := from; n < len(engineClauses); n++ {
		ok := true
		for w, word := range engineClauses[n] {
			ok = ok && c.word(k+w, word)
		}
		if ok {
			return true
		}
	}
	return false
}

// settings checks name = literal pairs in tokens [i, j).
func (c *stmtCheck) settings(i, j int) error {
	for _, s := range c.topSplit(i, j) {
		n := s[1] - s[0]
		name, eq := c.tok(s[0]), c.tok(s[0]+1)
		if n < 3 || name.Kind != chsql.Ident || !isIdent(name.Text) || !eq.Is("=") {
			return fmt.Errorf("SETTINGS: expected name = value, found %q", c.text(s[0], s[1]))
		}
		_, after, ok := literal(c.toks[:s[1]], s[0]+2)
		if !ok || after != s[1] {
			return fmt.Errorf("SETTINGS: the value of %s is not a literal: %q", name.Text, c.text(s[0]+2, s[1]))
		}
	}
	return nil
}

func (c *stmtCheck) alter(i int) error {
	for _, el := range c.topSplit(i, len(c.toks)) {
		if el[0] != i {
			return fmt.Errorf("one action per ALTER: unexpected ',' before %q", c.text(el[0], el[1]))
		}
	}
	switch {
	case c.word(i, "ADD") && c.word(i+1, "COLUMN"):
		end := len(c.toks)
		switch {
		case c.word(end-1, "FIRST"):
			end--
		case c.word(end-2, "AFTER") && c.tok(end-1).Kind == chsql.QuotedIdent:
			end -= 2
		}
		return c.element(i+2, end)
	case c.word(i, "MODIFY") && c.word(i+1, "COLUMN"):
		return c.element(i+2, len(c.toks))
	case c.word(i, "ADD") && c.word(i+1, "INDEX"):
		return c.element(i+1, len(c.toks))
	case c.word(i, "MODIFY") && c.word(i+1, "TTL"):
		return c.analyse(i+2, len(c.toks), "TTL", chsql.ExprOptions{TTL: true})
	case c.word(i, "REMOVE") && c.word(i+1, "TTL") && len(c.toks) == i+2:
		return nil
	case c.word(i, "DROP") && (c.word(i+1, "COLUMN") || c.word(i+1, "INDEX")):
		k := i + 2
		if c.word(k, "IF") && c.word(k+1, "EXISTS") {
			k += 2
		}
		if c.tok(k).Kind != chsql.QuotedIdent || len(c.toks) != k+1 {
			return fmt.Errorf("expected DROP %s [IF EXISTS] `name` and nothing after it", strings.ToUpper(c.tok(i+1).Text))
		}
		return nil
	}
	return fmt.Errorf("unexpected ALTER action %q", c.text(i, min(i+2, len(c.toks))))
}
