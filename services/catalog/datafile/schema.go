package datafile

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/chsql"
)

// blockSrc is a block's text with a map from byte offsets back to file
// positions.
type blockSrc struct {
	text   string
	starts []int // byte offset where each line starts in text
	lines  []srcLine
}

func newBlockSrc(lines []srcLine) *blockSrc {
	b := &blockSrc{lines: lines}
	var sb strings.Builder
	for i, l := range lines {
		if i > 0 {
			sb.WriteByte('\n')
		}
		b.starts = append(b.starts, sb.Len())
		sb.WriteString(l.text)
	}
	b.text = sb.String()
	return b
}

func (b *blockSrc) pos(off int) Pos {
	i := 0
	for i+1 < len(b.starts) && b.starts[i+1] <= off {
		i++
	}
	if len(b.lines) == 0 {
		return Pos{Line: 1, Column: 1}
	}
	l := b.lines[i]
	if off > len(b.text) {
		off = len(b.text)
	}
	return Pos{File: l.file, Line: l.num, Column: utf8.RuneCountInString(b.text[b.starts[i]:off]) + 1}
}

type stokKind int

const (
	sWord stokKind = iota
	sBacktick
	sString
	sOpen
	sClose
	sComma
	sPunct
)

type stok struct {
	kind       stokKind
	start, end int // byte offsets in blockSrc.text
	text       string
}

// lexSchema splits schema text into tokens, dropping "--" comments.
func lexSchema(b *blockSrc, startPos Pos) ([]stok, error) {
	s := b.text
	var out []stok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			// A block comment, as ClickHouse reads it. Nested ones are refused: ClickHouse
			// versions disagree on where they end.
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return nil, errAt(b.pos(i), "unterminated /* comment in SCHEMA")
			}
			if k := strings.Index(s[i+2:i+2+end], "/*"); k >= 0 {
				return nil, errAt(b.pos(i+2+k), "nested /* comments are refused in SCHEMA: ClickHouse versions disagree on where they end")
			}
			i += end + 4
		case c == '`' || c == '\'' || c == '"':
			j := i + 1
			for j < len(s) {
				if s[j] == '\\' {
					j += 2
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(s) {
				what := "string"
				if c == '`' {
					what = "back-quoted name"
				}
				return nil, errAt(b.pos(i), "unterminated %s in SCHEMA: expected a closing %c", what, c)
			}
			k := sString
			if c == '`' {
				k = sBacktick
			}
			out = append(out, stok{kind: k, start: i, end: j + 1, text: s[i : j+1]})
			i = j + 1
		case c == '(' || c == '[':
			out = append(out, stok{kind: sOpen, start: i, end: i + 1, text: s[i : i+1]})
			i++
		case c == ')' || c == ']':
			out = append(out, stok{kind: sClose, start: i, end: i + 1, text: s[i : i+1]})
			i++
		case c == ',':
			out = append(out, stok{kind: sComma, start: i, end: i + 1, text: ","})
			i++
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			out = append(out, stok{kind: sWord, start: i, end: j, text: s[i:j]})
			i = j
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			out = append(out, stok{kind: sPunct, start: i, end: i + size, text: s[i : i+size]})
			i += size
		}
	}
	return out, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80
}

// splitTop splits tokens at depth-0 commas, checking bracket balance.
func splitTop(b *blockSrc, toks []stok) ([][]stok, error) {
	var items [][]stok
	var cur []stok
	var stack []stok
	for _, t := range toks {
		switch t.kind {
		case sOpen:
			stack = append(stack, t)
		case sClose:
			if len(stack) == 0 {
				return nil, errAt(b.pos(t.start), "unbalanced %q in SCHEMA: no matching opening bracket", t.text)
			}
			open := stack[len(stack)-1]
			if (open.text == "(") != (t.text == ")") {
				return nil, errAt(b.pos(t.start), "mismatched %q in SCHEMA: expected the bracket opened at column %d to be closed first", t.text, b.pos(open.start).Column)
			}
			stack = stack[:len(stack)-1]
		case sComma:
			if len(stack) == 0 {
				items = append(items, cur)
				cur = nil
				continue
			}
		}
		cur = append(cur, t)
	}
	if len(stack) > 0 {
		return nil, errAt(b.pos(stack[0].start), "unclosed %q in SCHEMA: expected a matching closing bracket", stack[0].text)
	}
	items = append(items, cur)
	return items, nil
}

