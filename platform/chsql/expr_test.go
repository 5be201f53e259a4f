package chsql

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func columnNames(e *Expr) []string {
	var out []string
	for _, c := range e.Columns {
		out = append(out, c.Name)
	}
	return out
}

func TestAnalyzeExprColumns(t *testing.T) {
	for _, tc := range []struct {
		expr string
		ttl  bool
		want []string
		sql  string
	}{
		{expr: "toYYYYMM(timestamp)", want: []string{"timestamp"}},
		{expr: "tenant_id, domain, timestamp", want: []string{"tenant_id", "domain", "timestamp"}},
		{expr: "tuple()"},
		{expr: "toDateTime(timestamp) + INTERVAL 180 DAY", want: []string{"timestamp"}},
		{expr: "minute + toIntervalDay(7)", want: []string{"minute"}},
		{expr: "toYYYYMM(toDateTime64(_timestamp, 3))", want: []string{"_timestamp"}},
		{expr: "`Options.Names`[1] || \"x\"", want: []string{"Options.Names", "x"}},
		{expr: "nested.a + t.1 + m['k']", want: []string{"nested.a", "t", "m"}},
		{expr: "arrayMap(x -> x * k, arr)", want: []string{"k", "arr"}},
		{expr: "arrayFilter((x, i) -> i > 1 AND x != '', arr, arrayEnumerate(arr))", want: []string{"arr", "arr"}},
		{expr: "CAST(a AS Nullable(String))", want: []string{"a"}},
		{expr: "a::LowCardinality(String) || b", want: []string{"a", "b"}},
		{expr: "extract(DAY FROM d) + date_add(DAY, 1, d2)", want: []string{"d", "d2"}},
		{expr: "trim(BOTH ' ' FROM s) || substring(s FROM 1 FOR 2)", want: []string{"s", "s"}},
		{expr: "position(needle IN haystack)", want: []string{"needle", "haystack"}},
		{expr: "x IN (1, 2) AND y NOT IN ('a') AND z GLOBAL IN (a, b)", want: []string{"x", "y", "z", "a", "b"}},
		{expr: "CASE WHEN a IS NULL THEN DATE '2020-01-01' ELSE b END", want: []string{"a", "b"}},
		{expr: "if(not(a), (b + 1) AS c, c)", want: []string{"a", "b"}},
		{expr: "a IS NOT DISTINCT FROM b", want: []string{"a", "b"}},
		{expr: "ts + INTERVAL 1 MONTH DELETE WHERE kind = 'x', ts + INTERVAL 1 WEEK GROUP BY k SET v = max(v)", ttl: true, want: []string{"ts", "kind", "ts", "k", "v", "v"}},
		{expr: "d + INTERVAL 1 DAY RECOMPRESS CODEC(ZSTD(17))", ttl: true, want: []string{"d"}},
		{expr: "now() -- a comment\n", sql: "now()"},
		{expr: "concat($$a$$, /* c */ s)", want: []string{"s"}, sql: "concat('a',   s)"},
	} {
		e, err := AnalyzeExpr(tc.expr, ExprOptions{TTL: tc.ttl})
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := columnNames(e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: columns %q, want %q", tc.expr, got, tc.want)
		}
		if tc.sql != "" && e.SQL != tc.sql {
			t.Errorf("%q: SQL %q, want %q", tc.expr, e.SQL, tc.sql)
		}
	}
}

// TestAnalyzeExprRefusesReachingOutside: each expression is refused at the offset of the
// marked token («) with a message holding want.
func TestAnalyzeExprRefusesReachingOutside(t *testing.T) {
	for _, tc := range []struct {
		expr, want string
		ttl        bool
	}{
		{expr: "«file('/etc/hostname')", want: "file() reads a file"},
		{expr: "«FiLe('/etc/hostname', 'LineAsString')", want: "FiLe()"},
		{expr: "upper(«`file`('/etc/hostname'))", want: "file()"},
		{expr: "concat(a, /* x */ «file/**/('/etc/hostname'))", want: "file()"},
		{expr: "(«SELECT groupArray(s) FROM ws_victim.secrets)[1]", want: "subqueries are refused"},
		{expr: "(«sElEcT any(s) FROM ws_dos.base)", want: "subqueries are refused"},
		{expr: "(«WITH 1 AS x SELECT x)", want: "subqueries are refused"},
		{expr: "(«FROM t SELECT 1)", want: "subqueries are refused"},
		{expr: "a = ANY («SELECT s FROM t)", want: "subqueries are refused"},
		{expr: "a IN «ws_victim.secrets", want: "IN ws_victim.secrets reads table"},
		{expr: "a NOT IN ((«secrets))", want: "IN secrets reads table"},
		{expr: "a GLOBAL IN «`ws`.`t`", want: "IN ws.t reads table"},
		{expr: "«in(a, ws_victim.secrets)", want: "in() as a function"},
		{expr: "«notIn(a, t)", want: "notIn()"},
		{expr: "«joinGet('ws_victim.j', 'v', a)", want: "joinGet() reads another table"},
		{expr: "«dictGetString('d', 'a', toUInt64(1))", want: "reads a dictionary"},
		{expr: "a IN «url('http://127.0.0.1:9/', CSV, 'a String')", want: "url(): table functions are refused"},
		{expr: "(«SELECT 1) + «s3('x')", want: "subqueries"},
		{expr: "«remote('h', db, t)", want: "table functions are refused"},
		{expr: "«hasColumnInTable('ws_victim', 'secrets', 's')", want: "hasColumnInTable()"},
		{expr: "«getServerSetting('path')", want: "getServerSetting()"},
		{expr: "«__getScalar('x')", want: "internal ClickHouse functions"},
		{expr: "x.«file('/etc/hostname')", want: "qualified function names"},
		{expr: "«{p:String}", want: "query parameter"},
		{expr: "1«; DROP TABLE t", want: "ends a statement"},
		{expr: "1 «SETTINGS max_threads = 1", want: "SETTINGS is not part of an expression"},
		{expr: "1 /* «/* */ , (SELECT 1) -- */", want: "nested /* comments"},
		{expr: "a +«\u00a0b", want: "non-ASCII"},
		{expr: "CAST(a AS «SELECT)", want: "inside a type"},
		{expr: "CAST(a AS Array(«file('x')))", want: "file()"},
		{expr: "a::«url('x')", want: "url()"},
		{expr: "a::«SELECT", want: "is no type"},
		{expr: "a::Array(«joinGet('j', 'v', 1))", want: "joinGet()"},
		{expr: "tuple() AS «SELECT 1", want: "subqueries are refused"},
		{expr: "(AS «Null())", want: "Null(): table functions are refused"},
		{expr: "«NULL('x String')", want: "table functions are refused"},
		{expr: "d + INTERVAL 1 DAY «TO DISK 'x'", ttl: true, want: "TO DISK"},
		{expr: "d + INTERVAL 1 DAY DELETE WHERE a IN «t", ttl: true, want: "IN t reads table"},
	} {
		at := strings.Index(tc.expr, "«")
		expr := strings.ReplaceAll(tc.expr, "«", "")
		_, err := AnalyzeExpr(expr, ExprOptions{TTL: tc.ttl})
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: %v, want a refusal", expr, err)
			continue
		}
		if !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%q: %q, want it to say %q", expr, e.Msg, tc.want)
		}
		if e.Offset != at {
			t.Errorf("%q: refused at offset %d (%q), want %d", expr, e.Offset, expr[min(e.Offset, len(expr)):], at)
		}
	}
}
