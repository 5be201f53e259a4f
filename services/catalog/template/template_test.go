package template

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var ts = time.Date(2024, 5, 27, 11, 0, 0, 0, time.UTC)

func render(t *testing.T, src string, params map[string]string, check bool) (string, error) {
	t.Helper()
	tpl, err := Parse(src)
	if err != nil {
		return "", err
	}
	return tpl.Render(params, RenderOptions{JobTimestamp: ts, Check: check})
}

func TestRender(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		params map[string]string
		want   string
	}{
		{"plain sql untouched", "SELECT {{ x }}", nil, "SELECT {{ x }}"},
		{"string", "%\nSELECT {{ String(x) }}", map[string]string{"x": "a'b"}, `SELECT 'a\'b'`},
		{"string default", "%\nSELECT {{String(x, 'US')}}", nil, "SELECT 'US'"},
		{"bare string param", "% SELECT {{ x }}", map[string]string{"x": "v"}, "SELECT 'v'"},
		{"int32", "%\nSELECT {{ Int32(n) }}", map[string]string{"n": "5"}, "SELECT toInt32('5')"},
		{"int32 default", "%\nSELECT {{ Int32(n, 7, description=\"x\") }}", nil, "SELECT toInt32('7')"},
		{"uint8 leading plus", "%{{UInt8(n)}}", map[string]string{"n": "+08"}, "toUInt8('8')"},
		{"int256", "%{{Int256(n)}}", map[string]string{"n": "-57896044618658097711785492504343953926634992332820282019728792003956564819968"}, "toInt256('-57896044618658097711785492504343953926634992332820282019728792003956564819968')"},
		{"Int bare", "%{{Int(n)}} {{Integer(m, 3)}}", map[string]string{"n": "-4"}, "-4 3"},
		{"float", "%{{Float32(f)}} {{Float64(g, 2)}}", map[string]string{"f": "1"}, "toFloat32('1.0') toFloat64('2.0')"},
		{"boolean", "%{{Boolean(a)}} {{Boolean(b)}} {{Boolean(c, True)}}", map[string]string{"a": "TRUE", "b": "0"}, "1 0 1"},
		{"date", "%{{Date(d)}}", map[string]string{"d": "2024-01-02"}, "toDate('2024-01-02')"},
		{"datetime", "%{{DateTime(d)}}", map[string]string{"d": "2024-01-02 03:04:05"}, "toDateTime('2024-01-02 03:04:05')"},
		{"datetime T", "%{{DateTime(d)}}", map[string]string{"d": "2024-01-02T03:04:05"}, "toDateTime('2024-01-02 03:04:05')"},
		{"datetime other form", "%{{DateTime(d)}}", map[string]string{"d": "02.01.2024 3:04:05"}, "parseDateTimeBestEffort('02.01.2024 3:04:05')"},
		{"datetime parsed by the query", "%parseDateTimeBestEffort({{ DateTime(d) }}) x", map[string]string{"d": "2024-01-02 03:04:05"}, "parseDateTimeBestEffort('2024-01-02 03:04:05') x"},
		{"datetime computed stays a string", "%{{ DateTime(d) + 'Z' }}", map[string]string{"d": "2024-01-02 03:04:05"}, "'2024-01-02 03:04:05Z'"},
		{"datetime prefix stays literal", "%{{DateTime(d)}}", map[string]string{"d": "2024-01-02 03:04:05' OR 1=1 --"}, `parseDateTimeBestEffort('2024-01-02 03:04:05\' OR 1=1 --')`},
		{"datetime64", "%{{DateTime64(d)}}", map[string]string{"d": "2024-01-02 03:04:05.123"}, "toDateTime64('2024-01-02 03:04:05.123', 3)"},
		{"job_timestamp implicit", "%{{DateTime(job_timestamp)}}", nil, "toDateTime('2024-05-27 11:00:00')"},
		{"job_timestamp overridden", "%{{DateTime(job_timestamp)}}", map[string]string{"job_timestamp": "2020-01-01 00:00:00"}, "toDateTime('2020-01-01 00:00:00')"},
		{"array strings", "%{{Array(s)}}", map[string]string{"s": "a,b'c"}, `['a','b\'c']`},
		{"array ints", "%{{Array(s, 'Int32')}}", map[string]string{"s": "1,2,3"}, "[1,2,3]"},
		{"array default", "%{{Array(s, 'Int8', default='1,2')}}", nil, "[1,2]"},
		{"array default positional", "%{{Array(s, 'String', 'x')}}", nil, "['x']"},
		{"if elif else", "%{% if a == '1' %}one{% elif a == '2' %}two{% else %}other{% end %}", map[string]string{"a": "2"}, "two"},
		{"if unset", "%{% if defined(a) %}A{% else %}B{% end %}", nil, "B"},
		{"unset is none", "%{% if a %}A{% else %}B{% end %}", nil, "B"},
		{"not in", "%{% if d not in ['x', 'y'] %}ok{% end %}", map[string]string{"d": "z"}, "ok"},
		{"for", "%{% for x in split_to_array(s) %}[{{x}}]{% end %}", map[string]string{"s": "a, b"}, "['a']['b']"},
		{"for enumerate_with_last", "%{% for last, c in enumerate_with_last(split_to_array(s)) %}{{symbol(c)}}{% if not last %},{% end %}{% end %}", map[string]string{"s": "a,b,c"}, "`a`,`b`,`c`"},
		{"set", "%{% set n = Int32(p, 1) * 2 + 1 %}{{n}}", map[string]string{"p": "4"}, "9"},
		{"arith typed", "%{{ (Int32(page, 0) + 1) * Int32(page_size, 10) }}", nil, "10"},
		{"comment", "%a{# hidden {{ x }} #}b", nil, "ab"},
		{"column", "%{{column(c, 'osname')}}", map[string]string{"c": "json.a"}, "`json`.`a`"},
		{"column default", "%{{column(c, 'osname')}}", nil, "`osname`"},
		{"column escapes", "%{{column(c)}}", map[string]string{"c": "a`b\"c"}, "`a\\`bc`"},
		{"columns fn", "%{{columns(c, 'a,b', fn='sum')}}", nil, "sum(`a`) as `a`,sum(`b`) as `b`"},
		{"symbol", "%{{symbol(s)}}", map[string]string{"s": "x y"}, "`x y`"},
		{"table", "%SELECT * FROM {{table(t)}}", map[string]string{"t": "events"}, "SELECT * FROM events"},
		{"sql_and", "%WHERE {{sql_and(a=String(a, defined=False), b__in=Array(b, 'Int32', defined=False), c__gt=Int32(c, 5))}}", map[string]string{"b": "1,2"}, "WHERE b in [1,2] and c > toInt32('5')"},
		{"day_diff", "%{{day_diff(a, b)}}", map[string]string{"a": "2019-01-02", "b": "2019-02-01"}, "30"},
		{"date_diff_in_hours", "%{{date_diff_in_hours(a, b)}}", map[string]string{"a": "2022-12-14 18:42:22", "b": "2022-12-19 18:42:22"}, "120"},
		{"date_diff backup", "%{{date_diff_in_days('2019-01-01', '2019/01/04', backup_date_format='%Y/%m/%d')}}", nil, "3"},
		{"sql_unescape", "%{{sql_unescape(String(x), '%')}}", map[string]string{"x": "abc%"}, "'abc%'"},
		{"max_threads", "%SELECT 1 {{max_threads(4)}}", nil, "SELECT 1 -- max_threads 4"},
		{"methods", "%{{ ','.join(x.split('-')) }} {{ x.replace('-', '_') }}", map[string]string{"x": "a-b"}, "'a,b' 'a_b'"},
		{"string methods", "%{% if x.startswith('ab') and not x.endswith('z') %}{{ x.upper() }} {{ x.lower() }} {{ '  p '.strip() }} {{ 'xxpxx'.strip('x') }}{% end %}", map[string]string{"x": "abC"}, "'ABC' 'abc' 'p' 'p'"},
		{"startswith tuple", "%{% if x.startswith(('q', 'a')) %}yes{% end %}{% if x.endswith(('q',)) %}no{% end %}", map[string]string{"x": "abc"}, "yes"},
		{"format", "%{{ '{}-{1}-{n}'.format(x, 'b', n=y) }}", map[string]string{"x": "a", "y": "c"}, "'a-b-c'"},
		{"format quotes its result", "%{{ 'v={}'.format(x) }}", map[string]string{"x": "' OR 1=1 --"}, `'v=\' OR 1=1 --'`},
		{"more methods", "%{{ x.capitalize() }} {{ x.title() }} {{ x.count('a') }} {{ x.find('b') }} {{ '7'.zfill(3) }} {{ ','.join(x.rsplit(' ', 1)) }}", map[string]string{"x": "abc abd"}, "'Abc abd' 'Abc Abd' 2 1 '007' 'abc,abd'"},
		{"checks", "%{% if x.isdigit() %}d{% end %}{% if x.isalpha() %}a{% end %}{% if x.isupper() %}u{% end %}", map[string]string{"x": "123"}, "d"},
		{"list and dict methods", "%{% set l = x.split(',') %}{{ l.index('b') }} {{ l.count('a') }} {% for k, v in JSON(j).items() %}{{k}}={{v}}{% end %} {{ len(JSON(j).keys()) }}", map[string]string{"x": "a,b,a", "j": `{"k":"v"}`}, "1 2 'k'='v' 1"},
		{"json get", "%{% set j = JSON(p) %}{{ j.get('a', 'none') }} {{ j['b'] }}", map[string]string{"p": `{"a":"x","b":2}`}, "'x' 2"},
		{"len min max", "%{{len(s)}} {{min(3, 1, 2)}} {{max([1, 5])}} {{int('7')}} {{float('1.5')}}", map[string]string{"s": "héllo"}, "5 1 5 7 1.5"},
		{"ternary", "%{{ 'a' if x == '1' else 'b' }}", map[string]string{"x": "1"}, "'a'"},
		{"chained comparison", "%{{ 1 < 2 < 3 }} {{ 3 < 2 < 4 }}", nil, "1 0"},
		{"string concat", "%{{ String(a) + '%' }}", map[string]string{"a": "x"}, `'x\%'`},
		{"escaped delimiter", "%{{! literal }}", nil, "{{ literal }}"},
		{"while break", "%{% set i = 0 %}{% while True %}{% set i = i + 1 %}{% if i > 3 %}{% break %}{% end %}{{i}}{% end %}", nil, "123"},
		{"defined false returns none in sql_and", "%{{sql_and(a=Int32(a, defined=False))}}x", nil, "x"},
		{"list literal", "%{{ ['a', 1, None] }}", nil, "['a',1,NULL]"},
		{"tuple literal", "%{{ ('a', 1) }}", nil, "('a', 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.src, tt.params, false)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCheckMode(t *testing.T) {
	tests := []struct{ src, want string }{
		{"%{{String(x)}}", "'__no_value__'"},
		{"%{{String(x, 'd')}}", "'d'"},
		{"%{{Int32(x)}} {{UInt8(y)}}", "toInt32('0') toUInt8('0')"},
		{"%{{Float64(x)}}", "toFloat64('0.0')"},
		{"%{{Date(x)}} {{DateTime(y)}} {{DateTime64(z)}}", "toDate('2019-01-01') toDateTime('2019-01-01 00:00:00') toDateTime64('2019-01-01 00:00:00.000', 3)"},
		{"%{{Array(x, 'Int32')}} {{Array(y)}} {{Array(z, 'String')}}", "[0,0] ['__no_value__0','__no_value__1'] ['__no_value__','__no_value__']"},
		{"%{{symbol(x)}} {{table(t)}} {{column(c, 'd')}}", "`placeholder` placeholder `d`"},
		{"%{{x}}", "'__no_value__'"},
		{"%{% if defined(x) %}A{% else %}B{% end %}", "B"},
		{"%{{error('boom')}}ok", "ok"},
		{"%{{day_diff(a, b)}} {{date_diff_in_hours(a, b)}}", "0 0"},
		{"%{{DateTime(job_timestamp)}}", "toDateTime('2024-05-27 11:00:00')"},
	}
	for _, tt := range tests {
		got, err := render(t, tt.src, nil, true)
		if err != nil {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got  %q\nwant %q", tt.src, got, tt.want)
		}
	}
	tpl, _ := Parse("%{{DateTime(job_timestamp)}}")
	got, err := tpl.Render(nil, RenderOptions{Check: true})
	if err != nil || got != "toDateTime('2019-01-01 00:00:00')" {
		t.Errorf("check without job timestamp = %q, %v", got, err)
	}
}

func TestMissingParameters(t *testing.T) {
	tpl, err := Parse("%\nSELECT {{String(b)}}, {{Int32(a, required=True)}}, {{DateTime(c)}}\n{% if defined(d) %}{{String(d)}}{% end %} {{ e }} {{String(b)}}")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpl.Render(map[string]string{"c": "2024-01-01 00:00:00"}, RenderOptions{})
	var me *MissingParametersError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T)", err, err)
	}
	if !reflect.DeepEqual(me.Names, []string{"a", "b", "e"}) {
		t.Errorf("names = %v", me.Names)
	}
	if !strings.Contains(me.Error(), `"a", "b", "e"`) {
		t.Errorf("message = %s", me.Error())
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name, src string
		params    map[string]string
		line, col int
		contains  string
	}{
		{"bad int", "%\nSELECT\n  {{Int8(n)}}", map[string]string{"n": "300"}, 3, 5, "error validating '300' to type Int8"},
		{"not an int", "%{{UInt8(n)}}", map[string]string{"n": "-1"}, 1, 4, "UInt8"},
		{"bad date", "%{{Date(d)}}", map[string]string{"d": "2024-1-1"}, 1, 4, "Date"},
		{"bad datetime", "%{{DateTime(d)}}", map[string]string{"d": "yesterday"}, 1, 4, "DateTime"},
		{"bad float", "%{{Float32(d)}}", map[string]string{"d": "1_000"}, 1, 4, "Float32"},
		{"bad array element", "%{{Array(a, 'Int32')}}", map[string]string{"a": "1,x"}, 1, 4, "a[1]"},
		{"null expression", "%{{ String(a, defined=False) }}", nil, 1, 5, "evaluated to null"},
		{"user error", "%\n{{ error('nope', 403) }}", nil, 2, 4, "nope"},
		{"method on str", "%{{ x.get('a') }}", map[string]string{"x": "s"}, 1, 7, "no method get"},
		{"format field attribute", "%{{ '{0.__class__}'.format(x) }}", map[string]string{"x": "s"}, 1, 21, "only plain fields"},
		{"format spec", "%{{ '{:>99999999}'.format(x) }}", map[string]string{"x": "s"}, 1, 20, "only plain fields"},
		{"zfill huge", "%{{ x.zfill(999999999) }}", map[string]string{"x": "s"}, 1, 7, "too large"},
		{"compare mixed", "%{{ 1 < 'a' }}", nil, 1, 9, "not supported"},
		{"table injection", "%{{ table(t) }}", map[string]string{"t": "x; DROP TABLE y"}, 1, 5, "table()"},
		{"index out of range", "%{{ [1][3] }}", nil, 1, 8, "out of range"},
		{"bad boolean", "%{{ Boolean(b) }}", map[string]string{"b": "yes"}, 1, 5, "Boolean"},
		{"sql_unescape quote", "%{{ sql_unescape(String(x), \"'\") }}", map[string]string{"x": "a"}, 1, 5, "one character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, tt.src, tt.params, false)
			if err == nil {
				t.Fatal("expected an error")
			}
			var line, col int
			var te *Error
			var ue *UserError
			switch {
			case errors.As(err, &te):
				line, col = te.Line, te.Column
			case errors.As(err, &ue):
				line, col = ue.Line, ue.Column
			default:
				t.Fatalf("error %T: %v", err, err)
			}
			if line != tt.line || col != tt.col || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("got %d:%d %v, want %d:%d containing %q", line, col, err, tt.line, tt.col, tt.contains)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src       string
		line, col int
		contains  string
	}{
		{"%\n{% if a %}x", 2, 1, "missing {% end %}"},
		{"%{% end %}", 1, 5, "outside of a block"},
		{"%{% import os %}", 1, 5, "forbidden"},
		{"%{% include 'x' %}", 1, 5, "forbidden"},
		{"%{% extends 'x' %}", 1, 5, "forbidden"},
		{"%{% raw x %}", 1, 5, "forbidden"},
		{"%{{ open('x') }}", 1, 5, "not allowed"},
		{"%{{ __import__('os') }}", 1, 5, "not allowed"},
		{"%{{ x.__class__ }}", 1, 7, "not allowed"},
		{"%{{ x.encode() }}", 1, 7, "not allowed"},
		{"%{{ x.__class__() }}", 1, 7, "not allowed"},
		{"%{{ 4 / 2 }}", 1, 7, "division"},
		{"%{{ 2 ** 8 }}", 1, 7, "power"},
		{"%{{ 5 % 2 }}", 1, 7, "modulo"},
		{"%{{ +1 }}", 1, 5, "unary +"},
		{"%{{ lambda: 1 }}", 1, 5, "lambda"},
		{"%{{ [x for x in y] }}", 1, 8, "comprehensions"},
		{"%{{ f'{x}' }}", 1, 5, "prefix"},
		{"%{{ 'abc }}", 1, 5, "unterminated"},
		{"%{{ }}", 1, 2, "empty"},
		{"%{{ a", 1, 2, "missing"},
		{"%{% frobnicate %}", 1, 5, "unknown template statement"},
		{"%{% set q = 1 %}", 1, 5, "cannot be assigned"},
		{"%{{ format }}", 1, 5, "reserved"},
		{"%\n\n  {{ String(a, ) ) }}", 3, 18, "unexpected"},
		{"%{% for x %}{% end %}", 1, 9, "for name in"},
		{"%{% if a %}{% else %}{% elif b %}{% end %}", 1, 25, "inside"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%q: err = %v (%T)", tt.src, err, err)
			continue
		}
		if te.Line != tt.line || te.Column != tt.col || !strings.Contains(te.Msg, tt.contains) {
			t.Errorf("%q: got %v, want %d:%d containing %q", tt.src, err, tt.line, tt.col, tt.contains)
		}
	}
}

