package chsql

import "strings"

// StatementKind is the leading keyword of a statement.
type StatementKind string

const (
	KindEmpty    StatementKind = ""
	KindSelect   StatementKind = "SELECT"
	KindWith     StatementKind = "WITH"
	KindShow     StatementKind = "SHOW"
	KindDescribe StatementKind = "DESCRIBE"
	KindExplain  StatementKind = "EXPLAIN"
	KindExists   StatementKind = "EXISTS"
	KindInsert   StatementKind = "INSERT"
	KindCreate   StatementKind = "CREATE"
	KindAlter    StatementKind = "ALTER"
	KindDrop     StatementKind = "DROP"
	KindTruncate StatementKind = "TRUNCATE"
	KindRename   StatementKind = "RENAME"
	KindOptimize StatementKind = "OPTIMIZE"
	KindSystem   StatementKind = "SYSTEM"
	KindKill     StatementKind = "KILL"
	KindSet      StatementKind = "SET"
	KindUse      StatementKind = "USE"
	KindGrant    StatementKind = "GRANT"
	KindRevoke   StatementKind = "REVOKE"
	KindAttach   StatementKind = "ATTACH"
	KindDetach   StatementKind = "DETACH"
	KindDelete   StatementKind = "DELETE"
	KindUpdate   StatementKind = "UPDATE"
	KindCheck    StatementKind = "CHECK"
	KindOther    StatementKind = "OTHER"
)

var statementKinds = map[string]StatementKind{
	"SELECT": KindSelect, "WITH": KindWith, "SHOW": KindShow, "DESCRIBE": KindDescribe,
	"DESC": KindDescribe, "EXPLAIN": KindExplain, "EXISTS": KindExists, "INSERT": KindInsert,
	"CREATE": KindCreate, "ALTER": KindAlter, "DROP": KindDrop, "TRUNCATE": KindTruncate,
	"RENAME": KindRename, "OPTIMIZE": KindOptimize, "SYSTEM": KindSystem, "KILL": KindKill,
	"SET": KindSet, "USE": KindUse, "GRANT": KindGrant, "REVOKE": KindRevoke, "ATTACH": KindAttach,
	"DETACH": KindDetach, "DELETE": KindDelete, "UPDATE": KindUpdate, "CHECK": KindCheck,
	// FROM-first queries are SELECTs.
	"FROM": KindSelect,
}

// ReadOnly reports whether the kind only reads (SELECT, WITH, SHOW,
// DESCRIBE, EXPLAIN, EXISTS).
func (k StatementKind) ReadOnly() bool {
	switch k {
	case KindSelect, KindWith, KindShow, KindDescribe, KindExplain, KindExists:
		return true
	}
	return false
}

// Statement is one statement of a script.
type Statement struct {
	Kind       StatementKind
	Start, End int // byte offsets, without the terminating ';'
	SQL        string
}

// Split splits sql into its non-empty statements (a statement holding only
// comments is empty). Semicolons inside strings, quoted identifiers and
// comments do not split.
func Split(sql string) ([]Statement, error) {
	all, err := Lex(sql)
	if err != nil {
		return nil, err
	}
	var out []Statement
	var cur []Token
	flush := func(end int) {
		if len(cur) == 0 {
			return
		}
		s := Statement{Start: cur[0].Start, End: cur[len(cur)-1].End}
		s.SQL = sql[s.Start:s.End]
		s.Kind, _ = classifyTokens(cur)
		out = append(out, s)
		cur = nil
	}
	for _, t := range all {
		if t.Kind == Comment {
			continue
		}
		if t.is(";") {
			flush(t.Start)
			continue
		}
		cur = append(cur, t)
	}
	flush(len(sql))
	return out, nil
}

// Classify returns the kind of the first statement of sql.
func Classify(sql string) (StatementKind, error) {
	all, err := Lex(sql)
	if err != nil {
		return KindEmpty, err
	}
	k, _ := classifyTokens(Significant(all))
	return k, nil
}

// MultipleStatements reports whether sql holds more than one statement
// (a ';' followed by anything but comments and whitespace).
func MultipleStatements(sql string) (bool, error) {
	st, err := Split(sql)
	if err != nil {
		return false, err
	}
	return len(st) > 1, nil
}

// classifyTokens returns the kind of the first statement and the number of
// non-empty statements in the significant tokens.
func classifyTokens(toks []Token) (StatementKind, int) {
	kind := KindEmpty
	count := 0
	start := true
	for _, t := range toks {
		if t.is(";") {
			start = true
			continue
		}
		if !start {
			continue
		}
		if t.is("(") {
			// "(SELECT ...)" is still a SELECT.
			continue
		}
		start = false
		count++
		if count == 1 {
			if k, ok := statementKinds[strings.ToUpper(t.Text)]; ok && t.Kind == Ident {
				kind = k
			} else {
				kind = KindOther
			}
		}
	}
	return kind, count
}
