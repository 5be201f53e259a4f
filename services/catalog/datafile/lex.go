package datafile

import (
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// maxIncludeDepth bounds INCLUDE nesting so that an include cycle is reported
// instead of looping forever.
const maxIncludeDepth = 16

// srcLine is one physical line of a datafile (or of an included file), kept
// with its origin so that every later error can name file, line and column.
type srcLine struct {
	text string // without the line terminator
	file string
	num  int // 1-based
	// depth is the INCLUDE nesting level the line came from (0 = the datafile).
	depth int
}

// word is one shell-like token of a keyword line. Quotes are kept in text;
// the value builder strips one surrounding pair (spec §1.4).
type word struct {
	text string
	col  int // 1-based column, in runes
}

// entry is one keyword occurrence: inline (KEY value…) or block (KEY >).
type entry struct {
	keyword string // upper-case
	pos     Pos    // position of the keyword
	args    []word // inline tokens after the keyword
	block   bool
	lines   []srcLine // block body lines (blank and '#' lines already dropped)
}

// value returns the inline value: tokens joined with single spaces, one pair
// of surrounding quotes removed.
func (e *entry) value() string {
	if e.block {
		return blockText(e.lines)
	}
	parts := make([]string, len(e.args))
	for i, a := range e.args {
		parts[i] = a.text
	}
	return unquote(strings.Join(parts, " "))
}

// valuePos is where the value starts (first argument, or the first block line).
func (e *entry) valuePos() Pos {
	if e.block {
		if len(e.lines) > 0 {
			l := e.lines[0]
			return Pos{File: l.file, Line: l.num, Column: leadingCol(l.text)}
		}
		return e.pos
	}
	if len(e.args) > 0 {
		return Pos{File: e.pos.File, Line: e.pos.Line, Column: e.args[0].col}
	}
	return e.pos
}

func leadingCol(s string) int {
	t := strings.TrimLeft(s, " \t")
	return utf8.RuneCountInString(s[:len(s)-len(t)]) + 1
}

func blockText(lines []srcLine) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.text)
	}
	return b.String()
}

func unquote(s string) string {
	if len(s) >= 2 {
		if (s[0] == '"' && s[len(s)-1] == '"') || (s[0] == '\'' && s[len(s)-1] == '\'') {
			return s[1 : len(s)-1]
		}
	}
	return s
}

// splitLines splits src into lines, dropping "\r" of CRLF endings.
func splitLines(file string, src []byte) []srcLine {
	text := strings.TrimPrefix(string(src), "\ufeff")
	raw := strings.Split(text, "\n")
	if len(raw) > 0 && raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	out := make([]srcLine, len(raw))
	for i, r := range raw {
		out[i] = srcLine{text: strings.TrimSuffix(r, "\r"), file: file, num: i + 1}
	}
	return out
}

// skippable reports whether a line tokenizes to nothing: blank, or starting
// with '#' (spec §1.1). Such lines are dropped everywhere, also inside blocks.
func skippable(s string) bool {
	t := strings.TrimLeft(s, " \t\f\v")
	return t == "" || t[0] == '#'
}

// tokenize splits a line the way a non-POSIX shell lexer does: whitespace
// separates words, quotes group words and are kept, '#' at the start of a word
// starts a comment. An unbalanced quote makes the whole line one word.
func tokenize(s string) []word {
	var out []word
	i := 0
	n := len(s)
	for i < n {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\f' || c == '\v' {
			i++
			continue
		}
		if c == '#' {
			break
		}
		start := i
		for i < n {
			c = s[i]
			if c == ' ' || c == '\t' || c == '\f' || c == '\v' {
				break
			}
			if c == '"' || c == '\'' {
				j := strings.IndexByte(s[i+1:], c)
				if j < 0 {
					t := strings.TrimSpace(s)
					return []word{{text: t, col: leadingCol(s)}}
				}
				i += j + 2
				continue
			}
			i++
		}
		out = append(out, word{text: s[start:i], col: utf8.RuneCountInString(s[:start]) + 1})
	}
	return out
}

// substitute replaces $name and ${name} from vars, leaving unknown names and
// malformed references intact; "$$" becomes "$" (Python's safe_substitute).
func substitute(s string, vars map[string]string) string {
	return substituteMode(s, vars, true)
}

// substituteSQL is substitute for SQL bodies: "$$" is kept, so ClickHouse
// $$heredoc$$ strings survive.
func substituteSQL(s string, vars map[string]string) string {
	return substituteMode(s, vars, false)
}

func substituteMode(s string, vars map[string]string, dollarEscape bool) string {
	if strings.IndexByte(s, '$') < 0 {
		return s
	}
	var b strings.Builder
	i := 0
	for i < len(s) {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			if !dollarEscape {
				b.WriteByte('$')
			}
			i += 2
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end >= 0 {
				name := s[i+2 : i+2+end]
				if isIdent(name) {
					if v, ok := vars[name]; ok {
						b.WriteString(v)
						i += end + 3
						continue
					}
				}
			}
			b.WriteByte('$')
			i++
			continue
		}
		j := i + 1
		for j < len(s) && (isIdentByte(s[j]) || (j > i+1 && s[j] >= '0' && s[j] <= '9')) {
			j++
		}
		name := s[i+1 : j]
		if isIdent(name) {
			if v, ok := vars[name]; ok {
				b.WriteString(v)
				i = j
				continue
			}
		}
		b.WriteByte('$')
		i++
	}
	return b.String()
}

func isIdentByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(s string) bool {
	if s == "" || !isIdentByte(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isIdentByte(c) && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isNameIdent accepts resource and node names: letters, digits, '_' (not
// starting with a digit).
func isNameIdent(s string) bool { return isIdent(s) }

// terminatesBlock reports whether line ends a '>' block: a column-0 line whose
// first word is a known keyword and which does not start with "from".
func terminatesBlock(text string) bool {
	if text == "" || text[0] == ' ' || text[0] == '\t' || strings.HasPrefix(text, "from") {
		return false
	}
	w := tokenize(text)
	if len(w) == 0 {
		return false
	}
	kw := strings.ToUpper(w[0].text)
	return isKnownKeyword(kw) || kw == "SETTINGS"
}

// scan turns lines into entries, expanding INCLUDE lines in place.
func (p *parser) scan(lines []srcLine) ([]entry, error) {
	var out []entry
	for i := 0; i < len(lines); {
		ln := lines[i]
		if skippable(ln.text) {
			i++
			continue
		}
		words := tokenize(ln.text)
		kw := strings.ToUpper(words[0].text)
		pos := Pos{File: ln.file, Line: ln.num, Column: words[0].col}
		if kw == "INCLUDE" {
			inc, err := p.include(ln, words)
			if err != nil {
				return nil, err
			}
			rest := append(inc, lines[i+1:]...)
			lines = append(lines[:i:i], rest...)
			continue
		}
		if kw == "SETTINGS" {
			return nil, errAt(pos, "SETTINGS is not a datafile keyword: use ENGINE_SETTINGS for table settings")
		}
		if !isKnownKeyword(kw) {
			return nil, errAt(pos, "unknown keyword %q: expected a datafile keyword (SCHEMA, ENGINE, ENGINE_*, NODE, SQL, TYPE, DESCRIPTION, TOKEN, TAGS, INCLUDE, VERSION, ...)", words[0].text)
		}
		e := entry{keyword: kw, pos: pos}
		if len(words) >= 2 && words[1].text == ">" {
			e.block = true
			j := i + 1
			if len(words) > 2 {
				// Text after '>' on the same line is the first line of the block.
				first := words[2].col
				e.lines = append(e.lines, srcLine{text: strings.Repeat(" ", first-1) + ln.text[byteOffset(ln.text, first):], file: ln.file, num: ln.num})
			}
			for ; j < len(lines); j++ {
				t := lines[j].text
				if skippable(t) {
					continue
				}
				if terminatesBlock(t) {
					break
				}
				e.lines = append(e.lines, lines[j])
			}
			i = j
		} else {
			e.args = words[1:]
			i++
		}
		out = append(out, e)
	}
	return out, nil
}

// byteOffset converts a 1-based rune column to a byte offset in s.
func byteOffset(s string, col int) int {
	n := 1
	for i := range s {
		if n == col {
			return i
		}
		n++
	}
	return len(s)
}

func (p *parser) include(ln srcLine, words []word) ([]srcLine, error) {
	pos := Pos{File: ln.file, Line: ln.num, Column: words[0].col}
	if len(words) < 2 {
		return nil, errAt(pos, "INCLUDE expects a file path: INCLUDE \"path.incl\" [\"name=value\" ...]")
	}
	if ln.depth >= maxIncludeDepth {
		return nil, errAt(pos, "INCLUDE nested more than %d levels deep (is there an include cycle?)", maxIncludeDepth)
	}
	if p.opts.ReadFile == nil {
		return nil, errAt(pos, "INCLUDE is not available here: no file reader was configured")
	}
	rel := substitute(unquote(words[1].text), p.opts.Env)
	target := rel
	if !filepath.IsAbs(rel) {
		target = filepath.Join(filepath.Dir(ln.file), rel)
	}
	vars := map[string]string{}
	for _, a := range words[2:] {
		kv := unquote(a.text)
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !isIdent(strings.TrimSpace(k)) {
			return nil, errAt(Pos{File: ln.file, Line: ln.num, Column: a.col}, "INCLUDE variable %q: expected name=value", kv)
		}
		vars[strings.TrimSpace(k)] = v
	}
	data, err := p.opts.ReadFile(target)
	if err != nil {
		return nil, errAt(Pos{File: ln.file, Line: ln.num, Column: words[1].col}, "INCLUDE %q: cannot read %s: %v", rel, target, err)
	}
	text := substitute(string(data), vars)
	out := splitLines(target, []byte(text))
	for i := range out {
		out[i].depth = ln.depth + 1
	}
	return out, nil
}
