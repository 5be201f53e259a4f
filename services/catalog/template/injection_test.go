package template

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/chsql"
)

// hostileValues are parameter values that try to break out of a literal.
func hostileValues() []string {
	return []string{
		"'", "''", `\`, `\'`, `\\'`, `'\`, "' OR 1=1 --", "'; DROP TABLE users; --",
		"abc' /* comment", "*/ SELECT 1 /*", "-- comment\nSELECT 1", "a\nb\r\nc",
		"; SELECT * FROM system.users", "`", "``", "` FROM secret --", `"`, `""`, `" OR "1"="1`,
		"$$", "$a$ x $a$", "{{ x }}", "{% end %}", "%", "\x00", "\x1a", "\t\b\f\v",
		"ünïcödé ✓ 🔥", "\u2028\u2029", "\xff\xfe", "' || (SELECT 1) || '",
		"0x27", "1e308", "?", "{x:String}", "#", "/*", "*/", "\\\n'",
		strings.Repeat("'", 1000), strings.Repeat(`\'`, 1000), strings.Repeat("a", 1<<20), strings.Repeat("';--", 1<<18),
	}
}

// shape returns the token structure of sql: kinds, and the text of every
// token that is not a literal or quoted identifier.
func shape(t *testing.T, sql string) []string {
	t.Helper()
	toks, err := chsql.Lex(sql)
	if err != nil {
		t.Fatalf("rendered SQL does not lex: %v\n%.300s", err, sql)
	}
	var out []string
	for i, tk := range toks {
		// column() quotes each segment of a dotted name: `a`.`b` is one
		// (compound) identifier.
		if tk.Kind == chsql.Punct && tk.Text == "." && i > 0 && i+1 < len(toks) && toks[i-1].Kind == chsql.QuotedIdent && toks[i+1].Kind == chsql.QuotedIdent {
			out = out[:len(out)-1]
			continue
		}
		switch tk.Kind {
		case chsql.String, chsql.QuotedIdent, chsql.Number:
			out = append(out, tk.Kind.String())
		default:
			out = append(out, tk.Kind.String()+":"+tk.Text)
		}
	}
	return out
}

