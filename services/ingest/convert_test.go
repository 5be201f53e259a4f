package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

func TestJSONPaths(t *testing.T) {
	doc := `{"a":{"b":{"c":1}},"list":[1,2,3],"items":[{"id":1},{"x":2},{"id":3}],"odd key":"v","n":null}`
	for _, tc := range []struct{ path, want string }{
		{"$.a.b.c", "1"},
		{"$.a.b", `{"c":1}`},
		{"$.list[:]", "[1,2,3]"},
		{"$.list[1]", "2"},
		{"$.list[-1]", "3"},
		{"$.items[:].id", "[1,3]"},
		{"$['odd key']", `"v"`},
		{`$["odd key"]`, `"v"`},
		{"$.missing", "<nil>"},
		{"$.a.missing.deeper", "<nil>"},
		{"$.list[9]", "<nil>"},
		{"$.n", "null"},
		{"$", doc},
	} {
		jp, err := parseJSONPath(tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		var a fastjson.Arena
		v := jp.eval(fastjson.MustParse(doc), &a)
		got := "<nil>"
		if v != nil {
			got = v.String()
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.path, got, tc.want)
		}
	}
	for _, bad := range []string{"a.b", "$.", "$[", "$['x'", "$[x]", "$.a]"} {
		if _, err := parseJSONPath(bad); err == nil {
			t.Errorf("%q parsed; want an error", bad)
		}
	}
}

func TestConvertValues(t *testing.T) {
	for _, tc := range []struct {
		typ, in, want, err string
	}{
		{"UInt8", "255", "255", ""},
		{"UInt8", "256", "", "value '256' on column 'c' is not UInt8"},
		{"UInt8", "-1", "", "is not UInt8"},
		{"Int32", `"-12"`, "-12", ""},
		{"Int32", "1.5", "", "is not Int32"},
		{"Int64", "3.0", "3", ""},
		{"Int64", "true", "1", ""},
		{"UInt64", "18446744073709551615", "18446744073709551615", ""},
		{"Float64", `"1e3"`, "1000", ""},
		{"Float32", `"11,57"`, "", "value '11,57' on column 'c' is not Float32"},
		{"Decimal(10, 2)", "12.34", `"12.34"`, ""},
		{"Decimal(10, 2)", `"1e5"`, "", "is not Decimal(10, 2)"},
		{"String", `"a\"b\\c\n"`, `"a\"b\\c\n"`, ""},
		{"String", `{"x":[1,2]}`, `"{\"x\":[1,2]}"`, ""},
		{"String", "12", `"12"`, ""},
		{"LowCardinality(String)", `"x"`, `"x"`, ""},
		{"FixedString(2)", `"abc"`, "", "is not FixedString(2)"},
		{"Enum8('a' = 1, 'b' = 2)", `"b"`, `"b"`, ""},
		{"Enum8('a' = 1, 'b' = 2)", `"c"`, "", "is not Enum8"},
		{"Bool", `"TRUE"`, "true", ""},
		{"Date", `"2024-02-29"`, `"2024-02-29"`, ""},
		{"Date", `"2024-02-30"`, "", "is not Date"},
		{"DateTime", `"2024-01-02 03:04:05"`, "1704164645", ""},
		{"DateTime", `"2024-01-02T04:04:05+01:00"`, "1704164645", ""},
		{"DateTime", "1704164645", "1704164645", ""},
		{"DateTime", `"yesterday"`, "", "value 'yesterday' on column 'c' is not DateTime"},
		{"DateTime64(3)", `"2024-01-02 03:04:05.123"`, `"2024-01-02T03:04:05.123Z"`, ""},
		{"UUID", `"123e4567-e89b-12d3-a456-426614174000"`, `"123e4567-e89b-12d3-a456-426614174000"`, ""},
		{"UUID", `"123"`, "", "is not UUID"},
		{"Array(UInt8)", "[1,2]", "[1,2]", ""},
		{"Array(UInt8)", "[1,300]", "", "is not UInt8"},
		{"Array(String)", `"[\"a\"]"`, `["a"]`, ""},
		{"Map(String, UInt8)", `{"k":1}`, `{"k":1}`, ""},
		{"Tuple(a String, b UInt8)", `["x",1]`, `["x",1]`, ""},
		{"Nullable(Int8)", "null", "null", ""},
		{"Int8", "null", "", "is not Int8 (the column is not Nullable)"},
	} {
		var p fastjson.Parser
		v, err := p.Parse(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		out, verr := appendJSON(nil, v, parseType(tc.typ), "c")
		switch {
		case tc.err != "" && (verr == nil || !strings.Contains(verr.Error(), tc.err)):
			t.Errorf("%s %s: got %s, %v; want error %q", tc.typ, tc.in, out, verr, tc.err)
		case tc.err == "" && verr != nil:
			t.Errorf("%s %s: %v", tc.typ, tc.in, verr)
		case tc.err == "" && string(out) != tc.want:
			t.Errorf("%s %s = %s, want %s", tc.typ, tc.in, out, tc.want)
		}
	}
}

// TestStringsRoundTrip checks that any string, hostile or not, comes out as valid JSON holding
// the same text (invalid UTF-8 aside, which becomes U+FFFD).
func TestStringsRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `'); DROP TABLE x; --`, "tab\tnew\nline\r\x00\x1f", `\"\\`, "日本語 🙂", strings.Repeat("x", 70000)} {
		out := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != s {
			t.Errorf("%q: encoded %s, decoded %q, %v", s, out, back, err)
		}
	}
	var back string
	if err := json.Unmarshal(appendJSONString(nil, "a\xffb"), &back); err != nil || back != "a\ufffdb" {
		t.Errorf("invalid UTF-8: %q %v", back, err)
	}
}

