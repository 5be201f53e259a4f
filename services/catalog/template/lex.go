package template

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tName
	tInt
	tFloat
	tString
	tOp
)

type etok struct {
	kind tokKind
	text string // operator text, name, or decoded string
	raw  string
	off  int // byte offset in the template source
}

// exprLexer tokenizes an expression located at base in the template source.
func lexExpr(src string, base int) ([]etok, error) {
	var out []etok
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '\\' && i+1 < len(src) && (src[i+1] == '\n' || src[i+1] == '\r'):
			i += 2
		case c == '#':
			return nil, &posError{off: base + i, msg: "comments are not allowed inside template expressions"}
		case isNameStart(c):
			j := i
			for j < len(src) && isNameByte(src[j]) {
				j++
			}
			// String prefixes (r'', b'', f'', u'') are not supported: f-strings
			// would evaluate code.
			if j < len(src) && (src[j] == '\'' || src[j] == '"') && j-i <= 2 {
				return nil, &posError{off: base + i, msg: fmt.Sprintf("string prefix %q is not supported in template expressions", src[i:j])}
			}
			out = append(out, etok{kind: tName, text: src[i:j], raw: src[i:j], off: base + i})
			i = j
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9'):
			j := i
			isFloat := false
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_') {
				j++
			}
			if j < len(src) && src[j] == '.' {
				isFloat = true
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					isFloat = true
					j = k
					for j < len(src) && src[j] >= '0' && src[j] <= '9' {
						j++
					}
				}
			}
			if j < len(src) && isNameByte(src[j]) {
				return nil, &posError{off: base + i, msg: fmt.Sprintf("invalid number %q", src[i:j+1])}
			}
			k := tInt
			if isFloat {
				k = tFloat
			}
			out = append(out, etok{kind: k, text: strings.ReplaceAll(src[i:j], "_", ""), raw: src[i:j], off: base + i})
			i = j
		case c == '\'' || c == '"':
			s, n, err := decodePyString(src[i:])
			if err != nil {
				return nil, &posError{off: base + i, msg: err.Error()}
			}
			out = append(out, etok{kind: tString, text: s, raw: src[i : i+n], off: base + i})
			i += n
		default:
			op := ""
			for _, cand := range []string{"**", "//", "==", "!=", "<=", ">=", "<>", ":=", "->", "<<", ">>"} {
				if strings.HasPrefix(src[i:], cand) {
					op = cand
					break
				}
			}
			if op == "" {
				if strings.IndexByte("+-*/%<>()[]{},:.=|&^~@;", c) < 0 {
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, &posError{off: base + i, msg: fmt.Sprintf("unexpected character %q in template expression", r)}
				}
				op = string(c)
			}
			out = append(out, etok{kind: tOp, text: op, raw: op, off: base + i})
			i += len(op)
		}
	}
	out = append(out, etok{kind: tEOF, off: base + len(src)})
	return out, nil
}

func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isNameByte(c byte) bool  { return isNameStart(c) || c >= '0' && c <= '9' }

// decodePyString decodes a Python string literal (single, double or triple
// quoted) at the start of s; it returns the value and the literal's length.
func decodePyString(s string) (string, int, error) {
	q := s[:1]
	if strings.HasPrefix(s, q+q+q) {
		q = q + q + q
	}
	var b strings.Builder
	i := len(q)
	for i < len(s) {
		if strings.HasPrefix(s[i:], q) {
			return b.String(), i + len(q), nil
		}
		c := s[i]
		if c == '\n' && len(q) == 1 {
			break
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			break
		}
		e := s[i+1]
		i += 2
		switch e {
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
		case 'v':
			b.WriteByte('\v')
		case 'a':
			b.WriteByte('\a')
		case '\\', '\'', '"':
			b.WriteByte(e)
		case '\n':
		case 'x':
			if i+2 <= len(s) {
				if v, err := strconv.ParseUint(s[i:i+2], 16, 8); err == nil {
					b.WriteRune(rune(v))
					i += 2
					continue
				}
			}
			return "", 0, fmt.Errorf("invalid \\x escape in string literal")
		case 'u', 'U':
			n := 4
			if e == 'U' {
				n = 8
			}
			if i+n <= len(s) {
				if v, err := strconv.ParseUint(s[i:i+n], 16, 32); err == nil && utf8.ValidRune(rune(v)) {
					b.WriteRune(rune(v))
					i += n
					continue
				}
			}
			return "", 0, fmt.Errorf("invalid \\%c escape in string literal", e)
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return "", 0, fmt.Errorf("unterminated string literal")
}
