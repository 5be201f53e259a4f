package chsql

import (
	"fmt"
	"sort"
	"strings"
)

// RefKind is what a reference points at.
type RefKind int

const (
	// RefTable is a table (or view, or Data Source) name.
	RefTable RefKind = iota
	// RefNode is a name matching an earlier node of the pipe.
	RefNode
	// RefTableFunction is a table function call such as numbers(10) or
	// file('...'); Name is the function name, Args its argument text.
	RefTableFunction
	// RefJoinGet is the table named by joinGet's first argument.
	RefJoinGet
	// RefDictionary is the dictionary named by a dictGet*/dictHas first argument.
	RefDictionary
	// RefDatabase is a database named by SHOW ... FROM db.
	RefDatabase
	// RefQueryParameter is a {name:Type} query parameter used as a table name.
	RefQueryParameter
	// RefOutfile is an INTO OUTFILE clause (writes a file).
	RefOutfile
)

func (k RefKind) String() string {
	return [...]string{"table", "node", "table function", "joinGet table", "dictionary", "database", "query parameter", "outfile"}[k]
}

// TableRef is one reference found in a query.
type TableRef struct {
	Kind RefKind
	// Database is the explicit database ("" when unqualified).
	Database string
	// Name is the table, node, function or dictionary name (unquoted).
	Name string
	// Alias is the explicit alias, if any.
	Alias string
	// Start and End delimit the text Qualify replaces: the (possibly
	// qualified) name, the whole table function call, or the string literal
	// naming a joinGet table or a dictionary.
	Start, End int
	// Args is a table function's argument text.
	Args string
	// Context is where the reference stands: FROM, JOIN, IN, INTO, DESCRIBE,
	// SHOW, joinGet, dictGet.
	Context string
	// Depth is the parenthesis depth of the reference (0 = outermost query).
	Depth int
	// CanAlias reports whether an alias may follow the reference (FROM and
	// JOIN), so a replacement may carry " AS name".
	CanAlias bool
	// Quoted reports whether the name was written as a string literal
	// (joinGet/dictGet), so a replacement must be a string literal too.
	Quoted bool
	// Dynamic reports a joinGet/dictGet whose first argument is an
	// expression rather than a name: Name is empty and the table cannot be
	// known before the query runs.
	Dynamic bool
}

// EffectiveAlias is the name column references use for this table: the
// explicit alias, or else the table name.
func (r TableRef) EffectiveAlias() string {
	if r.Alias != "" {
		return r.Alias
	}
	return r.Name
}

// QualifiedName is `db`.`name` as SQL text.
func (r TableRef) QualifiedName(db string) string {
	return QuoteIdent(db) + "." + QuoteIdent(r.Name)
}

// Qualified returns replacement text naming the reference in database db,
// keeping column references like name.col working by aliasing it to its
// original name when it has no explicit alias.
func (r TableRef) Qualified(db string) string {
	if r.Quoted {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db+"."+r.Name) + "'"
	}
	s := r.QualifiedName(db)
	if r.CanAlias && r.Alias == "" {
		s += " AS " + QuoteIdent(r.Name)
	}
	return s
}

// Subquery returns replacement text that reads from the given SELECT
// instead, aliased so that column references keep working.
func (r TableRef) Subquery(selectSQL string) string {
	s := "(" + selectSQL + ")"
	if r.CanAlias && r.Alias == "" {
		s += " AS " + QuoteIdent(r.EffectiveAlias())
	}
	return s
}

// FromClause records one FROM clause, for finding the left-most table.
type FromClause struct {
	Offset int
	Depth  int
	// First is the index in Analysis.Refs of the clause's first table
	// reference, or -1 when it starts with a subquery.
	First int
	// SubStart and SubEnd delimit the subquery when the clause starts with
	// one (-1 otherwise).
	SubStart, SubEnd int
	// CTE is the CTE name when the clause starts with a CTE reference.
	CTE string
}

// FuncCall is a function call outside table positions (e.g. file(...) used
// as a scalar function), for callers that deny-list functions.
type FuncCall struct {
	Name       string
	Start, End int // the name's offsets
}

