package warehouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, ident, str string }{
		{"plain", "`plain`", "'plain'"},
		{"a`b", "`a\\`b`", "'a`b'"},
		{`it's \ x`, "`it's \\\\ x`", `'it\'s \\ x'`},
		{"nl\n", "`nl\n`", `'nl\n'`},
	} {
		if got := QuoteIdent(c.in); got != c.ident {
			t.Errorf("QuoteIdent(%q) = %s, want %s", c.in, got, c.ident)
		}
		if got := QuoteString(c.in); got != c.str {
			t.Errorf("QuoteString(%q) = %s, want %s", c.in, got, c.str)
		}
	}
	if got := QualifiedName("ws", "t"); got != "`ws`.`t`" {
		t.Errorf("QualifiedName = %s", got)
	}
}

func TestParseMessageError(t *testing.T) {
	for _, c := range []struct {
		msg   string
		code  int32
		name  string
		class Class
	}{
		{"Code: 241. DB::Exception: Query memory limit exceeded: would use 12.13 MiB (attempt to allocate chunk of 4.03 MiB), maximum: 9.54 MiB. (MEMORY_LIMIT_EXCEEDED)", 241, "MEMORY_LIMIT_EXCEEDED", ClassMemoryLimit},
		{"Code: 159. DB::Exception: Timeout exceeded: elapsed 1000.191 ms, maximum: 1000 ms. (TIMEOUT_EXCEEDED)", 159, "TIMEOUT_EXCEEDED", ClassTimeout},
		{"Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope SELECT 1 FROM nope. (UNKNOWN_TABLE)", 60, "UNKNOWN_TABLE", ClassPermanent},
		{"Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)", 252, "TOO_MANY_PARTS", ClassRetryable},
		{"Code: 394. DB::Exception: Query was cancelled. (QUERY_WAS_CANCELLED)", 394, "QUERY_WAS_CANCELLED", ClassCancelled},
		{"Code: 9999. DB::Exception: new. (SOMETHING_NEW)", 9999, "SOMETHING_NEW", ClassUnknown},
		{"no code at all", 0, "", ClassUnknown},
	} {
		e := parseMessageError(c.msg, "q1")
		if e.Code != c.code || e.Name != c.name || e.Class != c.class || e.Message != c.msg || e.QueryID != "q1" {
			t.Errorf("parse %q = %+v", c.msg, e)
		}
	}
}

func TestClassOfCauses(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Class
	}{
		{context.Canceled, ClassCancelled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTimeout},
		{io.EOF, ClassRetryable},
		{syscall.ECONNREFUSED, ClassRetryable},
		{errors.New("odd"), ClassUnknown},
		{&Error{Code: 62, Class: ClassPermanent}, ClassPermanent},
		{fmt.Errorf("wrapped: %w", &Error{Code: 241, Class: ClassMemoryLimit}), ClassMemoryLimit},
	} {
		if got := ClassOf(c.err); got != c.want {
			t.Errorf("ClassOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if CodeOf(fmt.Errorf("w: %w", &Error{Code: 241})) != 241 {
		t.Error("CodeOf through wrapping")
	}
}

func TestEffectiveSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	if got := effectiveSettings(ctx, nil)["max_execution_time"]; got != int64(3) {
		t.Errorf("derived max_execution_time = %v, want 3 (rounded up)", got)
	}
	if got := effectiveSettings(ctx, Settings{"max_execution_time": 100})["max_execution_time"]; got != 100 {
		t.Errorf("caller's max_execution_time overridden: %v", got)
	}
	if got := effectiveSettings(context.Background(), nil); len(got) != 0 {
		t.Errorf("settings without a deadline: %v", got)
	}
}

func TestSetStatements(t *testing.T) {
	set, reset, err := setStatements(Settings{"max_threads": 2, "insert_deduplication_token": "a'b", "date_time_output_format": "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `SET date_time_output_format = 'simple', insert_deduplication_token = 'a\'b', max_threads = 2`; set != want {
		t.Errorf("set = %s", set)
	}
	if want := `SET date_time_output_format = 'iso', insert_deduplication_token = DEFAULT, max_threads = DEFAULT`; reset != want {
		t.Errorf("reset = %s", reset)
	}
	if _, _, err := setStatements(Settings{"x; DROP": 1}); err == nil {
		t.Error("accepted an injected setting name")
	}
}

func TestParseType(t *testing.T) {
	for _, c := range []struct {
		in   string
		want chType
	}{
		{"LowCardinality(Nullable(String))", chType{base: "String"}},
		{"Array(Nullable(Int32))", chType{base: "Array", args: []string{"Nullable(Int32)"}}},
		{"Map(String, Array(UInt8))", chType{base: "Map", args: []string{"String", "Array(UInt8)"}}},
		{"DateTime64(3, 'Europe/Paris, x')", chType{base: "DateTime64", args: []string{"3", "'Europe/Paris, x'"}}},
	} {
		if got := parseType(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseType(%s) = %+v", c.in, got)
		}
	}
}

func TestConvertTo(t *testing.T) {
	for _, c := range []struct {
		in   any
		to   reflect.Type
		want any
		bad  bool
	}{
		{int64(5), reflect.TypeFor[int32](), int32(5), false},
		{300, reflect.TypeFor[uint8](), nil, true},
		{-1, reflect.TypeFor[uint64](), nil, true},
		{int64(7), reflect.TypeFor[*int32](), ptr(int32(7)), false},
		{[]any{int64(1), int64(2)}, reflect.TypeFor[[]uint16](), []uint16{1, 2}, false},
		{[]byte("x"), reflect.TypeFor[string](), "x", false},
		{3, reflect.TypeFor[float64](), float64(3), false},
	} {
		got, err := convertTo(c.in, c.to)
		if c.bad {
			if err == nil {
				t.Errorf("convertTo(%v, %s) = %v, want an error", c.in, c.to, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("convertTo(%v, %s) = %#v, %v; want %#v", c.in, c.to, got, err, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestAppendJSONString(t *testing.T) {
	got := string(appendJSONString(nil, "a\"b\\c\nd\x01é"))
	if want := `"a\"b\\c\nd\u0001é"`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCheckInsertTable(t *testing.T) {
	for _, ok := range []string{"t", "db.t", "`db`.`t`", QualifiedName("we`ird", "t\\x"), "`a.b`"} {
		if err := checkInsert(ok, []string{"n"}); err != nil {
			t.Errorf("refused %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "t; DROP TABLE x", "file('/etc/passwd')", "`unterminated", "a.b.c", "`a` `b`"} {
		if err := checkInsert(bad, []string{"n"}); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