func testSchema(t *testing.T, cols ...string) *schema {
	t.Helper()
	sc := &schema{datasource: "ds", byName: map[string]int{}}
	for _, c := range cols {
		name, typ, _ := strings.Cut(c, " ")
		jp, err := parseJSONPath("$['" + name + "']")
		if err != nil {
			t.Fatal(err)
		}
		def := strings.HasSuffix(typ, " DEFAULT")
		typ = strings.TrimSuffix(typ, " DEFAULT")
		sc.byName[name] = len(sc.columns)
		sc.columns = append(sc.columns, column{name: name, typ: parseType(typ), path: jp, hasDefault: def})
	}
	return sc
}

func TestConvertInput(t *testing.T) {
	sc := testSchema(t, "id UInt32", "name String", "score Float64 DEFAULT", "tags Array(String)", "note Nullable(String)")
	for _, tc := range []struct {
		name    string
		format  ingestv1.Format
		header  ingestv1.CSVHeader
		in      string
		rows    string
		q       int
		errLine int
	}{
		{"ndjson", ingestv1.Format_FORMAT_NDJSON, 0, `{"id":1,"name":"a","tags":["x"]}` + "\n\n" + `{"id":"2","name":"b","score":1.5,"note":"n"}`,
			"[1,\"a\",null,[\"x\"],null]\n[2,\"b\",1.5,[],\"n\"]\n", 0, 0},
		{"ndjson bad row", ingestv1.Format_FORMAT_NDJSON, 0, `{"id":-1,"name":"a"}` + "\n" + `{"id":3}`, "", 2, 0},
		{"ndjson malformed", ingestv1.Format_FORMAT_NDJSON, 0, `{"id":1}` + "\n" + `{"id":` + "\n", "", 0, 2},
		{"ndjson not an object", ingestv1.Format_FORMAT_NDJSON, 0, `[1,2]`, "", 0, 1},
		{"csv header", ingestv1.Format_FORMAT_CSV, ingestv1.CSVHeader_CSV_HEADER_AUTO, "name,id\nz,7\n", "[7,\"z\",null,[],null]\n", 0, 0},
		{"csv no header", ingestv1.Format_FORMAT_CSV, ingestv1.CSVHeader_CSV_HEADER_AUTO, "7,z,,\"[\"\"t\"\"]\",\n", "[7,\"z\",null,[\"t\"],null]\n", 0, 0},
		{"csv empty number", ingestv1.Format_FORMAT_CSV, 0, ",z,1,,\n", "", 1, 0},
		{"csv wrong field count", ingestv1.Format_FORMAT_CSV, 0, "1,a,1,,\n2,b\n", "", 0, 2},
		{"csv unknown header", ingestv1.Format_FORMAT_CSV, ingestv1.CSVHeader_CSV_HEADER_PRESENT, "id,nope\n", "", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := newEncoder(sc, "imp")
			defer enc.release()
			var rows string
			q := 0
			err := convertInput(strings.NewReader(tc.in), tc.format, tc.header, enc, 1<<20, func(e *encoded) error {
				rows += string(e.data)
				q += int(e.quarantined)
				return nil
			})
			if tc.errLine > 0 {
				var fe *formatError
				if !errors.As(err, &fe) || fe.line != tc.errLine {
					t.Fatalf("error %v; want a format error on line %d", err, tc.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows != tc.rows || q != tc.q {
				t.Errorf("rows %q, %d quarantined; want %q, %d", rows, q, tc.rows, tc.q)
			}
		})
	}
}

// TestBatchesAreDeterministic checks what exactly-once rests on: the same messages give the
// same inserts, and a batch never ends inside a request that is still being published.
func TestBatchesAreDeterministic(t *testing.T) {
	now := time.Now()
	msg := func(seq uint64, req string, part, parts int, ds string) *inMsg {
		return &inMsg{seq: seq, ws: "w", ds: ds, db: "db", req: req, part: part, parts: parts, at: now, columns: `["a"]`,
			data: []byte(`["` + req + `"]` + "\n"), rows: 1}
	}
	msgs := []*inMsg{msg(1, "r1", 1, 1, "x"), msg(2, "r2", 1, 2, "y"), msg(3, "r3", 1, 1, "x"), msg(4, "r2", 2, 2, "y"), msg(5, "r4", 1, 2, "x")}
	s := &Service{cfg: Config{AbandonAfter: time.Minute}}
	if cut := s.cutPoint(msgs, now); cut != 4 {
		t.Errorf("cut point %d, want 4 (before r4, whose second part has not arrived)", cut)
	}
	if cut := s.cutPoint(msgs, now.Add(2*time.Minute)); cut != 5 {
		t.Errorf("cut point after abandon-after: %d, want 5", cut)
	}
	a, completeA := groupBatch(msgs)
	b, _ := groupBatch(msgs)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("targets %d and %d, want 2", len(a), len(b))
	}
	for i := range a {
		if a[i].table != b[i].table || string(a[i].data) != string(b[i].data) {
			t.Errorf("target %d differs between two groupings", i)
		}
	}
	if string(a[0].data) != "[\"r1\"]\n[\"r3\"]\n" || string(a[1].data) != "[\"r2\"]\n[\"r2\"]\n" {
		t.Errorf("grouped data %q / %q", a[0].data, a[1].data)
	}
	if completeA["r4"] {
		t.Error("r4 (one part of two) counted complete")
	}
}
