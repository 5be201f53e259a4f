package catalog

import (
	"strings"
	"testing"
)

func TestASTProblems(t *testing.T) {
	ast := func(s string) []string { return strings.Split(strings.Trim(s, "\n"), "\n") }
	ok := ast(`
SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 4)
   ExpressionList (children 1)
    WithElement (children 1)
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
   TablesInSelectQuery (children 3)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier ws_a./etc/x (alias /etc/x)
    TablesInSelectQueryElement (children 2)
     TableExpression (children 1)
      TableIdentifier c
    TablesInSelectQueryElement (children 2)
     TableExpression (children 1)
      Function numbers (alias n) (children 1)
       ExpressionList (children 1)
        Literal UInt64_2
   Function and (children 1)
    ExpressionList (children 3)
     Function in (children 1)
      ExpressionList (children 2)
       Identifier x
       Identifier ws_a.t
     Function notIn (children 1)
      ExpressionList (children 2)
       Identifier y
       Identifier c
     Function joinGet (children 1)
      ExpressionList (children 3)
       Literal 'ws_a.j'
       Literal 'v'
       Function format (children 1)
`)
	if p := astProblems(ok, "ws_a", map[string]bool{"c": true}); len(p) > 0 {
		t.Errorf("legitimate AST refused: %v", p)
	}
	for _, tc := range []struct{ ast, want string }{
		{"SelectQuery (children 1)\n TableExpression (children 1)\n  TableIdentifier other.t", "table other.t"},
		{"SelectQuery (children 1)\n TableExpression (children 1)\n  TableIdentifier hostname", "table hostname"},
		{"SelectQuery (children 1)\n TableExpression (children 1)\n  Function file (alias f) (children 1)", "file()"},
		{"Function in (children 1)\n ExpressionList (children 2)\n  Identifier x\n  Identifier other.t", "IN other.t"},
		{"Function globalNotIn (children 1)\n ExpressionList (children 2)\n  Literal 'x'\n  Identifier t", "IN t"},
		{"Function joinGet (children 1)\n ExpressionList (children 3)\n  Literal 'other.j'\n  Literal 'v'", "joinGet()"},
		{"Function joinGet (children 1)\n ExpressionList (children 3)\n  Function concat (children 1)\n   ExpressionList (children 2)", "joinGet()"},
		{"Function dictGetString (children 1)", "dictGetString()"},
		{"Function url (children 1)", "url()"},
		{"Function hasColumnInTable (children 1)", "hasColumnInTable()"},
	} {
		p := astProblems(ast(tc.ast), "ws_a", map[string]bool{"c": true})
		if len(p) == 0 || !strings.Contains(p[0], tc.want) {
			t.Errorf("%q: problems %v, want one naming %q", tc.ast, p, tc.want)
		}
	}
}

// TestVerifyASTOnChDB shows the second line on its own: statements that Sluice's analysis once
// let through (an alias column list hid the next table; a comment token boundary) are refused
// by what chDB's parser sees, and qualified SQL passes.
func TestVerifyASTOnChDB(t *testing.T) {
	s, _ := newTestService(t)
	if !s.caps.explainAST {
		t.Fatal("chDB has EXPLAIN AST")
	}
	for sql, want := range map[string]string{
		"SELECT * FROM numbers(1) AS a(x), other.t":             "table other.t",
		"SELECT * FROM `ws_a`.`e` AS e, `/etc/hostname`":        "table /etc/hostname",
		"SELECT 1 IN other.t":                                   "IN other.t",
		"SELECT * FROM ws_a.e JOIN url('http://x', CSV) u ON 1": "url()",
		"SELECT file('/etc/passwd')":                            "file()",
		"SELECT joinGet('other.j', 'v', 1)":                     "joinGet()",
	} {
		err := s.verifyAST(t.Context(), "ws_a", sql)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal naming %q", sql, err, want)
		}
	}
	for _, sql := range []string{
		"WITH c AS (SELECT 1 AS x) SELECT * FROM `ws_a`.`e` AS e, c WHERE x IN `ws_a`.t AND x IN c AND joinGet('ws_a.j', 'v', 1) = format('{}', 1)",
		"DESCRIBE TABLE (SELECT * FROM ws_a.e)",
		"EXPLAIN SELECT * FROM numbers(3)",
	} {
		if err := s.verifyAST(t.Context(), "ws_a", sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}
