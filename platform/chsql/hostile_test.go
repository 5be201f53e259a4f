package chsql

import (
	"fmt"
	"strings"
	"testing"
)

// refuseOutside is the policy issue 9 describes, as a Qualify callback:
// unqualified tables are qualified with the workspace database, everything
// else that could leave the workspace is refused.
func refuseOutside(ws string) func(TableRef) (string, error) {
	allowed := map[string]bool{"numbers": true, "numbers_mt": true, "zeros": true, "values": true, "generaterandom": true, "null": true}
	return func(r TableRef) (string, error) {
		switch r.Kind {
		case RefTableFunction:
			if !allowed[strings.ToLower(r.Name)] {
				return "", fmt.Errorf("table function %s is not allowed", r.Name)
			}
			return r.Name + "(" + r.Args + ")", nil
		case RefQueryParameter, RefOutfile, RefDatabase:
			return "", fmt.Errorf("%s is not allowed", r.Kind)
		}
		if r.Dynamic {
			return "", fmt.Errorf("computed %s name", r.Kind)
		}
		if r.Database != "" && r.Database != ws {
			return "", fmt.Errorf("database %s is not allowed", r.Database)
		}
		return r.Qualified(ws), nil
	}
}

func TestHostileQueriesAreRefused(t *testing.T) {
	hostile := []string{
		"SELECT * FROM file('/etc/passwd', 'LineAsString')",
		"SELECT * FROM FILE('/etc/passwd')",
		"SELECT * FROM/**/file('/etc/passwd')",
		"SELECT * FROM -- x\nfile('/etc/passwd')",
		"sElEcT * fRoM url('http://evil/', CSV)",
		"SELECT * FROM s3('https://b/k')",
		"SELECT * FROM remote('host', db, t)",
		"SELECT * FROM remoteSecure('host', db.t)",
		"SELECT * FROM cluster('c', system.users)",
		"SELECT * FROM mysql('h', 'd', 't', 'u', 'p')",
		"SELECT * FROM postgresql('h', 'd', 't', 'u', 'p')",
		"SELECT * FROM executable('x.sh', TabSeparated, 'a String')",
		"SELECT * FROM input('a String')",
		"SELECT * FROM hdfs('hdfs://x', TSV)",
		"SELECT * FROM azureBlobStorage('x')",
		"SELECT * FROM iceberg('x')",
		"SELECT * FROM merge('other', '.*')",
		"SELECT * FROM other_ws.events",
		"SELECT * FROM system.users",
		"SELECT * FROM \"other\".\"t\"",
		"SELECT * FROM `other`.t AS x FINAL",
		"SELECT * FROM t JOIN other.u ON 1",
		"SELECT * FROM t LEFT JOIN file('/etc/passwd') f ON 1",
		"SELECT * FROM t, other.u",
		"SELECT * FROM t WHERE x IN other.u",
		"SELECT * FROM t WHERE x IN (SELECT y FROM other.u)",
		"SELECT * FROM t WHERE x GLOBAL NOT IN (SELECT y FROM file('x'))",
		"SELECT * FROM (SELECT * FROM (SELECT * FROM other.deep))",
		"WITH c AS (SELECT * FROM other.u) SELECT * FROM c",
		"WITH (SELECT count() FROM other.u) AS n SELECT n",
		"WITH hostname AS (SELECT 1) SELECT * FROM (SELECT 1) a, hostname b WHERE 0 UNION ALL SELECT * FROM url('x')",
		"SELECT joinGet('other.j', 'v', 1)",
		"SELECT joinGet(other.j, 'v', 1)",
		"SELECT dictGet('other.d', 'a', toUInt64(1))",
		"SELECT dictGetOrDefault('other.d', 'a', 1, '')",
		"SELECT * FROM t UNION ALL SELECT * FROM other.u",
		"SELECT (SELECT max(x) FROM other.u)",
		"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM file('x'))",
		"SELECT * FROM {tbl:Identifier}",
		"SELECT 1 INTO OUTFILE '/tmp/x'",
		"DESCRIBE file('/etc/passwd')",
		"SHOW TABLES FROM other",
		"SELECT * FROM view(SELECT * FROM other.u)",
		"SELECT * FROM numbers(1) AS a(x), other.u",
		"SELECT joinGet(concat('other', '.j'), 'v', 1)",
	}
	if len(hostile) < 40 {
		t.Fatalf("only %d hostile queries", len(hostile))
	}
	for _, q := range hostile {
		if _, err := Qualify(q, refuseOutside("ws")); err == nil {
			t.Errorf("not refused: %s", q)
		}
	}
}