// group returns the end index (exclusive) of the balanced group opening at i.
func group(toks []stok, i int) int {
	depth := 0
	for j := i; j < len(toks); j++ {
		switch toks[j].kind {
		case sOpen:
			depth++
		case sClose:
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(toks)
}

var columnClauses = map[string]bool{
	"NULL": true, "NOT": true, "DEFAULT": true, "MATERIALIZED": true, "ALIAS": true,
	"EPHEMERAL": true, "CODEC": true,
}

func unbacktick(s string) string {
	s = s[1 : len(s)-1]
	s = strings.ReplaceAll(s, "``", "`")
	return strings.ReplaceAll(s, "\\`", "`")
}

func isJSONPathTok(t stok) bool {
	return t.kind == sBacktick && strings.HasPrefix(t.text, "`json:")
}

// parseSchema parses a SCHEMA block (spec §2.2), with the column names its expressions read.
func parseSchema(e *entry) ([]Column, []ColumnUse, error) {
	if !e.block {
		// An inline SCHEMA is accepted as one line.
		w := e.valuePos()
		e = &entry{keyword: e.keyword, pos: e.pos, block: true, lines: []srcLine{{text: strings.Repeat(" ", w.Column-1) + e.value(), file: w.File, num: w.Line}}}
	}
	b := newBlockSrc(e.lines)
	toks, err := lexSchema(b, e.pos)
	if err != nil {
		return nil, nil, err
	}
	items, err := splitTop(b, toks)
	if err != nil {
		return nil, nil, err
	}
	var cols []Column
	var uses []ColumnUse
	seen := map[string]Pos{}
	for _, it := range items {
		if len(it) == 0 {
			continue
		}
		if it[0].kind == sWord && strings.EqualFold(it[0].text, "INDEX") && len(it) > 1 && it[1].kind == sWord {
			continue // tolerated, ignored (spec §2.2)
		}
		c, u, err := parseColumn(b, it)
		if err != nil {
			return nil, nil, err
		}
		if prev, dup := seen[c.Name]; dup {
			return nil, nil, errAt(c.Pos, "column %q is defined twice (first at line %d)", c.Name, prev.Line)
		}
		seen[c.Name] = c.Pos
		cols = append(cols, c)
		uses = append(uses, u...)
	}
	return cols, uses, nil
}

func parseColumn(b *blockSrc, t []stok) (Column, []ColumnUse, error) {
	var c Column
	var uses []ColumnUse
	c.Pos = b.pos(t[0].start)
	switch {
	case t[0].kind == sBacktick:
		c.Name = unbacktick(t[0].text)
		if c.Name == "" {
			return c, nil, errAt(c.Pos, "empty column name: expected a name between back-quotes")
		}
	case t[0].kind == sWord && isColumnIdent(t[0].text):
		c.Name = t[0].text
	default:
		return c, nil, errAt(c.Pos, "expected a column name (an identifier or a `back-quoted` name), found %q", t[0].text)
	}
	if hasControl(c.Name) {
		return c, nil, errAt(c.Pos, "column name %q holds a control character", c.Name)
	}
	i := 1
	// Type: a word that is not a clause keyword, with an optional (...) group.
	if i < len(t) && t[i].kind == sWord && !columnClauses[strings.ToUpper(t[i].text)] {
		start := t[i].start
		end := t[i].end
		i++
		if i < len(t) && t[i].kind == sOpen && t[i].text == "(" && t[i].start == end {
			g := group(t, i)
			end = t[g-1].end
			i = g
		}
		typ, err := parseType(b.text[start:end], start, b.pos, c.Name)
		if err != nil {
			return c, nil, err
		}
		if strings.HasPrefix(typ, "Nullable(") && strings.HasSuffix(typ, ")") {
			c.Type = strings.TrimSpace(typ[len("Nullable(") : len(typ)-1])
			c.Nullable = true
		} else {
			c.Type = typ
		}
	} else if i < len(t) && t[i].kind != sWord && !isJSONPathTok(t[i]) {
		return c, nil, errAt(b.pos(t[i].start), "expected a type after column %q, found %q", c.Name, t[i].text)
	}
	sawCodec := false
	for i < len(t) {
		tk := t[i]
		if isJSONPathTok(tk) {
			if c.JSONPath != "" {
				return c, nil, errAt(b.pos(tk.start), "column %q has two `json:` paths", c.Name)
			}
			c.JSONPath = strings.TrimPrefix(unbacktick(tk.text), "json:")
			if c.JSONPath == "" {
				return c, nil, errAt(b.pos(tk.start), "empty JSON path for column %q: expected `json:$.path`", c.Name)
			}
			i++
			continue
		}
		if tk.kind != sWord {
			return c, nil, errAt(b.pos(tk.start), "unexpected %q in column %q: expected NULL, NOT NULL, DEFAULT, MATERIALIZED, ALIAS, CODEC(...) or `json:$.path`", tk.text, c.Name)
		}
		kw := strings.ToUpper(tk.text)
		switch kw {
		case "NULL":
			c.Nullable = true
			i++
		case "NOT":
			if i+1 >= len(t) || !strings.EqualFold(t[i+1].text, "NULL") {
				return c, nil, errAt(b.pos(tk.start), "expected NULL after NOT in column %q", c.Name)
			}
			c.NotNull = true
			i += 2
		case "DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL":
			if c.DefaultKind != "" {
				return c, nil, errAt(b.pos(tk.start), "column %q has both %s and %s: only one default clause is allowed", c.Name, c.DefaultKind, kw)
			}
			if kw == "MATERIALIZED" && sawCodec {
				return c, nil, errAt(b.pos(tk.start), "MATERIALIZED must come before CODEC in column %q", c.Name)
			}
			j := i + 1
			for j < len(t) {
				if isJSONPathTok(t[j]) {
					break
				}
				if t[j].kind == sWord && strings.EqualFold(t[j].text, "CODEC") && j+1 < len(t) && t[j+1].kind == sOpen {
					break
				}
				if t[j].kind == sOpen {
					j = group(t, j)
					continue
				}
				j++
			}
			if j == i+1 {
				if kw == "EPHEMERAL" {
					c.DefaultKind = kw
					i = j
					continue
				}
				return c, nil, errAt(b.pos(tk.start), "expected an expression after %s in column %q", kw, c.Name)
			}
			start := t[i+1].start
			sql, u, err := expr(b.text[start:t[j-1].end], start, b.pos, fmt.Sprintf("column %s %s", c.Name, kw), chsql.ExprOptions{})
			if err != nil {
				return c, nil, err
			}
			if sql == "" {
				return c, nil, errAt(b.pos(tk.start), "expected an expression after %s in column %q (found only a comment)", kw, c.Name)
			}
			c.DefaultKind = kw
			c.DefaultExpr = sql
			uses = append(uses, u...)
			i = j
		case "CODEC":
			if i+1 >= len(t) || t[i+1].kind != sOpen || t[i+1].text != "(" {
				return c, nil, errAt(b.pos(tk.start), "expected CODEC(...) in column %q", c.Name)
			}
			g := group(t, i+1)
			inner := b.text[t[i+1].end:t[g-1].start]
			if strings.TrimSpace(inner) == "" {
				return c, nil, errAt(b.pos(tk.start), "empty CODEC() in column %q: expected a codec such as ZSTD(1)", c.Name)
			}
			codec, err := parseCodec(inner, t[i+1].end, b.pos, c.Name)
			if err != nil {
				return c, nil, err
			}
			c.Codec = codec
			sawCodec = true
			i = g
		default:
			return c, nil, errAt(b.pos(tk.start), "unexpected %q in column %q: expected NULL, NOT NULL, DEFAULT, MATERIALIZED, ALIAS, CODEC(...) or `json:$.path`", tk.text, c.Name)
		}
	}
	if c.Type == "" && c.DefaultKind == "" {
		return c, nil, errAt(c.Pos, "column %q has no type: expected e.g. `%s` String", c.Name, c.Name)
	}
	if c.Nullable && c.DefaultKind == "DEFAULT" && strings.EqualFold(strings.TrimSpace(c.DefaultExpr), "NULL") {
		c.DefaultKind, c.DefaultExpr = "", ""
		uses = nil
	}
	return c, uses, nil
}

// hasControl reports a control character, which has no place in a name.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func isColumnIdent(s string) bool {
	if s == "" || !(isIdentByte(s[0]) || s[0] >= 0x80) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isIdentByte(c) || (c >= '0' && c <= '9') || c == '.' || c >= 0x80) {
			return false
		}
	}
	return true
}

