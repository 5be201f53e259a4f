package datafile

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/chsql"
)

// Every part of a .datasource that reaches CREATE TABLE is parsed here into what Sluice
// emits: expressions are analysed by chsql.AnalyzeExpr (no subquery, no table, no table
// function, no function reaching files or the network) and emitted normalized; types, codecs,
// index types, settings and engine arguments are read token by token and emitted from their
// tokens. Nothing a datafile holds is pasted into DDL as written.

// ColumnUse is a column name a Data Source's definition reads (an expression's identifier or
// an engine argument), with where it stands. CheckColumns checks them against the columns.
type ColumnUse struct {
	// Name is the name as written; Parts its dotted components (a nested column's
	// `n.a` is one name of two parts).
	Name  string
	Parts []string
	Pos   Pos
	// Where names the part of the definition, e.g. "ENGINE_SORTING_KEY" or "column c DEFAULT".
	Where string
}

// posFunc maps a byte offset of a value's text to its place in the datafile.
type posFunc func(off int) Pos

// inlineValue is an entry's value with a map from its byte offsets to file positions. The
// value is its arguments joined with single spaces, one pair of surrounding quotes removed,
// $VAR substituted (spec §1.4-5); when substitution changed the text, every offset maps to
// the value's start.
func (p *parser) inlineValue(e *entry) (string, posFunc) {
	if e.block {
		b := newBlockSrc(e.lines)
		text := p.env(b.text)
		if text != b.text {
			start := e.valuePos()
			return text, func(int) Pos { return start }
		}
		return text, b.pos
	}
	parts := make([]string, len(e.args))
	starts := make([]int, len(e.args))
	n := 0
	for i, a := range e.args {
		if i > 0 {
			n++
		}
		starts[i] = n
		parts[i] = a.text
		n += len(a.text)
	}
	joined := strings.Join(parts, " ")
	raw := unquote(joined)
	shift := 0
	if len(raw) != len(joined) {
		shift = 1
	}
	text := p.env(raw)
	start := e.valuePos()
	if text != raw {
		return text, func(int) Pos { return start }
	}
	return text, func(off int) Pos {
		off += shift
		for i := len(starts) - 1; i >= 0; i-- {
			if off >= starts[i] {
				a := e.args[i]
				k := min(off-starts[i], len(a.text))
				return Pos{File: e.pos.File, Line: e.pos.Line, Column: a.col + utf8.RuneCountInString(a.text[:k])}
			}
		}
		return start
	}
}

// expr analyses an expression of the definition; off is where text starts in the value that
// pos maps.
func expr(text string, off int, pos posFunc, where string, opts chsql.ExprOptions) (string, []ColumnUse, error) {
	e, err := chsql.AnalyzeExpr(text, opts)
	if err != nil {
		return "", nil, sqlError(err, off, pos, where)
	}
	uses := make([]ColumnUse, 0, len(e.Columns))
	for _, c := range e.Columns {
		uses = append(uses, ColumnUse{Name: c.Name, Parts: c.Parts, Pos: pos(off + c.Start), Where: where})
	}
	return e.SQL, uses, nil
}

// sqlError places a chsql error in the datafile.
func sqlError(err error, off int, pos posFunc, where string) error {
	var ce *chsql.Error
	if errors.As(err, &ce) {
		return errAt(pos(off+ce.Offset), "%s: %s", where, ce.Msg)
	}
	return errAt(pos(off), "%s: %v", where, err)
}

// lexPart lexes a part of the definition that is not an expression (a type, a codec, a
// setting list, an index type), refusing comments, anything that does not normalize, and
// whatever the analysis of expressions refuses (a call of file() or url() is no type either):
// the final check of the statement reads these parts that way.
func lexPart(text string, off int, pos posFunc, where string) ([]chsql.Token, error) {
	all, err := chsql.Lex(text)
	if err == nil {
		_, err = chsql.AnalyzeExpr(text, chsql.ExprOptions{})
	}
	if err != nil {
		return nil, sqlError(err, off, pos, where)
	}
	for _, t := range all {
		if t.Kind == chsql.Comment {
			return nil, errAt(pos(off+t.Start), "%s: comments are not allowed here", where)
		}
	}
	return all, nil
}

