package template

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// Tests in this file run against the embedded ClickHouse (chDB): the
// engine's own parser checks chsql's analysis. (The corpus Data Sources'
// DDL is checked through the catalog, which adapts it to the server:
// services/catalog TestCorpusDataSourcesDeploy.)

func TestMain(m *testing.M) { warehousetest.Main(m) }

// astTables extracts the table identifiers and table functions of an
// EXPLAIN AST output: "TableIdentifier db.t" lines, and "Function f" lines
// directly under a TableExpression.
func astTables(lines []string) (tables, funcs []string) {
	tableExprIndent := -1
	for _, l := range lines {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		text := strings.TrimSpace(l)
		if tableExprIndent >= 0 && indent <= tableExprIndent {
			tableExprIndent = -1
		}
		switch {
		case strings.HasPrefix(text, "TableExpression"):
			tableExprIndent = indent
		case strings.HasPrefix(text, "TableIdentifier "):
			name := strings.Fields(strings.TrimPrefix(text, "TableIdentifier "))[0]
			tables = append(tables, name)
		case strings.HasPrefix(text, "Function ") && tableExprIndent >= 0 && indent == tableExprIndent+1:
			funcs = append(funcs, strings.Fields(strings.TrimPrefix(text, "Function "))[0])
		}
	}
	sort.Strings(tables)
	sort.Strings(funcs)
	return tables, funcs
}

// TestAnalysisMatchesExplainAST checks chsql's analysis against ClickHouse's
// own parser over every corpus node: the tables (with CTE references, which
// the AST cannot tell apart) and table functions chsql finds are exactly the
// TableIdentifier and table-function nodes of EXPLAIN AST.
func TestAnalysisMatchesExplainAST(t *testing.T) {
	conn := warehousetest.Embedded(t)
	ctx := context.Background()
	opts := RenderOptions{JobTimestamp: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}
	checked, total := 0, 0
	for _, cn := range corpusPipes(t) {
		tpl, err := Parse(cn.node.SQL)
		if err != nil {
			t.Fatal(err)
		}
		// Check-mode SQL (what push validates) must parse too.
		checkOpts := opts
		checkOpts.Check = true
		checkSQL, err := tpl.Render(nil, checkOpts)
		if err != nil {
			t.Fatalf("%s %s: %v", cn.file, cn.node.Name, err)
		}
		if _, err := conn.Query(ctx, "EXPLAIN AST "+checkSQL); err != nil {
			t.Errorf("%s %s: EXPLAIN AST of the check-mode SQL: %v\n%s", cn.file, cn.node.Name, err, checkSQL)
		}
		sql, err := tpl.Render(realisticParams(tpl.Parameters()), opts)
		if err != nil {
			t.Fatalf("%s %s: %v", cn.file, cn.node.Name, err)
		}
		res, err := conn.Query(ctx, "EXPLAIN AST "+sql)
		if err != nil {
			t.Errorf("%s %s: EXPLAIN AST: %v\n%s", cn.file, cn.node.Name, err, sql)
			continue
		}
		var lines []string
		for _, row := range res.Rows {
			if s, ok := row[0].(string); ok {
				lines = append(lines, s)
			}
		}
		wantTables, wantFuncs := astTables(lines)
		a, err := chsql.Analyze(sql, nil)
		if err != nil {
			t.Errorf("%s %s: %v", cn.file, cn.node.Name, err)
			continue
		}
		var gotTables, gotFuncs []string
		add := func(r chsql.TableRef) {
			n := r.Name
			if r.Database != "" {
				n = r.Database + "." + n
			}
			gotTables = append(gotTables, n)
		}
		for _, r := range a.Refs {
			switch {
			case r.Kind == chsql.RefTable && (r.Context == "FROM" || r.Context == "JOIN"):
				add(r)
			case r.Kind == chsql.RefTableFunction:
				gotFuncs = append(gotFuncs, r.Name)
			}
		}
		for _, r := range a.CTERefs {
			add(r)
		}
		sort.Strings(gotTables)
		sort.Strings(gotFuncs)
		if !reflect.DeepEqual(gotTables, wantTables) || !reflect.DeepEqual(gotFuncs, wantFuncs) {
			t.Errorf("%s %s:\n chsql tables %q functions %q\n   AST tables %q functions %q\n%s", cn.file, cn.node.Name, gotTables, gotFuncs, wantTables, wantFuncs, sql)
		}
		checked++
		total += len(wantTables) + len(wantFuncs)
	}
	if total < 100 {
		t.Errorf("EXPLAIN AST found only %d tables and table functions in the corpus", total)
	}
	t.Logf("%d nodes checked against EXPLAIN AST (%d tables and table functions)", checked, total)
}

