package datafile

import (
	"strings"
	"unicode/utf8"
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

// parseSchema parses a SCHEMA block (spec §2.2).
func parseSchema(e *entry) ([]Column, error) {
	if !e.block {
		// An inline SCHEMA is accepted as one line.
		w := e.valuePos()
		e = &entry{keyword: e.keyword, pos: e.pos, block: true, lines: []srcLine{{text: strings.Repeat(" ", w.Column-1) + e.value(), file: w.File, num: w.Line}}}
	}
	b := newBlockSrc(e.lines)
	toks, err := lexSchema(b, e.pos)
	if err != nil {
		return nil, err
	}
	items, err := splitTop(b, toks)
	if err != nil {
		return nil, err
	}
	var cols []Column
	seen := map[string]Pos{}
	for _, it := range items {
		if len(it) == 0 {
			continue
		}
		if it[0].kind == sWord && strings.EqualFold(it[0].text, "INDEX") && len(it) > 1 && it[1].kind == sWord {
			continue // tolerated, ignored (spec §2.2)
		}
		c, err := parseColumn(b, it)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[c.Name]; dup {
			return nil, errAt(c.Pos, "column %q is defined twice (first at line %d)", c.Name, prev.Line)
		}
		seen[c.Name] = c.Pos
		cols = append(cols, c)
	}
	return cols, nil
}

func parseColumn(b *blockSrc, t []stok) (Column, error) {
	var c Column
	c.Pos = b.pos(t[0].start)
	switch {
	case t[0].kind == sBacktick:
		c.Name = unbacktick(t[0].text)
		if c.Name == "" {
			return c, errAt(c.Pos, "empty column name: expected a name between back-quotes")
		}
	case t[0].kind == sWord && isColumnIdent(t[0].text):
		c.Name = t[0].text
	default:
		return c, errAt(c.Pos, "expected a column name (an identifier or a `back-quoted` name), found %q", t[0].text)
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
		typ := b.text[start:end]
		if strings.HasPrefix(typ, "Nullable(") && strings.HasSuffix(typ, ")") {
			c.Type = strings.TrimSpace(typ[len("Nullable(") : len(typ)-1])
			c.Nullable = true
		} else {
			c.Type = typ
		}
	} else if i < len(t) && t[i].kind != sWord && !isJSONPathTok(t[i]) {
		return c, errAt(b.pos(t[i].start), "expected a type after column %q, found %q", c.Name, t[i].text)
	}
	sawCodec := false
	for i < len(t) {
		tk := t[i]
		if isJSONPathTok(tk) {
			if c.JSONPath != "" {
				return c, errAt(b.pos(tk.start), "column %q has two `json:` paths", c.Name)
			}
			c.JSONPath = strings.TrimPrefix(unbacktick(tk.text), "json:")
			if c.JSONPath == "" {
				return c, errAt(b.pos(tk.start), "empty JSON path for column %q: expected `json:$.path`", c.Name)
			}
			i++
			continue
		}
		if tk.kind != sWord {
			return c, errAt(b.pos(tk.start), "unexpected %q in column %q: expected NULL, NOT NULL, DEFAULT, MATERIALIZED, ALIAS, CODEC(...) or `json:$.path`", tk.text, c.Name)
		}
		kw := strings.ToUpper(tk.text)
		switch kw {
		case "NULL":
			c.Nullable = true
			i++
		case "NOT":
			if i+1 >= len(t) || !strings.EqualFold(t[i+1].text, "NULL") {
				return c, errAt(b.pos(tk.start), "expected NULL after NOT in column %q", c.Name)
			}
			c.NotNull = true
			i += 2
		case "DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL":
			if c.DefaultKind != "" {
				return c, errAt(b.pos(tk.start), "column %q has both %s and %s: only one default clause is allowed", c.Name, c.DefaultKind, kw)
			}
			if kw == "MATERIALIZED" && sawCodec {
				return c, errAt(b.pos(tk.start), "MATERIALIZED must come before CODEC in column %q", c.Name)
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
				return c, errAt(b.pos(tk.start), "expected an expression after %s in column %q", kw, c.Name)
			}
			c.DefaultKind = kw
			c.DefaultExpr = b.text[t[i+1].start:t[j-1].end]
			i = j
		case "CODEC":
			if i+1 >= len(t) || t[i+1].kind != sOpen || t[i+1].text != "(" {
				return c, errAt(b.pos(tk.start), "expected CODEC(...) in column %q", c.Name)
			}
			g := group(t, i+1)
			c.Codec = strings.TrimSpace(b.text[t[i+1].end:t[g-1].start])
			if c.Codec == "" {
				return c, errAt(b.pos(tk.start), "empty CODEC() in column %q: expected a codec such as ZSTD(1)", c.Name)
			}
			sawCodec = true
			i = g
		default:
			return c, errAt(b.pos(tk.start), "unexpected %q in column %q: expected NULL, NOT NULL, DEFAULT, MATERIALIZED, ALIAS, CODEC(...) or `json:$.path`", tk.text, c.Name)
		}
	}
	if c.Type == "" && c.DefaultKind == "" {
		return c, errAt(c.Pos, "column %q has no type: expected e.g. `%s` String", c.Name, c.Name)
	}
	if c.Nullable && c.DefaultKind == "DEFAULT" && strings.EqualFold(strings.TrimSpace(c.DefaultExpr), "NULL") {
		c.DefaultKind, c.DefaultExpr = "", ""
	}
	return c, nil
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
func parseIndexes(e *entry) ([]Index, error) {
	lines := e.lines
	if !e.block {
		w := e.valuePos()
		lines = []srcLine{{text: strings.Repeat(" ", w.Column-1) + e.value(), file: w.File, num: w.Line}}
	}
	var out []Index
	for _, l := range lines {
		text := l.text
		if k := strings.Index(text, "--"); k >= 0 && !strings.Contains(text[:k], "'") {
			text = text[:k]
		}
		trimmed := strings.TrimSpace(text)
		trimmed = strings.TrimSpace(strings.TrimSuffix(trimmed, ","))
		if trimmed == "" {
			continue
		}
		col := leadingCol(text)
		pos := Pos{File: l.file, Line: l.num, Column: col}
		fields := strings.Fields(trimmed)
		if strings.EqualFold(fields[0], "INDEX") {
			fields = fields[1:]
		}
		typeAt := -1
		for i, f := range fields {
			if f == "TYPE" {
				if typeAt >= 0 {
					return nil, errAt(pos, "index line has more than one TYPE: expected name expr TYPE type [GRANULARITY n]")
				}
				typeAt = i
			}
		}
		if len(fields) < 4 || typeAt < 2 || typeAt == len(fields)-1 {
			return nil, errAt(pos, "invalid index %q: expected name expr TYPE type[(args)] [GRANULARITY n]", trimmed)
		}
		idx := Index{Name: fields[0], Expr: strings.Join(fields[1:typeAt], " "), Pos: pos}
		rest := fields[typeAt+1:]
		g := -1
		for i, f := range rest {
			if strings.EqualFold(f, "GRANULARITY") {
				g = i
			}
		}
		if g >= 0 {
			if g != len(rest)-2 {
				return nil, errAt(pos, "invalid index %q: expected GRANULARITY followed by one number at the end", trimmed)
			}
			idx.Granularity = rest[g+1]
			for _, ch := range idx.Granularity {
				if ch < '0' || ch > '9' {
					return nil, errAt(pos, "invalid index GRANULARITY %q: expected a positive integer", idx.Granularity)
				}
			}
			rest = rest[:g]
		}
		if len(rest) == 0 {
			return nil, errAt(pos, "invalid index %q: expected an index type after TYPE", trimmed)
		}
		idx.Type = strings.Join(rest, " ")
		if !isIdent(idx.Name) {
			return nil, errAt(pos, "invalid index name %q: expected an identifier", idx.Name)
		}
		out = append(out, idx)
	}
	return out, nil
}
