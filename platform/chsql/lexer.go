// Package chsql is a ClickHouse SQL lexer and a lightweight analysis of
// queries: it finds every table reference (FROM, JOIN, subqueries at any
// depth, IN table, table functions, joinGet/dictGet names) with its byte
// offsets, tells table references from CTE names and from a pipe's nodes,
// classifies statements, and rewrites references in place — to qualify names
// with a workspace database, refuse table functions and other databases, or
// re-point a query at a staging table or subquery.
//
// The analysis is token based, not a full SQL parser. It errs on the side of
// reporting: a name it cannot prove to be a CTE in scope is reported as a
// table reference, so that qualification never lets an unqualified name
// through.
package chsql

import (
	"fmt"
	"strings"
)

// TokenKind is the kind of a lexical token.
type TokenKind int

const (
	EOF TokenKind = iota
	// Ident is a bare identifier or keyword.
	Ident
	// QuotedIdent is a `back-quoted` or "double-quoted" identifier.
	QuotedIdent
	// String is a 'single-quoted' string or a $heredoc$.
	String
	Number
	// Punct is an operator or punctuation: ( ) [ ] { } , ; . + - * / % = == != <> < <= > >= || -> :: ? : @ ^ !
	Punct
	Comment
)

func (k TokenKind) String() string {
	switch k {
	case EOF:
		return "EOF"
	case Ident:
		return "Ident"
	case QuotedIdent:
		return "QuotedIdent"
	case String:
		return "String"
	case Number:
		return "Number"
	case Punct:
		return "Punct"
	case Comment:
		return "Comment"
	}
	return "?"
}

// Token is one lexical token; Start and End are byte offsets into the input.
type Token struct {
	Kind       TokenKind
	Start, End int
	Text       string
}

// Value returns the token's value: the unquoted, unescaped text of quoted
// identifiers and strings, the text otherwise.
func (t Token) Value() string {
	switch t.Kind {
	case QuotedIdent:
		return unescape(t.Text[1:len(t.Text)-1], t.Text[0])
	case String:
		if strings.HasPrefix(t.Text, "$") {
			i := strings.IndexByte(t.Text[1:], '$') + 2
			return t.Text[i : len(t.Text)-i]
		}
		return unescape(t.Text[1:len(t.Text)-1], '\'')
	}
	return t.Text
}

// Upper returns the upper-cased text of a bare identifier (keyword test).
func (t Token) Upper() string {
	if t.Kind != Ident {
		return ""
	}
	return strings.ToUpper(t.Text)
}

func (t Token) is(p string) bool { return t.Kind == Punct && t.Text == p }

// Is reports whether the token is the punctuation p.
func (t Token) Is(p string) bool { return t.is(p) }

// Error is a lexing or analysis error at a byte offset.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg) }