func equalShape(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInjectionSingleLiteral renders hostile values through every function
// that takes a parameter and checks with the chsql lexer that the query's
// token structure is the one a benign value gives: the value stays one
// literal (or one quoted identifier).
func TestInjectionSingleLiteral(t *testing.T) {
	templates := []struct {
		src    string
		prefix string // prepended to the value (to satisfy a type's validation)
	}{
		{"%SELECT * FROM t WHERE a = {{ String(x) }} AND b = 1", ""},
		{"%SELECT * FROM t WHERE a = {{ x }} AND b = 1", ""},
		{"%SELECT * FROM t WHERE a = {{ String(x, 'd') }} -- end", ""},
		{"%SELECT * FROM t WHERE a > {{ DateTime(x) }} AND b = 1", "2024-01-01 00:00:00"},
		{"%SELECT * FROM t WHERE a > {{ DateTime64(x) }} AND b = 1", "2024-01-01 00:00:00.123"},
		{"%SELECT {{ column(x, 'a') }} FROM t", ""},
		{"%SELECT {{ symbol(x) }} FROM t", ""},
		{"%SELECT * FROM t WHERE a LIKE {{ sql_unescape(String(x), '%') }}", ""},
		{"%SELECT * FROM t WHERE {{ sql_and(a=String(x)) }}", ""},
		{"%SELECT {{ String(x) + 'suffix' }}", ""},
		{"%{% set v = String(x) %}SELECT {{ v }}, {{ v.replace('a', 'b') }}", ""},
		{"%SELECT * FROM t WHERE a = {{ JSON(j).get('k', 'd') }}", ""},
	}
	for _, tc := range templates {
		tpl, err := Parse(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		benign, err := tpl.Render(map[string]string{"x": tc.prefix + "benign", "j": `{"k":"v"}`}, RenderOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		want := shape(t, benign)
		for _, v := range hostileValues() {
			val := tc.prefix + v
			j := `{"k":` + jsonString(val) + `}`
			got, err := tpl.Render(map[string]string{"x": val, "j": j}, RenderOptions{})
			if err != nil {
				// A value that a type rejects is safe too.
				continue
			}
			if s := shape(t, got); !equalShape(s, want) {
				t.Errorf("%s: value %.60q changed the token structure:\n%.400s", tc.src, val, got)
			}
		}
	}
}

// TestInjectionStringRoundTrip checks that the literal decodes back to the
// value, so escaping neither loses nor adds characters (apart from the
// platform's escaping of % for LIKE).
func TestInjectionStringRoundTrip(t *testing.T) {
	tpl, _ := Parse("%SELECT {{ String(x) }}")
	for _, v := range hostileValues() {
		if strings.Contains(v, "%") || len(v) > 4096 {
			continue
		}
		got, err := tpl.Render(map[string]string{"x": v}, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		toks, _ := chsql.Lex(got)
		if len(toks) != 2 || toks[1].Kind != chsql.String || toks[1].Value() != v {
			t.Errorf("value %q rendered as %q", v, got)
		}
	}
}

// TestInjectionArrays checks that list-valued functions render a list of
// literals and nothing else, whatever the elements hold.
func TestInjectionArrays(t *testing.T) {
	for _, src := range []string{
		"%SELECT * FROM t WHERE a IN {{ Array(x) }}",
		"%SELECT * FROM t WHERE a IN {{ Array(x, 'String') }}",
		"%SELECT * FROM t WHERE a IN {{ split_to_array(x) }}",
		"%SELECT * FROM t WHERE a IN {{ split_to_array(String(x), separator='|') }}",
	} {
		tpl, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range hostileValues() {
			got, err := tpl.Render(map[string]string{"x": v}, RenderOptions{})
			if err != nil {
				continue
			}
			toks, err := chsql.Lex(got)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			// SELECT * FROM t WHERE a IN [ lit (, lit)* ]
			body := toks[7:]
			if len(body) < 3 || body[0].Text != "[" || body[len(body)-1].Text != "]" {
				t.Errorf("%s: value %.40q: not a list: %.200s", src, v, got)
				continue
			}
			for i, tk := range body[1 : len(body)-1] {
				if (i%2 == 0 && tk.Kind != chsql.String) || (i%2 == 1 && tk.Text != ",") {
					t.Errorf("%s: value %.40q: unexpected token %q in %.200s", src, v, tk.Text, got)
					break
				}
			}
		}
	}
	// Typed arrays refuse elements that are not of the type.
	tpl, _ := Parse("%SELECT {{ Array(x, 'Int32') }}")
	for _, v := range []string{"1,2; DROP", "1) OR (1", "1 --"} {
		if out, err := tpl.Render(map[string]string{"x": v}, RenderOptions{}); err == nil {
			t.Errorf("Array Int32 accepted %q: %s", v, out)
		}
	}
}

// TestInjectionColumns checks columns() renders only quoted identifiers.
func TestInjectionColumns(t *testing.T) {
	tpl, _ := Parse("%SELECT {{ columns(x, 'a') }} FROM t")
	for _, v := range hostileValues() {
		got, err := tpl.Render(map[string]string{"x": v}, RenderOptions{})
		if err != nil {
			continue
		}
		toks, err := chsql.Lex(got)
		if err != nil {
			t.Fatal(err)
		}
		mid := toks[1 : len(toks)-2]
		for i, tk := range mid {
			ok := (tk.Kind == chsql.QuotedIdent) || (tk.Text == "." && i%2 == 1) || (tk.Text == "," && i%2 == 1)
			if !ok {
				t.Errorf("value %.40q: unexpected token %q in %.200s", v, tk.Text, got)
				break
			}
		}
	}
}

// TestInjectionTypedRejects checks that typed functions reject, rather than
// render, values that are not of their type.
func TestInjectionTypedRejects(t *testing.T) {
	for _, fn := range []string{"Int8", "Int32", "Int64", "UInt8", "UInt64", "Int256", "UInt256", "Int", "Integer", "Float32", "Float64", "Date", "DateTime", "Boolean"} {
		tpl, err := Parse("%SELECT {{ " + fn + "(x) }}")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range hostileValues() {
			if _, err := tpl.Render(map[string]string{"x": v}, RenderOptions{}); err == nil && fn != "DateTime" {
				if v == "1e308" && strings.HasPrefix(fn, "Float") {
					continue
				}
				t.Errorf("%s accepted %.40q", fn, v)
			}
		}
	}
	tpl, _ := Parse("%SELECT {{ Int32(x) }}")
	for _, v := range []string{"2147483648", "-2147483649", "1.5", "0x10", " 1; DROP"} {
		if _, err := tpl.Render(map[string]string{"x": v}, RenderOptions{}); err == nil {
			t.Errorf("Int32 accepted %q", v)
		}
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