// typeWords would make a type something else than a type.
var typeWords = map[string]bool{"SELECT": true, "WITH": true, "FROM": true, "SETTINGS": true, "FORMAT": true, "INTO": true, "DEFAULT": true, "MATERIALIZED": true, "ALIAS": true, "EPHEMERAL": true, "CODEC": true, "TTL": true}

// parseType reads a column type — a name with optional bracketed arguments that are types,
// names, numbers, strings and `name = value` pairs (Enum8('a' = 1), DateTime64(3, 'UTC'),
// AggregateFunction(quantiles(0.5, 0.9), Float64), Tuple(a String)) — and returns it as Sluice
// emits it.
func parseType(text string, off int, pos posFunc, column string) (string, error) {
	where := fmt.Sprintf("type of column %q", column)
	toks, err := lexPart(text, off, pos, where)
	if err != nil {
		return "", err
	}
	if len(toks) == 0 || toks[0].Kind != chsql.Ident {
		return "", errAt(pos(off), "%s: expected a type name such as String", where)
	}
	var b strings.Builder
	depth := 0
	for i, t := range toks {
		switch t.Kind {
		case chsql.Ident:
			if typeWords[t.Upper()] {
				return "", errAt(pos(off+t.Start), "%s: unexpected %s", where, t.Text)
			}
		case chsql.QuotedIdent, chsql.String, chsql.Number:
		case chsql.Punct:
			switch t.Text {
			case "(":
				depth++
			case ")":
				depth--
				if depth < 0 {
					return "", errAt(pos(off+t.Start), "%s: unbalanced ')'", where)
				}
			case ",", "=", "-", ".":
			default:
				return "", errAt(pos(off+t.Start), "%s: unexpected %q", where, t.Text)
			}
		}
		if depth == 0 && i > 0 && !t.Is(")") {
			return "", errAt(pos(off+t.Start), "%s: unexpected %q after the type", where, t.Text)
		}
		if i > 0 && needsSpace(toks[i-1], t) {
			b.WriteByte(' ')
		}
		b.WriteString(t.Text)
	}
	if depth != 0 {
		return "", errAt(pos(off+len(text)), "%s: unclosed '('", where)
	}
	return b.String(), nil
}

// needsSpace says whether two tokens of a type are written apart.
func needsSpace(prev, t chsql.Token) bool {
	switch {
	case t.Kind == chsql.Punct && (t.Text == "," || t.Text == ")" || t.Text == "(" || t.Text == "."):
		return false
	case prev.Kind == chsql.Punct && (prev.Text == "(" || prev.Text == "." || prev.Text == "-" && t.Kind == chsql.Number):
		return false
	}
	return true
}

// parseCodec reads the inside of CODEC(...): a list of codec names with numeric arguments.
func parseCodec(text string, off int, pos posFunc, column string) (string, error) {
	where := fmt.Sprintf("CODEC of column %q", column)
	toks, err := lexPart(text, off, pos, where)
	if err != nil {
		return "", err
	}
	var items []string
	for i := 0; i < len(toks); {
		t := toks[i]
		if t.Kind != chsql.Ident {
			return "", errAt(pos(off+t.Start), "%s: expected a codec name such as ZSTD(1), found %q", where, t.Text)
		}
		item := t.Text
		i++
		if i < len(toks) && toks[i].Text == "(" && toks[i].Kind == chsql.Punct {
			var args []string
			i++
			for {
				if i >= len(toks) {
					return "", errAt(pos(off+len(text)), "%s: unclosed '(' after %s", where, t.Text)
				}
				a := toks[i]
				if a.Kind != chsql.Number {
					return "", errAt(pos(off+a.Start), "%s: codec arguments are numbers, found %q", where, a.Text)
				}
				args = append(args, a.Text)
				i++
				if i < len(toks) && toks[i].Kind == chsql.Punct && toks[i].Text == "," {
					i++
					continue
				}
				if i < len(toks) && toks[i].Kind == chsql.Punct && toks[i].Text == ")" {
					i++
					break
				}
				return "", errAt(pos(off+a.End), "%s: expected ',' or ')' after %s", where, a.Text)
			}
			item += "(" + strings.Join(args, ", ") + ")"
		}
		items = append(items, item)
		if i < len(toks) {
			if toks[i].Kind != chsql.Punct || toks[i].Text != "," {
				return "", errAt(pos(off+toks[i].Start), "%s: expected ',' between codecs, found %q", where, toks[i].Text)
			}
			i++
			if i == len(toks) {
				return "", errAt(pos(off+toks[i-1].Start), "%s: expected a codec after ','", where)
			}
		}
	}
	if len(items) == 0 {
		return "", errAt(pos(off), "%s: expected a codec such as ZSTD(1)", where)
	}
	return strings.Join(items, ", "), nil
}