func unescape(s string, q byte) string {
	if strings.IndexByte(s, '\\') < 0 && strings.IndexByte(s, q) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == q && i+1 < len(s) && s[i+1] == q {
			b.WriteByte(q)
			i++
			continue
		}
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'a':
			b.WriteByte('\a')
		case 'v':
			b.WriteByte('\v')
		case 'e':
			b.WriteByte(0x1b)
		case 'x':
			if i+2 < len(s)+0 && isHex(s[i+1]) && isHex(s[i+2]) {
				b.WriteByte(hexVal(s[i+1])<<4 | hexVal(s[i+2]))
				i += 2
			} else {
				b.WriteByte('x')
			}
		default:
			b.WriteByte(e)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentByte(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

var puncts3 = []string{"<=>"}
var puncts2 = []string{"==", "!=", "<>", "<=", ">=", "||", "->", "::", "&&"}

// Lex splits sql into tokens, comments included (Kind Comment), whitespace
// excluded. It fails on unterminated strings, quoted identifiers and
// comments.
func Lex(sql string) ([]Token, error) {
	var out []Token
	i := 0
	n := len(sql)
	for i < n {
		c := sql[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < n && sql[i+1] == '-', c == '#':
			for i < n && sql[i] != '\n' {
				i++
			}
			out = append(out, Token{Kind: Comment, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '/' && i+1 < n && sql[i+1] == '*':
			// ClickHouse block comments nest.
			depth := 0
			for i < n {
				if i+1 < n && sql[i] == '/' && sql[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if i+1 < n && sql[i] == '*' && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				i++
			}
			if depth != 0 {
				return nil, &Error{Offset: start, Msg: "unterminated /* comment"}
			}
			out = append(out, Token{Kind: Comment, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '\'' || c == '`' || c == '"':
			j := i + 1
			closed := false
			for j < n {
				if sql[j] == '\\' {
					j += 2
					continue
				}
				if sql[j] == c {
					if j+1 < n && sql[j+1] == c {
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				j++
			}
			if !closed {
				what := "string literal"
				if c != '\'' {
					what = "quoted identifier"
				}
				return nil, &Error{Offset: start, Msg: "unterminated " + what}
			}
			k := String
			if c != '\'' {
				k = QuotedIdent
			}
			i = j
			out = append(out, Token{Kind: k, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '$' && heredocTag(sql[i:]) != "":
			tag := heredocTag(sql[i:])
			end := strings.Index(sql[i+len(tag):], tag)
			if end < 0 {
				return nil, &Error{Offset: start, Msg: "unterminated heredoc " + tag}
			}
			i += len(tag) + end + len(tag)
			out = append(out, Token{Kind: String, Start: start, End: i, Text: sql[start:i]})
			continue
		case c >= '0' && c <= '9' || c == '.' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9' && !prevIsDotTarget(out, sql, i):
			i = lexNumber(sql, i)
			// Like ClickHouse, a number running into word characters is an
			// identifier ("1t", "0x1Fg", "1e5x") if the whole run is word
			// characters, and an error otherwise ("1.5t").
			if i < n && isIdentByte(sql[i]) {
				for i < n && isIdentByte(sql[i]) {
					i++
				}
				for k := start; k < i; k++ {
					if !isIdentByte(sql[k]) {
						return nil, &Error{Offset: start, Msg: fmt.Sprintf("invalid number %q", sql[start:i])}
					}
				}
				out = append(out, Token{Kind: Ident, Start: start, End: i, Text: sql[start:i]})
				continue
			}
			out = append(out, Token{Kind: Number, Start: start, End: i, Text: sql[start:i]})
			continue
		case isIdentStart(c) || c == '$':
			for i < n && isIdentByte(sql[i]) {
				i++
			}
			out = append(out, Token{Kind: Ident, Start: start, End: i, Text: sql[start:i]})
			continue
		}
		p := ""
		for _, cand := range puncts3 {
			if strings.HasPrefix(sql[i:], cand) {
				p = cand
			}
		}
		if p == "" {
			for _, cand := range puncts2 {
				if strings.HasPrefix(sql[i:], cand) {
					p = cand
					break
				}
			}
		}
		if p == "" {
			p = sql[i : i+1]
			if c >= 0x80 {
				return nil, &Error{Offset: i, Msg: "unexpected byte in SQL"}
			}
		}
		i += len(p)
		out = append(out, Token{Kind: Punct, Start: start, End: i, Text: p})
	}
	return out, nil
}

// prevIsDotTarget reports whether a '.' at i follows an expression, as in
// "tuple.1" (element access), rather than starting a number like ".5".
func prevIsDotTarget(out []Token, sql string, i int) bool {
	k := len(out) - 1
	for k >= 0 && out[k].Kind == Comment { // a comment separates like whitespace
		k--
	}
	if k < 0 {
		return false
	}
	p := out[k]
	if p.End != i || k != len(out)-1 {
		return p.Kind == Ident || p.Kind == QuotedIdent || p.is(")") || p.is("]")
	}
	return p.Kind == Ident || p.Kind == QuotedIdent || p.Kind == Number || p.is(")") || p.is("]")
}

func heredocTag(s string) string {
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	j := 1
	for j < len(s) && (isIdentStart(s[j]) || s[j] >= '0' && s[j] <= '9') {
		if j == 1 && s[j] >= '0' && s[j] <= '9' {
			return ""
		}
		j++
	}
	if j < len(s) && s[j] == '$' {
		return s[:j+1]
	}
	return ""
}

func lexNumber(s string, i int) int {
	n := len(s)
	if s[i] == '0' && i+1 < n && (s[i+1] == 'x' || s[i+1] == 'X' || s[i+1] == 'b' || s[i+1] == 'B') {
		j := i + 2
		for j < n && (isHex(s[j]) || s[j] == '_') {
			j++
		}
		if j > i+2 {
			return j
		}
	}
	j := i
	for j < n && (s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
		j++
	}
	if j < n && s[j] == '.' && !(j+1 < n && s[j+1] == '.') {
		j++
		for j < n && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	}
	if j < n && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < n && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < n && s[k] >= '0' && s[k] <= '9' {
			for k < n && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			j = k
		}
	}
	return j
}

// Significant returns the tokens without comments.
func Significant(toks []Token) []Token {
	out := make([]Token, 0, len(toks))
	for _, t := range toks {
		if t.Kind != Comment {
			out = append(out, t)
		}
	}
	return out
}
