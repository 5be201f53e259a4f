package chsql

import "strings"

// Normalize returns sql in a form every ClickHouse version reads the way this
// package does, for SQL written by users that Sluice is about to run:
//
//   - comments are removed, and nested /* comments refused: ClickHouse
//     18.16 does not nest them while this lexer and modern ClickHouse do, so
//     "/* /* */ , (SELECT ...) -- */" would be a comment here and a query
//     there (measured);
//   - $heredoc$ strings become 'quoted' strings, which servers without
//     heredocs (before 21.x) otherwise read as something else;
//   - bytes outside strings and quoted names must be printable ASCII: an
//     unquoted non-ASCII name is refused (back-quote it), as are control
//     characters, so that no Unicode space or invisible byte can make a
//     server split tokens differently.
//
// Errors are *Error with the offset of the offending byte in sql.
func Normalize(sql string) (string, error) {
	toks, err := Lex(sql)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(sql))
	pos := 0
	for _, t := range toks {
		b.WriteString(sql[pos:t.Start])
		pos = t.End
		switch t.Kind {
		case Comment:
			if strings.HasPrefix(t.Text, "/*") {
				if i := strings.Index(t.Text[2:], "/*"); i >= 0 {
					return "", &Error{Offset: t.Start + 2 + i, Msg: "nested /* comments are refused: ClickHouse versions disagree on where they end"}
				}
				b.WriteByte(' ')
			}
			// A line comment's newline is outside the token and stays.
		case String:
			if strings.HasPrefix(t.Text, "$") {
				// Adjacent quoted strings would merge ('a''b' is one string): keep them apart.
				if out := b.String(); strings.HasSuffix(out, "'") {
					b.WriteByte(' ')
				}
				b.WriteString(QuoteString(t.Value()))
				if t.End < len(sql) && sql[t.End] == '\'' || strings.HasPrefix(sql[t.End:], "$") {
					b.WriteByte(' ')
				}
				continue
			}
			b.WriteString(t.Text)
		case QuotedIdent:
			b.WriteString(t.Text)
		default:
			for i := 0; i < len(t.Text); i++ {
				if c := t.Text[i]; c >= 0x80 {
					return "", &Error{Offset: t.Start + i, Msg: "non-ASCII character outside a string: back-quote names that use them (`name`)"}
				} else if c < 0x20 || c == 0x7f {
					return "", &Error{Offset: t.Start + i, Msg: "control character in SQL"}
				}
			}
			b.WriteString(t.Text)
		}
	}
	b.WriteString(sql[pos:])
	return b.String(), nil
}