// parseIndexes parses an INDEXES block: one
// "[INDEX] name expr TYPE type[(args)] [GRANULARITY n] [,]" per line.
func parseIndexes(e *entry) ([]Index, []ColumnUse, error) {
	lines := e.lines
	if !e.block {
		w := e.valuePos()
		lines = []srcLine{{text: strings.Repeat(" ", w.Column-1) + e.value(), file: w.File, num: w.Line}}
	}
	var out []Index
	var uses []ColumnUse
	for _, l := range lines {
		b := newBlockSrc([]srcLine{l})
		all, err := chsql.Lex(l.text)
		if err == nil {
			_, err = chsql.Normalize(l.text)
		}
		if err != nil {
			return nil, nil, sqlError(err, 0, b.pos, "INDEXES")
		}
		toks := chsql.Significant(all)
		if len(toks) > 0 && toks[len(toks)-1].Is(",") {
			toks = toks[:len(toks)-1]
		}
		if len(toks) == 0 {
			continue
		}
		trimmed := strings.TrimSpace(l.text[toks[0].Start:toks[len(toks)-1].End])
		pos := b.pos(toks[0].Start)
		if toks[0].Kind == chsql.Ident && strings.EqualFold(toks[0].Text, "INDEX") {
			toks = toks[1:]
		}
		depth := 0
		for _, t := range toks {
			switch {
			case t.Is("(") || t.Is("["):
				depth++
			case t.Is(")") || t.Is("]"):
				depth--
			case t.Is(",") && depth == 0:
				return nil, nil, errAt(b.pos(t.Start), "one index per line: unexpected ',' (expected name expr TYPE type[(args)] [GRANULARITY n])")
			}
		}
		typeAt, granAt := indexKeywords(toks, 1)
		if len(toks) < 4 || typeAt < 2 || typeAt == len(toks)-1 || granAt == typeAt+1 {
			return nil, nil, errAt(pos, "invalid index %q: expected name expr TYPE type[(args)] [GRANULARITY n]", trimmed)
		}
		n := toks[0]
		if n.Kind != chsql.Ident && n.Kind != chsql.QuotedIdent || n.Kind == chsql.Ident && !isIdent(n.Text) || n.Value() == "" {
			return nil, nil, errAt(pos, "invalid index name %q: expected an identifier", n.Text)
		}
		if hasControl(n.Value()) {
			return nil, nil, errAt(pos, "index name %q holds a control character", n.Value())
		}
		idx := Index{Name: n.Value(), Pos: pos}
		where := "index " + idx.Name
		start := toks[1].Start
		sql, u, err := expr(l.text[start:toks[typeAt-1].End], start, b.pos, where, chsql.ExprOptions{})
		if err != nil {
			return nil, nil, err
		}
		idx.Expr = sql
		typeToks := toks[typeAt+1:]
		if granAt >= 0 {
			typeToks = toks[typeAt+1 : granAt]
			g := toks[granAt+1:]
			text := ""
			for _, t := range g {
				text += t.Text
			}
			if len(g) != 1 || g[0].Kind != chsql.Number || strings.Trim(g[0].Text, "0123456789") != "" || strings.Trim(g[0].Text, "0") == "" {
				return nil, nil, errAt(pos, "invalid index GRANULARITY %q: expected a positive integer", text)
			}
			idx.Granularity = g[0].Text
		}
		if len(typeToks) > 0 {
			tstart := typeToks[0].Start
			if _, err := lexPart(l.text[tstart:typeToks[len(typeToks)-1].End], tstart, b.pos, "type of index "+idx.Name); err != nil {
				return nil, nil, err
			}
		}
		if idx.Type, err = parseIndexType(typeToks, l.text, b.pos, idx.Name); err != nil {
			return nil, nil, err
		}
		out = append(out, idx)
		uses = append(uses, u...)
	}
	return out, uses, nil
}
