package chsql

import (
	"errors"
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