func TestParameters(t *testing.T) {
	tpl, err := Parse(`%
{% set local = 1 %}
SELECT {{ Date(date_from, description="Start", required=False) }},
  {{ Int32(limit, 50) }}, {{ Array(ids, 'UInt64', default='1,2', required=True) }},
  {{ String(country, 'US', description="c") }}, {{ DateTime(job_timestamp) }}
{% if defined(tenant) and local %}{{ tenant }}{% end %}
{% for x in split_to_array(String(tags, '')) %}{{x}}{% end %}`)
	if err != nil {
		t.Fatal(err)
	}
	got := tpl.Parameters()
	want := []Parameter{
		{Name: "date_from", Type: "Date", Description: "Start", Line: 3, Column: 16},
		{Name: "limit", Type: "Int32", Default: "50", HasDefault: true, Line: 4, Column: 12},
		{Name: "ids", Type: "Array", ElementType: "UInt64", Default: "1,2", HasDefault: true, Required: true, Line: 4, Column: 36},
		{Name: "country", Type: "String", Default: "US", HasDefault: true, Description: "c", Line: 5, Column: 13},
		{Name: "job_timestamp", Type: "DateTime", Implicit: true, Line: 5, Column: 61},
		{Name: "tenant", Line: 6, Column: 15},
		{Name: "tags", Type: "String", HasDefault: true, Line: 7, Column: 35},
	}
	if !reflect.DeepEqual(got, want) {
		for i := range got {
			t.Logf("%+v", got[i])
		}
		t.Errorf("parameters mismatch")
	}
}