// CTE is a common table expression defined with WITH name AS (SELECT ...).
type CTE struct {
	Name               string
	BodyStart, BodyEnd int
	Depth              int
}

// Analysis is the result of Analyze.
type Analysis struct {
	SQL  string
	Refs []TableRef
	// CTEs are the WITH name AS (...) definitions.
	CTEs []CTE
	// CTERefs are references that resolved to a CTE in scope.
	CTERefs []TableRef
	Froms   []FromClause
	// Functions are the function calls found outside table positions.
	Functions []FuncCall
	Kind      StatementKind
	// Statements is the number of non-empty statements.
	Statements int
	// Settings are the settings named by SETTINGS clauses, at any depth.
	Settings []Setting
	// Formats are FORMAT clauses (the name of the output format).
	Formats []FuncCall
}

// Setting is one "name = value" of a SETTINGS clause; Name is "" when the
// clause could not be read as such a list.
type Setting struct {
	Name       string
	Start, End int
}

// Tables returns the RefTable references.
func (a *Analysis) Tables() []TableRef { return a.filter(RefTable) }

// Nodes returns the RefNode references.
func (a *Analysis) Nodes() []TableRef { return a.filter(RefNode) }

// TableFunctions returns the RefTableFunction references.
func (a *Analysis) TableFunctions() []TableRef { return a.filter(RefTableFunction) }

func (a *Analysis) filter(k RefKind) []TableRef {
	var out []TableRef
	for _, r := range a.Refs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// Dependencies returns the distinct names of tables (db.name when
// qualified) and nodes the query reads, sorted.
func (a *Analysis) Dependencies() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range a.Refs {
		if r.Kind != RefTable && r.Kind != RefNode && r.Kind != RefJoinGet {
			continue
		}
		n := r.Name
		if r.Database != "" {
			n = r.Database + "." + n
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// LeftTable returns the left-most table of the outermost query — the table
// whose inserts trigger a materialized view — following subqueries and CTEs
// in the first FROM position.
func (a *Analysis) LeftTable() (TableRef, bool) {
	lo, hi, depth := 0, len(a.SQL)+1, 0
	for guard := 0; guard < 64; guard++ {
		best := -1
		for i, f := range a.Froms {
			if f.Offset < lo || f.Offset >= hi || f.Depth != depth {
				continue
			}
			if best < 0 || f.Offset < a.Froms[best].Offset {
				best = i
			}
		}
		if best < 0 {
			return TableRef{}, false
		}
		f := a.Froms[best]
		switch {
		case f.First >= 0:
			return a.Refs[f.First], true
		case f.CTE != "":
			found := false
			for _, c := range a.CTEs {
				if c.Name == f.CTE && c.BodyEnd <= f.Offset {
					lo, hi, depth, found = c.BodyStart, c.BodyEnd, c.Depth+1, true
				}
			}
			if !found {
				return TableRef{}, false
			}
		case f.SubStart >= 0:
			lo, hi, depth = f.SubStart, f.SubEnd, depth+1
		default:
			return TableRef{}, false
		}
	}
	return TableRef{}, false
}

// ReadLeftFrom rewrites sql so that its left-most table (the one whose inserts fire a
// materialized view: its trigger), which must be table (unqualified or in database db), reads
// the subquery selectSQL instead (aliased as the table was, so the query reads the same
// names). Other references to the table (a self-join) are left as they are.
func ReadLeftFrom(sql, db, table, selectSQL string) (string, error) {
	an, err := Analyze(sql, nil)
	if err != nil {
		return "", err
	}
	left, ok := an.LeftTable()
	if !ok || left.Kind != RefTable || left.Name != table || (left.Database != "" && left.Database != db) {
		return "", fmt.Errorf("the query's left-most table is not %s", table)
	}
	return an.Rewrite(func(ref TableRef) (string, error) {
		if ref.Start == left.Start && ref.End == left.End {
			return ref.Subquery(selectSQL), nil
		}
		return sql[ref.Start:ref.End], nil
	})
}
