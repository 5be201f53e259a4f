package datafile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// hostileDataSources try to make CREATE TABLE reach files, the network, other tables or
// more statements from every part of a .datasource. « marks the token each must be refused
// at; checkColumns cases are refused by CheckColumns rather than by parsing.
var hostileDataSources = []struct {
	name, src, want string
	checkColumns    bool
	env             map[string]string
}{
	{name: "ALIAS file()", src: "SCHEMA >\n    `a` String,\n    `f` String ALIAS «file('/etc/hostname', 'LineAsString')\n", want: "file() reads a file"},
	{name: "DEFAULT file() scalar", src: "SCHEMA >\n    `f` String DEFAULT «file('/etc/hostname')\n", want: "column f DEFAULT: file()"},
	{name: "MATERIALIZED file()", src: "SCHEMA >\n    `f` String MATERIALIZED upper(«FILE('/etc/hostname'))\n", want: "FILE()"},
	{name: "EPHEMERAL file()", src: "SCHEMA >\n    `f` String EPHEMERAL «file('/etc/hostname')\n", want: "file()"},
	{name: "back-quoted call", src: "SCHEMA >\n    `f` String DEFAULT «`file`('/etc/hostname')\n", want: "file()"},
	{name: "comment between name and call", src: "SCHEMA >\n    `f` String DEFAULT /* c */ «fIlE/**/('/etc/hostname')\n", want: "fIlE()"},
	{name: "subquery in ALIAS", src: "SCHEMA >\n    `x` String,\n    `y` String ALIAS («SELECT groupArray(s) FROM ws_victim.secrets)[1]\n", want: "subqueries are refused"},
	{name: "subquery in DEFAULT, odd casing", src: "SCHEMA >\n    `y` String DEFAULT («sElEcT any(s) FROM ws_dos.base)\n", want: "subqueries are refused"},
	{name: "table as a set", src: "SCHEMA >\n    `y` UInt8 MATERIALIZED 'x' IN «ws_victim.secrets\n", want: "IN ws_victim.secrets reads table"},
	{name: "joinGet", src: "SCHEMA >\n    `y` String ALIAS «joinGet('ws_victim.j', 's', 1)\n", want: "joinGet() reads another table"},
	{name: "dictGet", src: "SCHEMA >\n    `y` String ALIAS «dictGetString('d', 's', toUInt64(1))\n", want: "reads a dictionary"},
	{name: "url() in IN", src: "SCHEMA >\n    `y` UInt8 DEFAULT 1 IN «url('http://127.0.0.1:9/', CSV, 'a String')\n", want: "table functions are refused"},
	{name: "nested comment", src: "SCHEMA >\n    `y` UInt8 DEFAULT 1 /* «/* */ , (SELECT 1) -- */\n", want: "nested /* comments"},
	{name: "non-ASCII space", src: "SCHEMA >\n    `y` UInt8 DEFAULT 1 +«\u00a0(SELECT 1)\n", want: "non-ASCII"},
	{name: "query in a type", src: "SCHEMA >\n    `y` Enum8('a' = («SELECT 1))\n", want: "type of column \"y\": SELECT: subqueries are refused"},
	{name: "CODEC with a call", src: "SCHEMA >\n    `y` String CODEC(ZSTD(«file('/etc/hostname')))\n", want: "CODEC of column \"y\": file()"},
	{name: "CODEC with a subquery", src: "SCHEMA >\n    `y` String CODEC((«SELECT 1))\n", want: "subqueries are refused"},
	{name: "sorting key subquery", src: "SCHEMA >\n    `a` String\nENGINE_SORTING_KEY a, («SELECT 1)\n", want: "ENGINE_SORTING_KEY: SELECT"},
	{name: "quoted partition key file()", src: "SCHEMA >\n    `a` String\nENGINE_PARTITION_KEY \"«file('/etc/hostname')\"\n", want: "ENGINE_PARTITION_KEY: file()"},
	{name: "primary key joinGet", src: "SCHEMA >\n    `a` String\nENGINE_SORTING_KEY a\nENGINE_PRIMARY_KEY «joinGet('j', 'v', a)\n", want: "ENGINE_PRIMARY_KEY: joinGet()"},
	{name: "sampling key from another table", src: "SCHEMA >\n    `a` UInt64\nENGINE_SORTING_KEY a\nENGINE_SAMPLING_KEY a IN «other.t\n", want: "ENGINE_SAMPLING_KEY: IN other.t"},
	{name: "legacy TTL key with a subquery", src: "SCHEMA >\n    `d` DateTime\nTTL d + («SELECT 1)\n", want: "ENGINE_TTL: SELECT"},
	{name: "TTL to a disk", src: "SCHEMA >\n    `d` DateTime\nENGINE_TTL d + INTERVAL 1 DAY «TO DISK 'x'\n", want: "TO DISK"},
	{name: "settings AS SELECT", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS \"index_granularity = 8192 AS «SELECT s FROM ws_victim.secrets\"\n", want: "ENGINE_SETTINGS: SELECT: subqueries are refused"},
	{name: "settings value a function", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS disk = «disk(type = local, path = '/')\n", want: "must be a literal"},
	{name: "settings statement end", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity = 1«; DROP TABLE x\n", want: "';' ends a statement"},
	{name: "settings name an expression", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS («SELECT 1) = 1\n", want: "subqueries are refused"},
	{name: "ENGINE_VER expression", src: "SCHEMA >\n    `v` UInt64\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_VER («SELECT 1)\n", want: "ENGINE_VER: SELECT: subqueries are refused"},
	{name: "ENGINE_IS_DELETED two names", src: "SCHEMA >\n    `v` UInt64\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_IS_DELETED v«, v\n", want: "expected one column name"},
	{name: "ENGINE_SIGN call", src: "SCHEMA >\n    `s` Int8\nENGINE CollapsingMergeTree\nENGINE_SORTING_KEY s\nENGINE_SIGN «file('/etc/hostname')\n", want: "ENGINE_SIGN: file()"},
	{name: "ENGINE_COLUMNS subquery", src: "SCHEMA >\n    `a` UInt64\nENGINE SummingMergeTree\nENGINE_COLUMNS a, («SELECT 1)\n", want: "ENGINE_COLUMNS: SELECT: subqueries are refused"},
	{name: "ENGINE_JOIN_STRICTNESS injection", src: "SCHEMA >\n    `k` UInt64\nENGINE Join\nENGINE_JOIN_STRICTNESS «ANY, LEFT, k) AS SELECT 1 --\n", want: "invalid ENGINE_JOIN_STRICTNESS"},
	{name: "ENGINE name with arguments", src: "SCHEMA >\n    `k` UInt64\nENGINE «File(LineAsString, '/etc/hostname')\n", want: "unsupported engine"},
	{name: "index expression file()", src: "SCHEMA >\n    `a` String\nINDEXES >\n    idx «file('/etc/hostname') TYPE minmax GRANULARITY 1\n", want: "index idx: file()"},
	{name: "index type subquery", src: "SCHEMA >\n    `a` String\nINDEXES >\n    idx a TYPE set((«SELECT 1)) GRANULARITY 1\n", want: "type of index idx: SELECT: subqueries are refused"},
	{name: "variable holding a subquery", src: "SCHEMA >\n    `a` String\nENGINE_SORTING_KEY «$KEY\n", env: map[string]string{"KEY": "(SELECT 1)"}, want: "subqueries are refused"},
	{name: "settings value a column", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity = «s\n", want: "must be a literal"},
	{name: "settings without a value", src: "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity«\n", want: "expected '=' after index_granularity"},
	{name: "ENGINE_VER two names", src: "SCHEMA >\n    `v` UInt64\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_VER v «v\n", want: "expected one column name"},
	{name: "codec argument a name", src: "SCHEMA >\n    `y` String CODEC(ZSTD(«level))\n", want: "codec arguments are numbers"},
	{name: "index type argument a column", src: "SCHEMA >\n    `a` String\nINDEXES >\n    idx a TYPE set(«a) GRANULARITY 1\n", want: "arguments are literals"},
	{name: "type followed by an expression", src: "SCHEMA >\n    `y` String(1) «+ 1\n", want: "unexpected \"+\" in column \"y\""},
	// Refused once the columns are known (CheckColumns).
	{name: "ALIAS of another table's column", src: "SCHEMA >\n    `a` String,\n    `b` String ALIAS «secrets\n", want: "column b ALIAS: unknown column secrets", checkColumns: true},
	{name: "qualified column of another database", src: "SCHEMA >\n    `a` String,\n    `b` String DEFAULT «ws_victim.secrets.s\n", want: "unknown column ws_victim.secrets.s", checkColumns: true},
	{name: "ENGINE_VER not a column", src: "SCHEMA >\n    `v` UInt64\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_VER «w\n", want: "ENGINE_VER: unknown column w", checkColumns: true},
	{name: "sorting key of a missing column", src: "SCHEMA >\n    `v` UInt64\nENGINE_SORTING_KEY \"v, «base\"\n", want: "ENGINE_SORTING_KEY: unknown column base", checkColumns: true},
	{name: "index on a missing column", src: "SCHEMA >\n    `v` UInt64\nINDEXES >\n    i «w TYPE minmax\n", want: "index i: unknown column w", checkColumns: true},
}

func TestHostileDataSourcesRefusedWithPosition(t *testing.T) {
	if len(hostileDataSources) < 40 {
		t.Fatalf("only %d hostile datafiles", len(hostileDataSources))
	}
	for _, tc := range hostileDataSources {
		t.Run(tc.name, func(t *testing.T) {
			at := strings.Index(tc.src, "«")
			src := strings.Replace(tc.src, "«", "", 1)
			line := 1 + strings.Count(src[:at], "\n")
			col := 1 + len([]rune(src[strings.LastIndex(src[:at], "\n")+1:at]))
			ds, err := ParseDataSource("ds/hostile.datasource", []byte(src), Options{Env: tc.env})
			if tc.checkColumns {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				err = ds.CheckColumns()
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("accepted (%v); DDL:\n%s", err, ds.DDL("`db`.`t`"))
			}
			if de.File != "ds/hostile.datasource" || de.Line != line || de.Column != col {
				t.Errorf("refused at %d:%d, want %d:%d: %v", de.Line, de.Column, line, col, err)
			}
			if !strings.Contains(de.Msg, tc.want) {
				t.Errorf("refusal %q does not say %q", de.Msg, tc.want)
			}
		})
	}
}

// TestDDLFromParts: what reaches CREATE TABLE is rebuilt from tokens (comments gone, heredocs
// quoted, names quoted) and passes the final check.
func TestDDLFromParts(t *testing.T) {
	src := "SCHEMA >\n" +
		"    `ts` DateTime64(3, 'UTC') CODEC(Delta( 8 ),ZSTD(1)), -- the time\n" +
		"    `n`   Nullable( String ) DEFAULT concat($$x$$, /* c */ 'y'),\n" +
		"    `e` Enum8('a' = 1, 'b' = -2),\n" +
		"    `q` AggregateFunction(quantiles(0.5, 0.9), Float64),\n" +
		"    `nested.a` Array(UInt8),\n" +
		"    `l` UInt64 ALIAS length(`nested.a`) + arraySum(x -> x, `nested.a`)\n" +
		"INDEXES >\n" +
		"    INDEX i_n n TYPE bloom_filter(0.01) GRANULARITY 2,\n" +
		"    i_t toDate(ts) TYPE minmax\n" +
		"ENGINE \"ReplacingMergeTree\"\n" +
		"ENGINE_PARTITION_KEY \"toYYYYMM(ts) -- monthly\"\n" +
		"ENGINE_SORTING_KEY e, ts\n" +
		"ENGINE_VER `ts`\n" +
		"ENGINE_TTL toDateTime(ts) + INTERVAL 1 DAY DELETE WHERE e = 'a'\n" +
		"ENGINE_SETTINGS \"index_granularity=1024,  merge_with_ttl_timeout = 3600, storage_ratio = -1.5, flag = TRUE\"\n"
	ds, err := ParseDataSource("ds/parts.datasource", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.CheckColumns(); err != nil {
		t.Fatal(err)
	}
	want := "CREATE TABLE `db`.`parts`\n(\n" +
		"    `ts` DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),\n" +
		"    `n` Nullable(String) DEFAULT concat('x',   'y'),\n" +
		"    `e` Enum8('a' = 1, 'b' = -2),\n" +
		"    `q` AggregateFunction(quantiles(0.5, 0.9), Float64),\n" +
		"    `nested.a` Array(UInt8),\n" +
		"    `l` UInt64 ALIAS length(`nested.a`) + arraySum(x -> x, `nested.a`),\n" +
		"    INDEX `i_n` n TYPE bloom_filter(0.01) GRANULARITY 2,\n" +
		"    INDEX `i_t` toDate(ts) TYPE minmax\n" +
		")\n" +
		"ENGINE = ReplacingMergeTree(`ts`)\n" +
		"PARTITION BY (toYYYYMM(ts))\n" +
		"ORDER BY (e, ts)\n" +
		"TTL toDateTime(ts) + INTERVAL 1 DAY DELETE WHERE e = 'a'\n" +
		"SETTINGS index_granularity = 1024, merge_with_ttl_timeout = 3600, storage_ratio = -1.5, flag = true"
	got := ds.DDL("`db`.`parts`")
	if got != want {
		t.Errorf("DDL:\n%s\nwant:\n%s", got, want)
	}
	if err := CheckStatement(got, "`db`.`parts`"); err != nil {
		t.Errorf("final check refuses Sluice's own DDL: %v", err)
	}
}

// TestCheckStatementRefusesWhatSluiceNeverBuilds: the final check reads the statement from
// its own tokens, so a part that slipped past the parser is still caught.
func TestCheckStatementRefusesWhatSluiceNeverBuilds(t *testing.T) {
	const tbl = "`db`.`t`"
	ok := []string{
		"CREATE TABLE `db`.`t`\n(\n    `a` String DEFAULT 'x'\n)\nENGINE = MergeTree()\nORDER BY tuple()",
		"CREATE TABLE `db`.`t`\n(\n    `k` UInt64\n)\nENGINE = Join(ANY, LEFT, `k`)\nSETTINGS join_use_nulls = 1",
		"ALTER TABLE `db`.`t` ADD COLUMN `b` UInt8 DEFAULT 1 AFTER `a`",
		"ALTER TABLE `db`.`t` MODIFY COLUMN `b` UInt8 MATERIALIZED a + 1",
		"ALTER TABLE `db`.`t` ADD INDEX `i` a TYPE minmax GRANULARITY 1",
		"ALTER TABLE `db`.`t` DROP INDEX IF EXISTS `i`",
		"ALTER TABLE `db`.`t` MODIFY TTL d + INTERVAL 1 DAY",
		"ALTER TABLE `db`.`t` REMOVE TTL",
		"DROP TABLE IF EXISTS `db`.`t`",
	}
	for _, s := range ok {
		if err := CheckStatement(s, tbl); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := map[string]string{
		"CREATE TABLE `db`.`t` (`a` String ALIAS file('/etc/hostname')) ENGINE = MergeTree() ORDER BY tuple()":                   "file()",
		"CREATE TABLE `db`.`t` (`a` String ALIAS (SELECT 1)) ENGINE = MergeTree() ORDER BY tuple()":                              "subqueries",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple() SETTINGS index_granularity = 8192 AS SELECT 1": "not a literal",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple() AS SELECT 1":                                   "subqueries",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple(); DROP TABLE `db`.`u`":                          "one statement",
		"CREATE TABLE `db`.`other` (`a` String) ENGINE = MergeTree() ORDER BY tuple()":                                           "expected CREATE TABLE",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = File(LineAsString, '/etc/hostname')":                                        "not one Sluice creates",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple() /* x */":                                       "comment",
		"CREATE TABLE `db`.`t` (`a` String) ENGINE = MergeTree() TTL d TO DISK 'x' ORDER BY a":                                   "TO DISK",
		"CREATE TABLE `db`.`t` (`a` UInt8 DEFAULT 1 IN other.t) ENGINE = MergeTree() ORDER BY tuple()":                           "reads table",
		"CREATE TABLE `db`.`t` (INDEX `i` joinGet('j', 'v', 1) TYPE minmax, `a` UInt8) ENGINE = MergeTree() ORDER BY tuple()":    "joinGet()",
		"CREATE TABLE `db`.`t` (`a` UInt8) ENGINE = ReplacingMergeTree((SELECT 1)) ORDER BY tuple()":                             "subqueries",
		"ALTER TABLE `db`.`t` ADD COLUMN `b` UInt8 DEFAULT (SELECT 1)":                                                           "subqueries",
		"ALTER TABLE `db`.`t` ADD COLUMN `b` UInt8, DROP COLUMN `a`":                                                             "one action",
		"ALTER TABLE `db`.`t` MODIFY TTL d + INTERVAL 1 DAY TO VOLUME 'slow'":                                                    "TO VOLUME",
		"ALTER TABLE `db`.`t` DELETE WHERE 1":                                                                                    "unexpected ALTER action",
		"DROP TABLE IF EXISTS `db`.`t`, `db`.`u`":                                                                                "after DROP TABLE",
		"DROP DATABASE `db`": "expected CREATE TABLE",
	}
	for s, want := range bad {
		err := CheckStatement(s, tbl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want a refusal saying %q", s, err, want)
		}
	}
}

// TestCorpusDDLPassesTheFinalCheck: the DDL of every corpus Data Source passes the final
// check and reads only its own columns (once the connector's columns the catalog adds are
// there).
func TestCorpusDDLPassesTheFinalCheck(t *testing.T) {
	for _, f := range loadCorpus(t) {
		if KindOf(f.path) != KindDataSource {
			continue
		}
		ds, err := ParseDataSource(f.path, f.src, Options{})
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		ddl := ds.DDL("`db`.`t`")
		if err := CheckStatement(ddl, "`db`.`t`"); err != nil {
			t.Errorf("%s: %v\n%s", f.path, err, ddl)
		}
		if len(ds.OutOfScope) == 0 {
			if err := ds.CheckColumns(); err != nil {
				t.Errorf("%s: %v", f.path, err)
			}
		}
	}
	_ = fmt.Sprint()
}