// TestTrickyQueriesMatchExplainAST runs the same comparison over queries
// that hide references with comments, casing, quoting, nesting and CTEs.
func TestTrickyQueriesMatchExplainAST(t *testing.T) {
	conn := warehousetest.Embedded(t)
	ctx := context.Background()
	queries := []string{
		"SELECT * FROM/**/file('/etc/passwd', 'LineAsString')",
		"sElEcT * fRoM `/etc/hostname`",
		"SELECT * FROM -- c\n url('http://x', CSV, 'a String')",
		"SELECT * FROM \"other\".\"t\" AS x FINAL",
		"SELECT * FROM db.events e WHERE x IN (SELECT y FROM other)",
		"SELECT a FROM t1, t2 AS b, numbers(10) n",
		"SELECT * FROM a LEFT JOIN b ON a.x = b.x INNER JOIN c USING (x)",
		"SELECT * FROM a ARRAY JOIN arr AS el LEFT ARRAY JOIN arr2",
		"SELECT * FROM a GLOBAL ANY LEFT JOIN b AS bb ON 1",
		"WITH cte AS (SELECT * FROM src) SELECT * FROM cte JOIN other USING id",
		"WITH (SELECT max(x) FROM t1) AS m, 5 AS k SELECT m FROM t2",
		"SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) AS s, c",
		"SELECT extract(DAY FROM d), substring(s FROM 1 FOR 2), trim(BOTH ' ' FROM s) FROM t",
		"SELECT * FROM t SAMPLE 1/10 OFFSET 1/2 WHERE 1",
		"SELECT * FROM t eval FINAL LEFT JOIN u ON 1",
		"SELECT * FROM view(SELECT * FROM inner_t)",
		"SELECT (SELECT max(x) FROM other.u), * FROM t UNION ALL SELECT * FROM remote('h', db, t3)",
		"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM /* x /* nested */ y */ file('x'))",
		"SELECT 'FROM x', \"FROM\" FROM t -- FROM y\n/* FROM z */",
		"SELECT * FROM (SELECT 1) AS a, (SELECT * FROM (SELECT * FROM deep.t))",
		"SELECT * FROM 1t JOIN 0x1Fg ON 1 JOIN $x ON 1 JOIN x$ USING (a)",
		"SELECT 1 # comment FROM hidden\n FROM t #! FROM hidden2\n",
		"SELECT $a$ FROM file('x') $a$ FROM t",
	}
	for _, sql := range queries {
		res, err := conn.Query(ctx, "EXPLAIN AST "+sql)
		if err != nil {
			t.Errorf("EXPLAIN AST %s: %v", sql, err)
			continue
		}
		var lines []string
		for _, row := range res.Rows {
			if s, ok := row[0].(string); ok {
				lines = append(lines, s)
			}
		}
		wantTables, wantFuncs := astTables(lines)
		a, err := chsql.Analyze(sql, nil)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		var gotTables, gotFuncs []string
		for _, r := range append(append([]chsql.TableRef{}, a.Refs...), a.CTERefs...) {
			switch {
			case r.Kind == chsql.RefTable && (r.Context == "FROM" || r.Context == "JOIN"):
				n := r.Name
				if r.Database != "" {
					n = r.Database + "." + n
				}
				gotTables = append(gotTables, n)
			case r.Kind == chsql.RefTableFunction:
				gotFuncs = append(gotFuncs, r.Name)
			}
		}
		sort.Strings(gotTables)
		sort.Strings(gotFuncs)
		if !reflect.DeepEqual(gotTables, wantTables) || !reflect.DeepEqual(gotFuncs, wantFuncs) {
			t.Errorf("%s:\n chsql tables %q functions %q\n   AST tables %q functions %q\n%s", sql, gotTables, gotFuncs, wantTables, wantFuncs, strings.Join(lines, "\n"))
		}
	}
}