func TestExecuteSideInfo(t *testing.T) {
	tpl, err := Parse("%SELECT * FROM {{ TABLE('events') }} {{ max_threads(2) }}{{ cache_ttl('5m') }}{{ tb_secret('key') }}")
	if err != nil {
		t.Fatal(err)
	}
	res, err := tpl.Execute(nil, RenderOptions{Secrets: map[string]bool{"key": true}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Tables, []string{"events"}) || res.Settings["max_threads"] != "2" || res.Settings["cache_ttl"] != "5m" || !strings.HasSuffix(res.SQL, "{key: String}") {
		t.Errorf("result = %+v", res)
	}
	if _, err := tpl.Execute(nil, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Errorf("secret without access: %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	tpl, _ := Parse("%{% for k in split_to_array(s) %}{{k}}{% end %}{{ JSON(j) }}")
	p := map[string]string{"s": "a,b,c", "j": `{"z":1,"a":2,"m":3}`}
	first, err := tpl.Render(p, RenderOptions{JobTimestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		got, _ := tpl.Render(p, RenderOptions{JobTimestamp: ts})
		if got != first {
			t.Fatalf("render is not deterministic: %q vs %q", got, first)
		}
	}
}

func TestLimits(t *testing.T) {
	for _, src := range []string{
		"%{% while True %}x{% end %}",
		"%{{ 'x' * 100000000 }}",
		"%{% set a = 2 %}{% while True %}{% set a = a * a %}{% end %}",
		"%{{ [1] * 100000000 }}",
	} {
		_, err := render(t, src, nil, false)
		if err == nil {
			t.Errorf("%s: expected a limit error", src)
		}
	}
	deep := "%{{ " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000) + " }}"
	if _, err := Parse(deep); err == nil {
		t.Errorf("deep nesting: expected an error")
	}
}
