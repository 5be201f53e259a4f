package chsql

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// refString renders refs compactly: kind:db.name@alias.
func refString(refs []TableRef) []string {
	var out []string
	for _, r := range refs {
		s := r.Kind.String() + ":"
		if r.Database != "" {
			s += r.Database + "."
		}
		s += r.Name
		if r.Alias != "" {
			s += "@" + r.Alias
		}
		out = append(out, s)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	nodes := map[string]bool{"prev_node": true, "hits": true}
	tests := []struct {
		sql  string
		want []string
	}{
		{"SELECT 1", nil},
		{"SELECT * FROM events", []string{"table:events"}},
		{"select * from db.events e where x in (select y from other)", []string{"table:db.events@e", "table:other"}},
		{"SELECT * FROM `my db`.`my table` AS t FINAL", []string{"table:my db.my table@t"}},
		{"SELECT * FROM \"system\".\"tables\"", []string{"table:system.tables"}},
		{"SELECT a FROM t1, t2 AS b, numbers(10) n", []string{"table:t1", "table:t2@b", "table function:numbers@n"}},
		{"SELECT * FROM a LEFT JOIN b ON a.x = b.x INNER JOIN c USING (x)", []string{"table:a", "table:b", "table:c"}},
		{"SELECT * FROM a ARRAY JOIN arr AS el LEFT ARRAY JOIN arr2", []string{"table:a"}},
		{"SELECT * FROM a GLOBAL ANY LEFT JOIN b AS bb ON 1", []string{"table:a", "table:b@bb"}},
		{"SELECT * FROM t WHERE x IN other_table AND y NOT IN db.t2 AND z GLOBAL IN (SELECT 1 FROM t3)", []string{"table:t", "table:other_table", "table:db.t2", "table:t3"}},
		{"SELECT * FROM t WHERE x IN (1, 2) AND y IN ['a'] AND z NOT IN splitByChar(',', 'a,b')", []string{"table:t"}},
		{"WITH cte AS (SELECT * FROM src) SELECT * FROM cte JOIN other USING id", []string{"table:src", "table:other"}},
		{"WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b, a", nil},
		{"WITH (SELECT max(x) FROM t1) AS m, 5 AS k SELECT m FROM t2", []string{"table:t1", "table:t2"}},
		{"WITH x AS (SELECT * FROM x) SELECT * FROM x", []string{"table:x"}},
		{"SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) AS s, c", []string{"table:c"}},
		{"WITH c AS (SELECT 1) SELECT * FROM c UNION ALL SELECT * FROM c", []string{"table:c"}},
		{"SELECT * FROM prev_node JOIN hits h ON 1 JOIN events USING x", []string{"node:prev_node", "node:hits@h", "table:events"}},
		{"SELECT * FROM db.prev_node", []string{"table:db.prev_node"}},
		{"SELECT joinGet('db.jt', 'v', 1), dictGet('dict', 'a', 1), dictGetOrDefault(d2, 'a', 1, 0), joinGet(other.j, 'v', 2)", []string{"joinGet table:db.jt", "dictionary:dict", "dictionary:d2", "joinGet table:other.j"}},
		{"SELECT extract(DAY FROM d), substring(s FROM 1 FOR 2), trim(BOTH ' ' FROM s), position('a' IN s) FROM t", []string{"table:t"}},
		{"SELECT a IS DISTINCT FROM b FROM t", []string{"table:t"}},
		{"SELECT d, count() c FROM t GROUP BY d ORDER BY d WITH FILL FROM toStartOfDay(now() - INTERVAL 7 DAY) TO toStartOfDay(now()) STEP INTERVAL 1 DAY", []string{"table:t"}},
		{"SELECT d FROM t ORDER BY d WITH FILL FROM (SELECT min(d) FROM t2) TO 10, e WITH FILL FROM 1 TO 5 STEP 1 LIMIT 3", []string{"table:t", "table:t2"}},
		{"SELECT * FROM (SELECT d FROM t ORDER BY d WITH FILL FROM 1 TO 3) AS s JOIN u USING d", []string{"table:t", "table:u"}},
		{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT n FROM r", nil},
		{"WITH RECURSIVE r AS (SELECT id FROM src UNION ALL SELECT c.id FROM src c JOIN r ON c.parent = r.id) SELECT * FROM r", []string{"table:src", "table:src@c"}},
		{"SELECT number FROM system.numbers LIMIT 3", []string{"table:system.numbers"}},
		{"SELECT * FROM 1t JOIN 0x1Fg ON 1 JOIN $x ON 1 JOIN x$ USING (a)", []string{"table:1t", "table:0x1Fg", "table:$x", "table:x$"}},
		{"SELECT * FROM t WHERE x IN (t2) AND y IN ((db.t3)) AND z IN (1) AND w IN (SELECT 1)", []string{"table:t", "table:t2", "table:db.t3"}},
		{"SELECT CAST(x IN t2 AS UInt8), position('a' IN s IN t3), extract(DAY FROM (SELECT d FROM t4)) FROM t", []string{"table:t2", "table:t3", "table:t4", "table:t"}},
		{"SELECT * FROM/**/file('/etc/passwd', 'LineAsString')", []string{"table function:file"}},
		{"sElEcT * fRoM `/etc/hostname`", []string{"table:/etc/hostname"}},
		{"SELECT * FROM -- comment\n  url('http://x', CSV)", []string{"table function:url"}},
		{"SELECT * FROM t WHERE x IN file('a')", []string{"table:t", "table function:file"}},
		{"SELECT * FROM view(SELECT * FROM inner_t)", []string{"table function:view", "table:inner_t"}},
		{"SELECT * FROM {tbl:Identifier}", []string{"query parameter:{tbl:Identifier}"}},
		{"SELECT 1 INTO OUTFILE '/tmp/x'", []string{"outfile:/tmp/x"}},
		{"INSERT INTO db.t SELECT * FROM s", []string{"table:db.t", "table:s"}},
		{"INSERT INTO FUNCTION file('x') SELECT 1", []string{"table function:file"}},
		{"DESCRIBE TABLE db.t", []string{"table:db.t"}},
		{"DESC file('x')", []string{"table function:file"}},
		{"SHOW TABLES FROM other_db", []string{"database:other_db"}},
		{"SHOW CREATE TABLE secret.t", []string{"table:secret.t"}},
		{"EXISTS TABLE db.t", []string{"table:db.t"}},
		{"SELECT * FROM t SAMPLE 1/10 OFFSET 1/2 WHERE 1", []string{"table:t"}},
		{"SELECT * FROM t AS a FINAL PREWHERE x", []string{"table:t@a"}},
		{"SELECT * FROM t eval final left join u ON 1", []string{"table:t@eval", "table:u"}},
		{"SELECT x.1, t .2 FROM t", []string{"table:t"}},
		{"SELECT * FROM t1; SELECT * FROM t2", []string{"table:t1", "table:t2"}},
		{"SELECT count() FROM t GROUP BY x WITH TOTALS", []string{"table:t"}},
		{"SELECT 'FROM x', \"FROM\" FROM t -- FROM y\n/* FROM z */", []string{"table:t"}},
	}
	for _, tt := range tests {
		a, err := Analyze(tt.sql, nodes)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		got := refString(a.Refs)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s\n got  %q\nwant %q", tt.sql, got, tt.want)
		}
		for _, r := range a.Refs {
			if r.Start < 0 || r.End > len(tt.sql) || r.Start >= r.End {
				t.Errorf("%s: bad span %+v", tt.sql, r)
			}
		}
	}
}

func TestLeftTable(t *testing.T) {
	tests := map[string]string{
		"SELECT * FROM a JOIN b ON 1":                                     "a",
		"WITH (SELECT max(x) FROM other) AS m SELECT * FROM src":          "src",
		"SELECT * FROM (SELECT * FROM inner_src) JOIN b USING x":          "inner_src",
		"WITH c AS (SELECT * FROM base) SELECT * FROM c LEFT JOIN d ON 1": "base",
		"SELECT 1": "",
	}
	for sql, want := range tests {
		a, err := Analyze(sql, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := a.LeftTable()
		if got := r.Name; got != want || ok != (want != "") {
			t.Errorf("%s: left = %q %v, want %q", sql, got, ok, want)
		}
	}
}

func TestQualify(t *testing.T) {
	sql := "WITH c AS (SELECT * FROM src) SELECT events.x, e2.y FROM events JOIN db2.t e2 ON 1 LEFT JOIN c USING id WHERE z IN lookup AND joinGet('jt', 'v', 1) > 0"
	got, err := Qualify(sql, func(r TableRef) (string, error) {
		if r.Database != "" {
			return "", fmt.Errorf("database %s is not allowed", r.Database)
		}
		return r.Qualified("ws"), nil
	})
	if err == nil || !strings.Contains(err.Error(), "db2") {
		t.Fatalf("expected a refusal, got %q %v", got, err)
	}
	sql = strings.Replace(sql, "db2.t", "t", 1)
	got, err = Qualify(sql, func(r TableRef) (string, error) { return r.Qualified("ws"), nil })
	if err != nil {
		t.Fatal(err)
	}
	want := "WITH c AS (SELECT * FROM `ws`.`src` AS `src`) SELECT events.x, e2.y FROM `ws`.`events` AS `events` JOIN `ws`.`t` e2 ON 1 LEFT JOIN c USING id WHERE z IN `ws`.`lookup` AND joinGet('ws.jt', 'v', 1) > 0"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Re-pointing a materialized view's source at a subquery keeps src.col working.
	a, _ := Analyze("SELECT src.a, count() FROM src GROUP BY src.a", nil)
	left, _ := a.LeftTable()
	got, _ = a.Rewrite(func(r TableRef) (string, error) {
		if r.Start == left.Start {
			return r.Subquery("SELECT * FROM staging WHERE p = 1"), nil
		}
		return a.SQL[r.Start:r.End], nil
	})
	if want := "SELECT src.a, count() FROM (SELECT * FROM staging WHERE p = 1) AS `src` GROUP BY src.a"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Overlapping rewrites are refused.
	_, err = Qualify("SELECT * FROM view(SELECT * FROM t)", func(r TableRef) (string, error) { return "x", nil })
	if err == nil {
		t.Errorf("expected an overlap error")
	}
}

func TestStatements(t *testing.T) {
	tests := []struct {
		sql   string
		kind  StatementKind
		count int
	}{
		{"SELECT 1", KindSelect, 1},
		{"  (SELECT 1)", KindSelect, 1},
		{"with x as (select 1) select * from x", KindWith, 1},
		{"-- c\n/* c */ show tables", KindShow, 1},
		{"DESC t", KindDescribe, 1},
		{"EXPLAIN AST SELECT 1", KindExplain, 1},
		{"insert into t values (1)", KindInsert, 1},
		{"SELECT 1;", KindSelect, 1},
		{"SELECT 1; -- trailing comment\n", KindSelect, 1},
		{"SELECT 1; DROP TABLE t", KindSelect, 2},
		{"SELECT ';', `;`, \";\" /* ; */ -- ;\n", KindSelect, 1},
		{"DROP TABLE t", KindDrop, 1},
		{"FROM t SELECT x", KindSelect, 1},
		{"", KindEmpty, 0},
		{"1 + 1", KindOther, 1},
	}
	for _, tt := range tests {
		k, err := Classify(tt.sql)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := Split(tt.sql)
		multi, _ := MultipleStatements(tt.sql)
		if k != tt.kind || len(st) != tt.count || multi != (tt.count > 1) {
			t.Errorf("%q: kind %q count %d multi %v, want %q %d", tt.sql, k, len(st), multi, tt.kind, tt.count)
		}
	}
	if !KindSelect.ReadOnly() || KindInsert.ReadOnly() {
		t.Error("ReadOnly")
	}
}

func TestLex(t *testing.T) {
	toks, err := Lex(`SELECT 'a\'b''c', "q""x", ` + "`b\\`t`" + `, 0x1F, 1.5e-3, .5, $$he'redoc$$, $t$x$t$ -- c
	/* outer /* nested */ still */ # hash
	a->b, x::Int8 <= >= != <> || ;`)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, tk := range toks {
		kinds = append(kinds, tk.Kind.String()+":"+tk.Text)
	}
	want := []string{"Ident:SELECT", `String:'a\'b''c'`, "Punct:,", `QuotedIdent:"q""x"`, "Punct:,", "QuotedIdent:`b\\`t`", "Punct:,", "Number:0x1F", "Punct:,", "Number:1.5e-3", "Punct:,", "Number:.5", "Punct:,", "String:$$he'redoc$$", "Punct:,", "String:$t$x$t$", "Comment:-- c", "Comment:/* outer /* nested */ still */", "Comment:# hash", "Ident:a", "Punct:->", "Ident:b", "Punct:,", "Ident:x", "Punct:::", "Ident:Int8", "Punct:<=", "Punct:>=", "Punct:!=", "Punct:<>", "Punct:||", "Punct:;"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("got  %q\nwant %q", kinds, want)
	}
	if v := toks[1].Value(); v != "a'b'c" {
		t.Errorf("string value = %q", v)
	}
	if v := toks[5].Value(); v != "b`t" {
		t.Errorf("ident value = %q", v)
	}
	for _, bad := range []string{"SELECT 'abc", "SELECT `x", "SELECT /* x", "SELECT $a$ x", `SELECT "x`, "SELECT 1.5t"} {
		if _, err := Lex(bad); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}
