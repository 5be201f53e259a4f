package warehouse

import (
	"strings"
	"unicode"
)

// shape is how a statement on the embedded engine takes its call's settings. Each chDB call
// costs about a millisecond or two even for `SELECT 1`, and settings applied with SET must be
// reset with another SET: three calls for one statement. Statements that accept a trailing
// query-level SETTINGS clause get their settings there in one call instead.
type shape int

const (
	// shapeSession: settings are SET on the session for the statement and reset after it.
	shapeSession shape = iota
	// shapeClause: every setting goes into a trailing SETTINGS clause (a SELECT, or an
	// INSERT ... SELECT, without a SETTINGS, FORMAT or VALUES clause of its own; ClickHouse
	// applies the clause of an INSERT ... SELECT to the insert too).
	shapeClause
	// shapeDDL: a statement that runs no query pipeline (CREATE TABLE ... AS t, DROP, ALTER
	// ... PARTITION, TRUNCATE, RENAME, EXCHANGE, ATTACH, DETACH, without a SELECT in it):
	// max_execution_time does not bound it, so the bound derived from the context's deadline
	// is not applied; explicit settings are SET as for shapeSession.
	shapeDDL
)

// shapeOf classifies a statement by its first keyword and the words it contains. Anything it
// is unsure of is shapeSession, which suits every statement.
func shapeOf(sql string) shape {
	head := firstKeyword(sql)
	switch head {
	case "SELECT", "WITH", "INSERT":
		if hasWord(sql, "SETTINGS") || hasWord(sql, "FORMAT") || hasWord(sql, "VALUES") || !hasWord(sql, "SELECT") {
			return shapeSession
		}
		return shapeClause
	case "CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME", "EXCHANGE", "ATTACH", "DETACH":
		if hasWord(sql, "SELECT") {
			return shapeSession
		}
		return shapeDDL
	}
	return shapeSession
}

// firstKeyword is the statement's first word, upper-cased, after white space, comments and
// opening parentheses.
func firstKeyword(sql string) string {
	s := sql
	for {
		s = strings.TrimLeftFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '(' })
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			end := strings.IndexFunc(s, func(r rune) bool { return !isWordRune(r) })
			if end < 0 {
				end = len(s)
			}
			return strings.ToUpper(s[:end])
		}
	}
}

// hasWord tells whether word (upper case) appears in sql as a whole word, in any case,
// anywhere: in a string literal or a comment too, which only makes shapeOf more careful.
func hasWord(sql, word string) bool {
	up := strings.ToUpper(sql)
	for i := 0; ; {
		j := strings.Index(up[i:], word)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		before := start == 0 || !isWordRune(rune(up[start-1]))
		after := end == len(up) || !isWordRune(rune(up[end]))
		if before && after {
			return true
		}
		i = start + 1
	}
}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}
