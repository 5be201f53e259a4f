package chsql

import (
	"strings"
)

// fromClause handles FROM: a comma-separated list of table expressions.
func (an *analyzer) fromClause(i int) {
	fc := FromClause{Offset: an.toks[i].Start, Depth: an.depth(), First: -1, SubStart: -1, SubEnd: -1}
	j := i + 1
	first := true
	for {
		if an.tok(j).is("(") {
			k := an.matchParen(j)
			if first {
				fc.SubStart, fc.SubEnd = an.tok(j).Start, an.tok(k).End
				an.a.Froms = append(an.a.Froms, fc)
				first = false
			}
			sub := TableRef{CanAlias: true}
			next := an.alias(k+1, &sub)
			if !an.tok(next).is(",") {
				return
			}
			j = next + 1
			continue
		}
		an.lastCTE = ""
		idx, next := an.tableExpr(j, "FROM", true)
		if first {
			if idx >= 0 {
				fc.First = idx
			} else {
				fc.CTE = an.lastCTE
			}
			an.a.Froms = append(an.a.Froms, fc)
			first = false
		}
		if next < 0 || !an.tok(next).is(",") {
			return
		}
		j = next + 1
	}
}

func (an *analyzer) matchParen(j int) int {
	depth := 0
	for k := j; k < len(an.toks); k++ {
		switch {
		case an.toks[k].is("("):
			depth++
		case an.toks[k].is(")"):
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return len(an.toks) - 1
}

// tableExpr parses a table expression at j: a (possibly qualified) name, a
// table function call, or a subquery (left to the main scan). It returns the
// index of the reference added (or -1) and the index of the first token
// after the expression and its alias (or -1 when it did not recognise one).
func (an *analyzer) tableExpr(j int, ctx string, canAlias bool) (int, int) {
	t := an.tok(j)
	if an.claimed[j] {
		return -1, -1
	}
	switch {
	case t.is("("):
		return -1, -1
	case t.is("{"):
		k := j
		for k < len(an.toks) && !an.toks[k].is("}") {
			k++
		}
		end := an.tok(k).End
		idx := an.addRef(TableRef{Kind: RefQueryParameter, Name: an.sql[t.Start:end], Start: t.Start, End: end, Context: ctx})
		return idx, k + 1
	case t.Kind == Ident && (t.Upper() == "SELECT" || t.Upper() == "WITH"):
		return -1, -1
	case t.Kind != Ident && t.Kind != QuotedIdent:
		return -1, -1
	}
	an.claimed[j] = true
	// Table function: name(...).
	if an.tok(j + 1).is("(") {
		k := an.matchParen(j + 1)
		args := ""
		if k > j+1 {
			args = an.sql[an.tok(j+1).End:an.tok(k).Start]
		}
		ref := TableRef{Kind: RefTableFunction, Name: t.Value(), Start: t.Start, End: an.tok(k).End, Args: strings.TrimSpace(args), Context: ctx, CanAlias: canAlias}
		next := an.alias(k+1, &ref)
		return an.addRef(ref), next
	}
	ref := TableRef{Kind: RefTable, Name: t.Value(), Start: t.Start, End: t.End, Context: ctx, CanAlias: canAlias}
	k := j + 1
	if an.tok(k).is(".") && (an.tok(k+1).Kind == Ident || an.tok(k+1).Kind == QuotedIdent) {
		ref.Database = ref.Name
		ref.Name = an.tok(k + 1).Value()
		ref.End = an.tok(k + 1).End
		an.claimed[k+1] = true
		k += 2
	}
	next := an.alias(k, &ref)
	if ref.Database == "" {
		if _, ok := an.isCTE(ref.Name); ok {
			an.lastCTE = ref.Name
			ref.Depth = an.depth()
			an.a.CTERefs = append(an.a.CTERefs, ref)
			return -1, next
		}
		if an.nodes[ref.Name] {
			ref.Kind = RefNode
		}
	}
	return an.addRef(ref), next
}

// alias consumes FINAL, [AS] alias and SAMPLE after a table expression.
func (an *analyzer) alias(k int, ref *TableRef) int {
	if !ref.CanAlias {
		return k
	}
	for {
		t := an.tok(k)
		u := t.Upper()
		switch {
		case u == "FINAL":
			k++
		case u == "AS":
			if n := an.tok(k + 1); n.Kind == Ident || n.Kind == QuotedIdent {
				ref.Alias = n.Value()
				an.claimed[k+1] = true
				k += 2
			} else {
				return k
			}
		case u == "SAMPLE":
			k++
			for {
				n := an.tok(k)
				if n.Kind == Number || n.is("/") || n.Upper() == "OFFSET" {
					k++
					continue
				}
				break
			}
		case (t.Kind == Ident && !notAlias[u]) || t.Kind == QuotedIdent:
			if ref.Alias != "" {
				return k
			}
			ref.Alias = t.Value()
			an.claimed[k] = true
			k++
		case t.is("(") && ref.Alias != "":
			// A column list after the alias, AS a(x, y): skip it, so that what
			// follows (", other_table") is still read as part of the FROM list.
			k = an.matchParen(k) + 1
		default:
			return k
		}
	}
}

// inTarget handles "IN name" / "IN db.name" (a table used as a set), also
// when parenthesised: ClickHouse reads "IN (name)" and "IN ((db.name))" as
// the same identifier.
func (an *analyzer) inTarget(j int) {
	open := 0
	for an.tok(j + open).is("(") {
		open++
	}
	if open > 0 {
		k := j + open
		if n := an.tok(k); n.Kind != Ident && n.Kind != QuotedIdent {
			return
		}
		end := k + 1
		if an.tok(end).is(".") && (an.tok(end+1).Kind == Ident || an.tok(end+1).Kind == QuotedIdent) {
			end += 2
		}
		for c := 0; c < open; c++ {
			if !an.tok(end + c).is(")") {
				return
			}
		}
		if u := an.tok(k).Upper(); u == "SELECT" || u == "WITH" {
			return
		}
		an.tableExpr(k, "IN", false)
		return
	}
	t := an.tok(j)
	if t.Kind != Ident && t.Kind != QuotedIdent {
		return
	}
	if an.tok(j + 1).is("(") {
		if t.Kind == Ident && IsKnownTableFunction(t.Text) {
			an.tableExpr(j, "IN", false)
		}
		return
	}
	if t.Kind == Ident {
		switch t.Upper() {
		case "SELECT", "WITH":
			return
		}
	}
	an.tableExpr(j, "IN", false)
}

func (an *analyzer) into(j int) {
	t := an.tok(j)
	switch t.Upper() {
	case "OUTFILE":
		end := an.tok(j + 1).End
		an.addRef(TableRef{Kind: RefOutfile, Name: an.tok(j + 1).Value(), Start: t.Start, End: end, Context: "INTO"})
		return
	case "TABLE":
		j++
	case "FUNCTION":
		j++
	}
	an.tableExpr(j, "INTO", false)
}

func (an *analyzer) showFrom(i int) {
	// SHOW COLUMNS FROM table [FROM db]: the first FROM names a table.
	start := an.statementStart(i)
	if u := an.tok(start + 1).Upper(); (u == "COLUMNS" || u == "FIELDS" || u == "FULL") && !an.seenShowTable {
		an.seenShowTable = true
		an.tableExpr(i+1, "SHOW", false)
		return
	}
	n := an.tok(i + 1)
	if n.Kind == Ident || n.Kind == QuotedIdent {
		an.claimed[i+1] = true
		an.addRef(TableRef{Kind: RefDatabase, Name: n.Value(), Start: n.Start, End: n.End, Context: "SHOW"})
	}
}

// functionArgRef reports the table/dictionary named by the first argument of
// joinGet and dictGet-style functions.
func (an *analyzer) functionArgRef(i int) {
	name := strings.ToLower(an.toks[i].Text)
	var kind RefKind
	ctx := ""
	switch {
	case name == "joinget" || name == "joingetornull":
		kind, ctx = RefJoinGet, "joinGet"
	case strings.HasPrefix(name, "dictget") || name == "dicthas" || name == "dictisin":
		kind, ctx = RefDictionary, "dictGet"
	default:
		return
	}
	a := an.tok(i + 2)
	argEnd := func(k int) bool { return an.tok(k).is(",") || an.tok(k).is(")") }
	switch {
	case a.Kind == String && argEnd(i+3):
		db, n := splitQualified(a.Value())
		an.addRef(TableRef{Kind: kind, Database: db, Name: n, Start: a.Start, End: a.End, Context: ctx, Quoted: true})
		return
	case a.Kind == Ident || a.Kind == QuotedIdent:
		ref := TableRef{Kind: kind, Name: a.Value(), Start: a.Start, End: a.End, Context: ctx}
		k := i + 3
		if an.tok(k).is(".") && (an.tok(k+1).Kind == Ident || an.tok(k+1).Kind == QuotedIdent) {
			ref.Database, ref.Name, ref.End = ref.Name, an.tok(k+1).Value(), an.tok(k+1).End
			k += 2
		}
		if argEnd(k) {
			an.claimed[i+2] = true
			if k > i+3 {
				an.claimed[i+4] = true
			}
			an.addRef(ref)
			return
		}
	}
	// The name is computed ('a' || 'b', concat(...), ('x'), {p:String}): it
	// cannot be checked, so it is reported with no name for callers to refuse.
	start, end := an.tok(i+2).Start, an.tok(an.matchParen(i+1)).Start
	if end <= start { // joinGet(): the name's span instead
		start, end = an.toks[i].Start, an.toks[i].End
	}
	an.addRef(TableRef{Kind: kind, Start: start, End: end, Context: ctx, Dynamic: true})
}

// settings records the "name = value" items of the SETTINGS clause at i.
func (an *analyzer) settings(i int) {
	j := i + 1
	for {
		n := an.tok(j)
		if (n.Kind != Ident && n.Kind != QuotedIdent) || !an.tok(j+1).is("=") {
			an.a.Settings = append(an.a.Settings, Setting{Start: n.Start, End: n.End})
			return
		}
		an.a.Settings = append(an.a.Settings, Setting{Name: n.Value(), Start: n.Start, End: n.End})
		// Skip the value: up to a ',' at this depth, or the clause's end.
		depth := 0
		for j += 2; j < len(an.toks); j++ {
			t := an.toks[j]
			switch {
			case t.is("(") || t.is("["):
				depth++
				continue
			case t.is(")") || t.is("]"):
				if depth == 0 {
					return
				}
				depth--
				continue
			case t.is(";"):
				return
			}
			if depth == 0 && (t.is(",") || t.Kind == Ident && (t.Upper() == "FORMAT" || t.Upper() == "UNION" || t.Upper() == "INTO" || t.Upper() == "EXCEPT" || t.Upper() == "INTERSECT")) {
				break
			}
		}
		if !an.tok(j).is(",") {
			return
		}
		j++
	}
}

// formatClause records "FORMAT name" at i when it is the output format
// clause rather than a column or alias named format.
func (an *analyzer) formatClause(i int) bool {
	p, n := an.tok(i-1), an.tok(i+1)
	if i == 0 || p.Upper() == "AS" || p.Upper() == "SELECT" || p.Upper() == "DISTINCT" || p.Kind == Punct && !p.is(")") && !p.is("]") {
		return false
	}
	if n.Kind != Ident && n.Kind != QuotedIdent || notAlias[n.Upper()] && n.Kind == Ident {
		return false
	}
	if f := an.tok(i + 2); f.is("(") || f.is(".") {
		return false
	}
	an.a.Formats = append(an.a.Formats, FuncCall{Name: n.Value(), Start: an.toks[i].Start, End: n.End})
	an.claimed[i+1] = true
	return true
}

func splitQualified(s string) (string, string) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}