// literal reads one literal at toks[i] — a number with an optional sign, a string, true or
// false — and returns its text and the index after it.
func literal(toks []chsql.Token, i int) (string, int, bool) {
	if i >= len(toks) {
		return "", i, false
	}
	t := toks[i]
	switch {
	case t.Kind == chsql.Number || t.Kind == chsql.String && !strings.HasPrefix(t.Text, "$"):
		return t.Text, i + 1, true
	case t.Kind == chsql.String:
		return chsql.QuoteString(t.Value()), i + 1, true
	case t.Kind == chsql.Punct && (t.Text == "-" || t.Text == "+") && i+1 < len(toks) && toks[i+1].Kind == chsql.Number:
		return t.Text + toks[i+1].Text, i + 2, true
	case t.Kind == chsql.Ident && (strings.EqualFold(t.Text, "true") || strings.EqualFold(t.Text, "false")):
		return strings.ToLower(t.Text), i + 1, true
	}
	return "", i, false
}

// EngineSetting is one `name = value` of ENGINE_SETTINGS; Value is a literal as Sluice emits
// it.
type EngineSetting struct {
	Name  string
	Value string
	Pos   Pos
}

// parseSettings reads ENGINE_SETTINGS: `name = literal` pairs separated by commas.
func parseSettings(text string, pos posFunc) ([]EngineSetting, error) {
	const where = "ENGINE_SETTINGS"
	toks, err := lexPart(text, 0, pos, where)
	if err != nil {
		return nil, err
	}
	var out []EngineSetting
	seen := map[string]bool{}
	for i := 0; i < len(toks); {
		n := toks[i]
		if n.Kind != chsql.Ident || !isIdent(n.Text) {
			return nil, errAt(pos(n.Start), "%s: expected a setting name, found %q (ENGINE_SETTINGS is a list of name = value)", where, n.Text)
		}
		if seen[n.Text] {
			return nil, errAt(pos(n.Start), "%s: setting %s is given twice", where, n.Text)
		}
		seen[n.Text] = true
		if i+1 >= len(toks) || toks[i+1].Kind != chsql.Punct || toks[i+1].Text != "=" {
			return nil, errAt(pos(n.End), "%s: expected '=' after %s", where, n.Text)
		}
		v, next, ok := literal(toks, i+2)
		if !ok {
			at := n.End
			if i+2 < len(toks) {
				at = toks[i+2].Start
			}
			return nil, errAt(pos(at), "%s: the value of %s must be a literal (a number, a 'string', true or false)", where, n.Text)
		}
		out = append(out, EngineSetting{Name: n.Text, Value: v, Pos: pos(n.Start)})
		i = next
		if i < len(toks) {
			if toks[i].Kind != chsql.Punct || toks[i].Text != "," {
				return nil, errAt(pos(toks[i].Start), "%s: expected ',' or the end after the value of %s, found %q", where, n.Text, toks[i].Text)
			}
			i++
			if i == len(toks) {
				return nil, errAt(pos(toks[i-1].Start), "%s: expected a setting after ','", where)
			}
		}
	}
	return out, nil
}

