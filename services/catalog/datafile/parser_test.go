package datafile

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

func mustParseDS(t *testing.T, src string, opts Options) *DataSource {
	t.Helper()
	ds, err := ParseDataSource("x/events.datasource", []byte(src), opts)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return ds
}

func mustParsePipe(t *testing.T, src string, opts Options) *Pipe {
	t.Helper()
	p, err := ParsePipe("x/p.pipe", []byte(src), opts)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func TestColumns(t *testing.T) {
	tests := []struct {
		line string
		want Column
	}{
		{"`a` String", Column{Name: "a", Type: "String"}},
		{"a String,", Column{Name: "a", Type: "String"}},
		{"`Options.Names` Array(String)", Column{Name: "Options.Names", Type: "Array(String)"}},
		{"`m` Array(Map(String, String)) `json:$.messages[:]` DEFAULT []", Column{Name: "m", Type: "Array(Map(String, String))", JSONPath: "$.messages[:]", DefaultKind: "DEFAULT", DefaultExpr: "[]"}},
		{"`cost` Float32 `json:$.cost` DEFAULT 0", Column{Name: "cost", Type: "Float32", JSONPath: "$.cost", DefaultKind: "DEFAULT", DefaultExpr: "0"}},
		{"`s` Nullable(String) `json:$.s`", Column{Name: "s", Type: "String", Nullable: true, JSONPath: "$.s"}},
		{"`s` Nullable(String) DEFAULT NULL", Column{Name: "s", Type: "String", Nullable: true}},
		{"`s` String NULL", Column{Name: "s", Type: "String", Nullable: true}},
		{"`s` String NOT NULL", Column{Name: "s", Type: "String", NotNull: true}},
		{"`h` AggregateFunction(uniq, String)", Column{Name: "h", Type: "AggregateFunction(uniq, String)"}},
		{"`h` SimpleAggregateFunction(sum, Int32)", Column{Name: "h", Type: "SimpleAggregateFunction(sum, Int32)"}},
		{"`t` DateTime64(3) `json:$.t` DEFAULT now64()", Column{Name: "t", Type: "DateTime64(3)", JSONPath: "$.t", DefaultKind: "DEFAULT", DefaultExpr: "now64()"}},
		{"`u` String MATERIALIZED upper(s) CODEC(ZSTD(1))", Column{Name: "u", Type: "String", DefaultKind: "MATERIALIZED", DefaultExpr: "upper(s)", Codec: "ZSTD(1)"}},
		{"`u` String CODEC(LZ4) DEFAULT 'x'", Column{Name: "u", Type: "String", DefaultKind: "DEFAULT", DefaultExpr: "'x'", Codec: "LZ4"}},
		{"`a` ALIAS b + 1", Column{Name: "a", DefaultKind: "ALIAS", DefaultExpr: "b + 1"}},
		{"`d` DEFAULT now()", Column{Name: "d", DefaultKind: "DEFAULT", DefaultExpr: "now()"}},
		{"`p` String `json:$.a--2`", Column{Name: "p", Type: "String", JSONPath: "$.a--2"}},
		{"`x` String DEFAULT 'a,b' -- comment, with comma", Column{Name: "x", Type: "String", DefaultKind: "DEFAULT", DefaultExpr: "'a,b'"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			ds := mustParseDS(t, "SCHEMA >\n    "+tt.line+"\n", Options{})
			if len(ds.Columns) != 1 {
				t.Fatalf("got %d columns: %+v", len(ds.Columns), ds.Columns)
			}
			got := ds.Columns[0]
			if got.Pos.Line != 2 || got.Pos.Column != 5 {
				t.Errorf("pos = %v, want line 2 col 5", got.Pos)
			}
			got.Pos = Pos{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSchemaCommentsAndTrailingComma(t *testing.T) {
	ds := mustParseDS(t, `SCHEMA >
    -- leading comment
    `+"`a`"+` String, -- first
    # hash comment line
    `+"`b`"+` Int8,
    INDEX idx b TYPE minmax GRANULARITY 1,
`, Options{})
	if len(ds.Columns) != 2 || ds.Columns[1].Name != "b" || ds.Columns[1].Pos.Line != 5 {
		t.Fatalf("columns = %+v", ds.Columns)
	}
}

func TestDataSourceKeys(t *testing.T) {
	src := `VERSION 3
DESCRIPTION >
    Events
    landing table
TOKEN "tracker" APPEND
TOKEN reader READ
TAGS "backfill_column=timestamp, Analytics, team=core"
SHARED_WITH >
    ws_a
    ws_b
SCHEMA >
    ` + "`timestamp`" + ` DateTime,
    ` + "`v`" + ` UInt64
INDICES >
    INDEX idx v TYPE set(100) GRANULARITY 4,
engine "replacingmergetree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
sorting_key "timestamp"
ENGINE_VER v
ENGINE_IS_DELETED deleted
PRIMARY_KEY timestamp
ENGINE_TTL timestamp + INTERVAL 1 DAY
ENGINE_SETTINGS "index_granularity = 8192, min_bytes_for_wide_part = 0"
KAFKA_TOPIC 'topic'
IMPORT_SERVICE bigquery
FORWARD_QUERY >
    SELECT timestamp, v
`
	ds := mustParseDS(t, src, Options{})
	if ds.Name != "events__v3" || ds.BaseName != "events" || *ds.Version != 3 {
		t.Errorf("name = %s %s", ds.Name, ds.BaseName)
	}
	if ds.Description != "Events\nlanding table" {
		t.Errorf("description = %q", ds.Description)
	}
	if len(ds.Tokens) != 2 || ds.Tokens[0] != (Token{Name: "tracker", Permission: "APPEND", Pos: Pos{File: "x/events.datasource", Line: 5, Column: 1}}) || ds.Tokens[1].Name != "reader" {
		t.Errorf("tokens = %+v", ds.Tokens)
	}
	if ds.Tags.Operational["backfill_column"] != "timestamp" || ds.Tags.Operational["team"] != "core" || !reflect.DeepEqual(ds.Tags.Filtering, []string{"Analytics"}) {
		t.Errorf("tags = %+v", ds.Tags)
	}
	if !reflect.DeepEqual(ds.SharedWith, []string{"ws_a", "ws_b"}) {
		t.Errorf("shared = %v", ds.SharedWith)
	}
	if len(ds.Indexes) != 1 || ds.Indexes[0] != (Index{Name: "idx", Expr: "v", Type: "set(100)", Granularity: "4", Pos: Pos{File: "x/events.datasource", Line: 15, Column: 5}}) {
		t.Errorf("indexes = %+v", ds.Indexes)
	}
	if ds.ForwardQuery != "SELECT timestamp, v" {
		t.Errorf("forward = %q", ds.ForwardQuery)
	}
	if len(ds.OutOfScope) != 2 || ds.OutOfScope[0].Feature != "kafka" || ds.OutOfScope[1].Feature != "import" || ds.OutOfScope[1].Pos.Line != 25 {
		t.Errorf("out of scope = %+v", ds.OutOfScope)
	}
	want := "CREATE TABLE `db`.`events__v3`\n(\n    `timestamp` DateTime,\n    `v` UInt64,\n    INDEX `idx` v TYPE set(100) GRANULARITY 4\n)\n" +
		"ENGINE = ReplacingMergeTree(`v`, `deleted`)\nPARTITION BY (toYYYYMM(timestamp))\nORDER BY (timestamp)\nPRIMARY KEY (timestamp)\n" +
		"TTL timestamp + INTERVAL 1 DAY\nSETTINGS index_granularity = 8192, min_bytes_for_wide_part = 0"
	if got := ds.DDL("`db`.`events__v3`"); got != want {
		t.Errorf("DDL:\n%s\nwant:\n%s", got, want)
	}
}

func TestEngineClause(t *testing.T) {
	tests := []struct {
		eng  Engine
		want string
	}{
		{Engine{}, "ENGINE = MergeTree()\nORDER BY tuple()"},
		{Engine{Name: "MergeTree", SortingKey: "tuple()", PartitionKey: "tuple()"}, "ENGINE = MergeTree()\nPARTITION BY tuple()\nORDER BY tuple()"},
		{Engine{Name: "SummingMergeTree", SortingKey: "a", Columns: []string{"b", "c"}}, "ENGINE = SummingMergeTree((`b`, `c`))\nORDER BY (a)"},
		{Engine{Name: "AggregatingMergeTree", SortingKey: "a, b", SamplingKey: "b"}, "ENGINE = AggregatingMergeTree()\nORDER BY (a, b)\nSAMPLE BY (b)"},
		{Engine{Name: "CollapsingMergeTree", SortingKey: "a", Sign: "sign"}, "ENGINE = CollapsingMergeTree(`sign`)\nORDER BY (a)"},
		{Engine{Name: "VersionedCollapsingMergeTree", Sign: "s", Version: "v"}, "ENGINE = VersionedCollapsingMergeTree(`s`, `v`)\nORDER BY tuple()"},
		{Engine{Name: "Join", JoinStrictness: "ANY", JoinType: "LEFT", KeyColumns: []string{"id"}}, "ENGINE = Join(ANY, LEFT, `id`)"},
		{Engine{Name: "Null"}, "ENGINE = Null()"},
		{Engine{Name: "ReplacingMergeTree", SortingKey: "id"}, "ENGINE = ReplacingMergeTree()\nORDER BY (id)"},
	}
	for _, tt := range tests {
		if got := tt.eng.Clause(); got != tt.want {
			t.Errorf("%+v:\n got %q\nwant %q", tt.eng, got, tt.want)
		}
	}
}

func TestPipe(t *testing.T) {
	src := `DESCRIPTION pipe level
TOKEN "dashboard" READ
TAGS "a, b"

NODE first
DESCRIPTION >
    First node
SQL >

    SELECT a,
           b
    FROM events

NODE copy_it
SQL >
    %
    SELECT * FROM first WHERE d > {{ DateTime(job_timestamp) }}
TYPE COPY
TARGET_DATASOURCE target
COPY_SCHEDULE 45 */2 * * MON-FRI
MODE replace
TAGS "backfill_value=2024-01-01 00:00:00"
`
	p := mustParsePipe(t, src, Options{})
	if p.Description != "pipe level" || len(p.Tokens) != 1 || !reflect.DeepEqual(p.Tags.Filtering, []string{"a", "b"}) {
		t.Errorf("pipe = %+v", p)
	}
	if len(p.Nodes) != 2 {
		t.Fatalf("nodes = %d", len(p.Nodes))
	}
	n0, n1 := p.Nodes[0], p.Nodes[1]
	if n0.Name != "first" || n0.Description != "First node" || n0.SQL != "SELECT a,\n       b\nFROM events" || n0.Type != NodeStandard || n0.TypeSet {
		t.Errorf("node 0 = %+v", n0)
	}
	if n0.Pos != (Pos{File: "x/p.pipe", Line: 5, Column: 1}) || n0.SQLPos.Line != 10 || !reflect.DeepEqual(n0.SQLLines, []int{10, 11, 12}) {
		t.Errorf("node 0 positions = %v %v %v", n0.Pos, n0.SQLPos, n0.SQLLines)
	}
	if !n1.Templated() || n1.Type != NodeCopy || n1.TargetDatasource != "target" || n1.CopySchedule != "45 */2 * * MON-FRI" || n1.CopyMode != CopyReplace {
		t.Errorf("node 1 = %+v", n1)
	}
	if n1.Tags.Operational["backfill_value"] != "2024-01-01 00:00:00" {
		t.Errorf("node tags = %+v", n1.Tags)
	}
	if got := n1.SQLPosition(2, 7); got != (Pos{File: "x/p.pipe", Line: 17, Column: 7}) {
		t.Errorf("SQLPosition = %v", got)
	}
	if got := n0.SQLPosition(3, 1); got != (Pos{File: "x/p.pipe", Line: 12, Column: 5}) {
		t.Errorf("dedented SQLPosition = %v", got)
	}
	if got := n0.SQLOffsetPosition(strings.Index(n0.SQL, "events")); got != (Pos{File: "x/p.pipe", Line: 12, Column: 10}) {
		t.Errorf("SQLOffsetPosition = %v", got)
	}
}

func TestMaterializedNodeEngine(t *testing.T) {
	p := mustParsePipe(t, `NODE mv
SQL >
    SELECT a, countState() AS c FROM logs GROUP BY a
TYPE materialized
DATASOURCE agg
ENGINE "AggregatingMergeTree"
ENGINE_SORTING_KEY "a"
DEPLOYMENT_METHOD alter
`, Options{})
	n := p.Nodes[0]
	if n.Type != NodeMaterialized || n.Datasource != "agg" || n.Engine.Name != "AggregatingMergeTree" || n.Engine.SortingKey != "a" || n.DeploymentMethod != "alter" {
		t.Errorf("node = %+v", n)
	}
}

func TestSinkKeysKept(t *testing.T) {
	p := mustParsePipe(t, `NODE s
SQL >
    SELECT 1
TYPE SINK
EXPORT_CONNECTION_NAME conn
EXPORT_KAFKA_TOPIC topic
EXPORT_SCHEDULE 0 1 * * *
`, Options{})
	if len(p.Nodes[0].Export) != 3 || len(p.OutOfScope) != 3 || p.OutOfScope[0].Feature != "export" || p.Nodes[0].Type != NodeSink {
		t.Errorf("pipe = %+v", p)
	}
}

func TestEnvSubstitution(t *testing.T) {
	env := map[string]string{"TARGET": "events_v2", "KEY": "ts", "CRON": "0 * * * *"}
	p := mustParsePipe(t, `NODE n
SQL >
    SELECT JSON_VALUE(p, '$.a'), '$$5', '$UNKNOWN' FROM ${TARGET}
TYPE copy
TARGET_DATASOURCE ${TARGET}
COPY_SCHEDULE $CRON
DESCRIPTION costs $TARGET
`, Options{Env: env})
	n := p.Nodes[0]
	if n.TargetDatasource != "events_v2" || n.CopySchedule != "0 * * * *" || n.Description != "costs $TARGET" {
		t.Errorf("node = %+v", n)
	}
	if n.SQL != "SELECT JSON_VALUE(p, '$.a'), '$$5', '$UNKNOWN' FROM events_v2" {
		t.Errorf("SQL = %q", n.SQL)
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"a": "1", "b_2": "x"}
	tests := map[string]string{
		"$a":          "1",
		"${a}b":       "1b",
		"$b_2.c":      "x.c",
		"$c":          "$c",
		"${c}":        "${c}",
		"$$a":         "$a",
		"$":           "$",
		"$.json.path": "$.json.path",
		"${a":         "${a",
	}
	for in, want := range tests {
		if got := substitute(in, vars); got != want {
			t.Errorf("substitute(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInclude(t *testing.T) {
	files := map[string]string{
		"proj/includes/engine.incl": "ENGINE \"MergeTree\"\nENGINE_SORTING_KEY $KEY\n",
		"proj/includes/node.incl":   "NODE shared_$NAME\nSQL >\n    SELECT * FROM $TABLE\n",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("%w: %s", os.ErrNotExist, p)
	}
	ds, err := ParseDataSource("proj/events.datasource", []byte("SCHEMA >\n    `ts` DateTime\nINCLUDE \"includes/engine.incl\" \"KEY=ts\"\n"), Options{ReadFile: read})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Engine.SortingKey != "ts" || ds.Engine.Pos.File != "proj/includes/engine.incl" {
		t.Errorf("engine = %+v", ds.Engine)
	}
	p, err := ParsePipe("proj/p.pipe", []byte("INCLUDE \"includes/node.incl\" \"NAME=one\" \"TABLE=events\"\nNODE last\nSQL >\n    SELECT * FROM shared_one\n"), Options{ReadFile: read})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 2 || p.Nodes[0].Name != "shared_one" || p.Nodes[0].SQL != "SELECT * FROM events" || p.Nodes[0].Pos.File != "proj/includes/node.incl" {
		t.Errorf("nodes = %+v", p.Nodes)
	}
	// An error inside an included file names the included file.
	files["proj/includes/bad.incl"] = "ENGINE_SORTING_KEY a\nBOGUS 1\n"
	_, err = ParseDataSource("proj/e.datasource", []byte("SCHEMA >\n    `a` Int8\nINCLUDE \"includes/bad.incl\"\n"), Options{ReadFile: read})
	var de *Error
	if !errors.As(err, &de) || de.File != "proj/includes/bad.incl" || de.Line != 2 {
		t.Errorf("err = %v", err)
	}
	// A cycle is reported, not looped on.
	files["proj/includes/loop.incl"] = "INCLUDE \"loop.incl\"\n"
	_, err = ParseDataSource("proj/e.datasource", []byte("INCLUDE \"includes/loop.incl\"\n"), Options{ReadFile: read})
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("cycle err = %v", err)
	}
}

func TestTokenize(t *testing.T) {
	tests := map[string][]string{
		`ENGINE "MergeTree"`:                     {"ENGINE", `"MergeTree"`},
		`TOKEN "my token" READ # comment`:        {"TOKEN", `"my token"`, "READ"},
		`ENGINE_SETTINGS "a='x y'"`:              {"ENGINE_SETTINGS", `"a='x y'"`},
		`KEY it's`:                               {`KEY it's`},
		`   SQL   >  `:                           {"SQL", ">"},
		`# all comment`:                          nil,
		`ENGINE_TTL toDate(ts) + INTERVAL 1 DAY`: {"ENGINE_TTL", "toDate(ts)", "+", "INTERVAL", "1", "DAY"},
	}
	for in, want := range tests {
		var got []string
		for _, w := range tokenize(in) {
			got = append(got, w.text)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("tokenize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateSchedule(t *testing.T) {
	ok := []string{"@on-demand", "0 * * * *", "45 */2 * * *", "0 9 * * 1-5", "*/15 0-23/2 1,15 JAN-jun SUN", "0 0 1 1 7", "5,10,15 1-3 * * MON,WED"}
	for _, s := range ok {
		if err := ValidateSchedule(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{"", "@daily", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "1,,2 * * * *", "a * * * *", "0 16/1 * * *", "-1 * * * *"}
	for _, s := range bad {
		if err := ValidateSchedule(s); err == nil {
			t.Errorf("%q: expected an error", s)
		}
	}
}

func TestCaseInsensitiveKeywordsAndQuotes(t *testing.T) {
	p := mustParsePipe(t, "node n\nsql >\n    SELECT 1\ntype 'Materialized'\ndatasource \"target\"\n", Options{})
	if p.Nodes[0].Type != NodeMaterialized || p.Nodes[0].Datasource != "target" {
		t.Errorf("node = %+v", p.Nodes[0])
	}
}

func TestBlockTermination(t *testing.T) {
	// "from" at column 0 and unknown words do not end a block; a column-0
	// keyword does; indented keywords do not.
	p := mustParsePipe(t, "NODE n\nSQL >\n%\nSELECT *\nfrom t\n    TYPE x\nwhere 1\nTYPE endpoint\n", Options{})
	if got := p.Nodes[0].SQL; got != "%\nSELECT *\nfrom t\n    TYPE x\nwhere 1" {
		t.Errorf("SQL = %q", got)
	}
	if p.Nodes[0].Type != NodeEndpoint {
		t.Errorf("type = %v", p.Nodes[0].Type)
	}
}

func TestAggregatingDimensionsSetting(t *testing.T) {
	ds := mustParseDS(t, "SCHEMA >\n    `k` String,\n    `d` String,\n    `c` AggregateFunction(count)\nENGINE AggregatingMergeTree\nENGINE_SORTING_KEY k\nENGINE_SETTINGS index_granularity = 8192\n", Options{})
	if !ds.NeedsDimensionsSetting() {
		t.Error("plain column d is in no key: the setting is needed")
	}
	ds = mustParseDS(t, "SCHEMA >\n    `k` DateTime,\n    `d` String,\n    `c` SimpleAggregateFunction(max, UInt8)\nENGINE AggregatingMergeTree\nENGINE_PARTITION_KEY d\nENGINE_SORTING_KEY toDate(`k`)\n", Options{})
	if ds.NeedsDimensionsSetting() {
		t.Error("setting needed although every column is in a key")
	}
}
