package chsql

import (
	"errors"
	"strings"
	"testing"
)

// FuzzLexer checks that lexing and analysis never panic, that tokens are in
// order and inside the input, and that an identity rewrite returns the input.
func FuzzLexer(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM t",
		"WITH c AS (SELECT * FROM db.t) SELECT * FROM c JOIN u USING x WHERE y IN z",
		"SELECT 'a\\'b', `q``x`, \"d\" /* /* n */ */ -- c\n# h\n FROM numbers(1)",
		"SELECT joinGet('db.j', 'v', 1), dictGet(d, 'a', 1) FROM/**/file('x') AS f FINAL SAMPLE 1/2",
		"SELECT $$x$$, $t$y$t$, 0x1F, 1.5e3, .5, a.1 FROM (SELECT 1) s, t2; DROP TABLE t",
		"SHOW TABLES FROM db; DESCRIBE TABLE t; INSERT INTO t SELECT 1 INTO OUTFILE 'x'",
		"SELECT extract(DAY FROM d) FROM {t:Identifier}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		toks, err := Lex(sql)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(sql) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		prev := 0
		for _, tk := range toks {
			if tk.Start < prev || tk.End <= tk.Start || tk.End > len(sql) || sql[tk.Start:tk.End] != tk.Text {
				t.Fatalf("bad token %+v", tk)
			}
			prev = tk.End
			_ = tk.Value()
		}
		a, err := Analyze(sql, map[string]bool{"n": true})
		if err != nil {
			return
		}
		for _, r := range a.Refs {
			if r.Start < 0 || r.End > len(sql) || r.Start >= r.End {
				t.Fatalf("bad ref span %+v", r)
			}
		}
		_, _ = a.LeftTable()
		_ = a.Dependencies()
		out, err := a.Rewrite(func(r TableRef) (string, error) { return sql[r.Start:r.End], nil })
		if err != nil || out != sql {
			t.Fatalf("identity rewrite changed the SQL: %v", err)
		}
		_, _ = Split(sql)
		// Normalizing keeps every significant token (heredocs become plain strings).
		if n, err := Normalize(sql); err == nil {
			nt, err := Lex(n)
			if err != nil {
				t.Fatalf("normalized SQL does not lex: %v\n%q", err, n)
			}
			want, got := Significant(toks), Significant(nt)
			if len(got) != len(want) {
				t.Fatalf("normalizing changed the tokens: %q -> %q", sql, n)
			}
			for i := range got {
				if got[i].Kind != want[i].Kind || got[i].Value() != want[i].Value() {
					t.Fatalf("normalizing changed token %d: %+v -> %+v", i, want[i], got[i])
				}
			}
		}
	})
}

func BenchmarkAnalyze(b *testing.B) {
	sql := "WITH c AS (SELECT * FROM src WHERE x IN (SELECT y FROM other)) SELECT a.x, b.y FROM c AS a LEFT JOIN db.t b ON a.k = b.k WHERE z IN lookup AND joinGet('j', 'v', a.k) > 0 ORDER BY 1"
	b.SetBytes(int64(len(sql)))
	for i := 0; i < b.N; i++ {
		if _, err := Analyze(sql, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzAnalyzeExpr checks that the analysis of a definition's expression never panics, that its
// errors point inside the input, and that an accepted expression, as emitted, holds no
// subquery and calls nothing that reaches outside its table: lexed again, its SQL has no
// SELECT/WITH and no call of a table function, joinGet, dictGet or a function such as file().
func FuzzAnalyzeExpr(f *testing.F) {
	for _, s := range []string{
		"toYYYYMM(timestamp)", "a, b", "arrayMap(x -> x * k, arr)", "CAST(a AS Nullable(String))",
		"extract(DAY FROM d) + INTERVAL 1 DAY", "x IN (1, 2) AND y NOT IN t", "(SELECT 1)",
		"file('/etc/hostname')", "`file`/**/('x')", "1 /* /* */ , (SELECT 1) -- */", "tuple() AS SELECT 1",
		"d + INTERVAL 1 DAY DELETE WHERE a = 1, d + INTERVAL 2 DAY GROUP BY k SET v = max(v)",
		"position(a IN b) || trim(BOTH ' ' FROM s)", "$$x$$ || {p:String}", "joinGet('j', 'v', 1)",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, expr string, ttl bool) {
		e, err := AnalyzeExpr(expr, ExprOptions{TTL: ttl})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > len(expr) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		for _, c := range e.Columns {
			if c.Start < 0 || c.End > len(expr) || c.Start >= c.End || len(c.Parts) == 0 {
				t.Fatalf("bad column span %+v", c)
			}
		}
		toks, err := Lex(e.SQL)
		if err != nil {
			t.Fatalf("emitted SQL does not lex: %v\n%q", err, e.SQL)
		}
		toks = Significant(toks)
		for i, tk := range toks {
			if u := tk.Upper(); u == "SELECT" || u == "WITH" {
				t.Fatalf("accepted %q holding %s", expr, tk.Text)
			}
			if (tk.Kind == Ident || tk.Kind == QuotedIdent) && i+1 < len(toks) && toks[i+1].is("(") {
				l := strings.ToLower(tk.Value())
				if OutsideFunction(l) != "" && l != "in" && l != "notin" && l != "globalin" && l != "globalnotin" || IsKnownTableFunction(l) && l != "format" || l == "joinget" || l == "joingetornull" || strings.HasPrefix(l, "dictget") {
					if tk.Kind == Ident && (l == "in" || l == "notin") {
						continue // the IN operator before a tuple: x IN (1, 2)
					}
					t.Fatalf("accepted %q calling %s()", expr, tk.Text)
				}
			}
		}
		// The emitted SQL is accepted again.
		if _, err := AnalyzeExpr(e.SQL, ExprOptions{TTL: ttl}); err != nil {
			t.Fatalf("emitted SQL %q of %q is refused: %v", e.SQL, expr, err)
		}
	})
}