func TestLegitimateQueriesQualify(t *testing.T) {
	tests := map[string]string{
		// A file path as a table name is qualified: it can no longer fall back
		// to a file of the default database.
		"sElEcT * fRoM `/etc/hostname`":                                   "sElEcT * fRoM `ws`.`/etc/hostname` AS `/etc/hostname`",
		"SELECT * FROM numbers(10)":                                       "SELECT * FROM numbers(10)",
		"SELECT * FROM events e JOIN users USING id":                      "SELECT * FROM `ws`.`events` e JOIN `ws`.`users` AS `users` USING id",
		"WITH c AS (SELECT 1) SELECT * FROM c":                            "WITH c AS (SELECT 1) SELECT * FROM c",
		"SELECT * FROM ws.events":                                         "SELECT * FROM `ws`.`events` AS `events`",
		"SELECT dictGet('d', 'a', 1)":                                     "SELECT dictGet('ws.d', 'a', 1)",
		"SELECT events.a FROM events WHERE b IN (SELECT b FROM ws.other)": "SELECT events.a FROM `ws`.`events` AS `events` WHERE b IN (SELECT b FROM `ws`.`other` AS `other`)",
	}
	for in, want := range tests {
		got, err := Qualify(in, refuseOutside("ws"))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("%s:\n got  %s\nwant %s", in, got, want)
		}
	}
}

// TestAnalyzeFindsWhatHides covers the bypasses found for issue 9: each query hides something
// the analysis must still report.
func TestAnalyzeFindsWhatHides(t *testing.T) {
	tests := []struct {
		sql                         string
		refs, funcs, settings, fmts []string
	}{
		// An alias with a column list used to end the FROM list (chDB read other.t).
		{sql: "SELECT * FROM numbers(1) AS a(x), other.t", refs: []string{"table function:numbers@a", "table:other.t"}},
		{sql: "SELECT * FROM (SELECT 1) s(x), other.t", refs: []string{"table:other.t"}},
		// A back-quoted function name is a call too (`file`('x') reads a file on chDB).
		{sql: "SELECT `file`('/etc/passwd'), FiLe('x')", funcs: []string{"file", "FiLe"}},
		{sql: "SELECT 1 SETTINGS max_result_rows = 0, readonly = (0), x = 'a' FORMAT TSV", settings: []string{"max_result_rows", "readonly", "x"}, fmts: []string{"TSV"}},
		{sql: "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0) SETTINGS `readonly` = 1", settings: []string{"max_result_rows", "readonly"}},
		{sql: "SELECT * FROM t FORMAT `JSONEachRow`", refs: []string{"table:t"}, fmts: []string{"JSONEachRow"}},
		// Columns and functions named format are not FORMAT clauses.
		{sql: "SELECT a AS format, format('{}', b), c format FROM t", refs: []string{"table:t"}, funcs: []string{"format"}},
		// joinGet/dictGet with a computed name are reported without a name.
		{sql: "SELECT joinGet(concat('oth', 'er.t'), 'v', 1)", refs: []string{"joinGet table:"}, funcs: []string{"joinGet", "concat"}},
		{sql: "SELECT joinGet(('other.t'), 'v', 1)", refs: []string{"joinGet table:"}, funcs: []string{"joinGet"}},
		{sql: "SELECT joinGetOrNull('other' || '.t', 'v', 1)", refs: []string{"joinGet table:"}, funcs: []string{"joinGetOrNull"}},
		{sql: "SELECT dictGet({d:String}, 'a', 1)", refs: []string{"dictionary:"}, funcs: []string{"dictGet"}},
		// The function form of IN reads its second argument as a set (chDB ran it).
		{sql: "SELECT in('x', other.t), IN(1, 2), (c) IN (3) FROM t WHERE a NOT IN (1) AND b GLOBAL IN (2)", refs: []string{"table:t"}, funcs: []string{"in", "IN"}},
		{sql: "SELECT notIn('x', other.t)", funcs: []string{"notIn"}},
	}
	for _, tt := range tests {
		a, err := Analyze(tt.sql, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		var funcs, settings, fmts []string
		for _, f := range a.Functions {
			funcs = append(funcs, f.Name)
		}
		for _, s := range a.Settings {
			settings = append(settings, s.Name)
		}
		for _, f := range a.Formats {
			fmts = append(fmts, f.Name)
		}
		got := fmt.Sprint(refString(a.Refs), funcs, settings, fmts)
		if want := fmt.Sprint(tt.refs, tt.funcs, tt.settings, tt.fmts); got != want {
			t.Errorf("%s:\n got  %s\nwant %s", tt.sql, got, want)
		}
		for _, r := range a.Refs {
			if (r.Kind == RefJoinGet || r.Kind == RefDictionary) && r.Name == "" && !r.Dynamic {
				t.Errorf("%s: nameless reference not marked Dynamic", tt.sql)
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	ok := map[string]string{
		"SELECT 1 /* c */ FROM t -- x\nWHERE 1 # y": "SELECT 1   FROM t \nWHERE 1 ",
		"SELECT $$a'b$$, $t$c$t$":                   `SELECT 'a\'b', 'c'`,
		"SELECT 'é', `é` FROM t":                    "SELECT 'é', `é` FROM t",
		"SELECT 1 /* -- */ , 2":                     "SELECT 1   , 2",
	}
	for in, want := range ok {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		// 18.16 ends the comment at the first */ and runs the subquery (measured).
		"SELECT 1 /* /* */ , (SELECT s FROM other.t) -- */",
		"SELECT * FROM\u00a0other.t",
		"SELECT * FROM é",
		"SELECT 1\x00",
		"SELECT 'unterminated",
	} {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		}
	}
}