// parseColumnNames reads one column name (ENGINE_VER, ENGINE_SIGN, ...) or, with list, a
// comma list of them, optionally in parentheses (ENGINE_COLUMNS, ENGINE_KEY_COLUMNS).
func parseColumnNames(text string, pos posFunc, where string, list bool) ([]string, []ColumnUse, error) {
	toks, err := lexPart(text, 0, pos, where)
	if err != nil {
		return nil, nil, err
	}
	if list && len(toks) >= 2 && toks[0].Text == "(" && toks[0].Kind == chsql.Punct && toks[len(toks)-1].Text == ")" && toks[len(toks)-1].Kind == chsql.Punct {
		toks = toks[1 : len(toks)-1]
	}
	var names []string
	var uses []ColumnUse
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.Kind != chsql.Ident && t.Kind != chsql.QuotedIdent || t.Kind == chsql.Ident && !isColumnIdent(t.Text) {
			return nil, nil, errAt(pos(t.Start), "%s: expected a column name, found %q", where, t.Text)
		}
		names = append(names, t.Value())
		uses = append(uses, ColumnUse{Name: t.Value(), Parts: []string{t.Value()}, Pos: pos(t.Start), Where: where})
		if i+1 < len(toks) {
			if !list {
				return nil, nil, errAt(pos(toks[i+1].Start), "%s: expected one column name, found %q after %s", where, toks[i+1].Text, t.Text)
			}
			if toks[i+1].Kind != chsql.Punct || toks[i+1].Text != "," || i+2 == len(toks) {
				return nil, nil, errAt(pos(toks[i+1].Start), "%s: expected column names separated by ',', found %q", where, toks[i+1].Text)
			}
			i++
		}
	}
	if len(names) == 0 {
		return nil, nil, errAt(pos(0), "%s: expected a column name", where)
	}
	return names, uses, nil
}

// parseIndexType reads an index type: a name with optional literal arguments
// (minmax, set(100), bloom_filter(0.01), ngrambf_v1(3, 2048, 6, 0), text(tokenizer = 'ngram')).
func parseIndexType(toks []chsql.Token, line string, pos posFunc, index string) (string, error) {
	where := fmt.Sprintf("type of index %s", index)
	if len(toks) == 0 || toks[0].Kind != chsql.Ident || !isIdent(toks[0].Text) {
		at := 0
		if len(toks) > 0 {
			at = toks[0].Start
		}
		return "", errAt(pos(at), "%s: expected an index type such as minmax", where)
	}
	out := toks[0].Text
	if len(toks) == 1 {
		return out, nil
	}
	if !toks[1].Is("(") || !toks[len(toks)-1].Is(")") {
		return "", errAt(pos(toks[1].Start), "%s: expected (arguments) after %s", where, toks[0].Text)
	}
	var args []string
	inner := toks[2 : len(toks)-1]
	for i := 0; i < len(inner); {
		name := ""
		if inner[i].Kind == chsql.Ident && i+1 < len(inner) && inner[i+1].Is("=") {
			name = inner[i].Text + " = "
			i += 2
		}
		v, next, ok := literal(inner, i)
		if !ok {
			at := len(line)
			if i < len(inner) {
				at = inner[i].Start
			}
			return "", errAt(pos(at), "%s: arguments are literals (numbers or 'strings')", where)
		}
		args = append(args, name+v)
		i = next
		if i < len(inner) {
			if !inner[i].Is(",") || i+1 == len(inner) {
				return "", errAt(pos(inner[i].Start), "%s: expected ',' between arguments", where)
			}
			i++
		}
	}
	return out + "(" + strings.Join(args, ", ") + ")", nil
}

// CheckColumns checks that every column name the Data Source's definition reads — in
// expressions, keys, TTL, indexes and engine arguments — is one of its columns (a dotted
// name may name a nested column or a subcolumn of one). Call it once the columns are final
// (the catalog adds a connector's columns first).
func (ds *DataSource) CheckColumns() error {
	have := map[string]bool{}
	var names []string
	for _, c := range ds.Columns {
		have[c.Name] = true
		names = append(names, c.Name)
	}
	for _, u := range ds.Uses() {
		ok := false
		for k := len(u.Parts); k >= 1 && !ok; k-- {
			ok = have[strings.Join(u.Parts[:k], ".")]
		}
		if !ok {
			list := strings.Join(names, ", ")
			if len(list) > 200 {
				list = list[:200] + "..."
			}
			return errAt(u.Pos, "%s: unknown column %s: a Data Source's definition may only use its own columns (%s)", u.Where, u.Name, list)
		}
	}
	return nil
}

// Uses are the column names the definition reads, in file order.
func (ds *DataSource) Uses() []ColumnUse {
	out := append([]ColumnUse(nil), ds.uses...)
	for _, u := range ds.Engine.uses {
		out = append(out, u...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		return a.File < b.File || a.File == b.File && (a.Line < b.Line || a.Line == b.Line && a.Column < b.Column)
	})
	return out
}
