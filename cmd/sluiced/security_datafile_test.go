package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// hostileDatafile is a .datasource whose definition tries to make CREATE TABLE reach a file,
// the network, another workspace, another table or a second statement. « marks the token the
// refusal must point at (file:line:column); {file} and {other} are expanded as for
// hostileQueries, {self} is the attacker's own database.
type hostileDatafile struct {
	name, src string
	// want is what the refusal must say.
	want string
}

// hostileDatafiles are pushed one by one as datasources/hostile.datasource into the attacker
// workspace, on both engines: every position of a definition that reaches DDL, with casing and
// comment tricks.
var hostileDatafiles = []hostileDatafile{
	// Column expressions.
	{"ALIAS file()", "SCHEMA >\n    `s` String,\n    `f` String ALIAS «file('{file}', 'LineAsString')\n", "file() reads a file"},
	{"ALIAS FiLe(), odd casing", "SCHEMA >\n    `s` String,\n    `f` String alias «FiLe('{file}')\n", "FiLe()"},
	{"DEFAULT file() scalar", "SCHEMA >\n    `f` String DEFAULT «file('{file}')\n", "column f DEFAULT: file()"},
	{"MATERIALIZED back-quoted file()", "SCHEMA >\n    `f` String MATERIALIZED «`file`('{file}')\n", "file()"},
	{"EPHEMERAL file()", "SCHEMA >\n    `f` String EPHEMERAL «file('{file}')\n", "column f EPHEMERAL: file()"},
	{"comments around the call", "SCHEMA >\n    `f` String DEFAULT /* a */ «file/**/('{file}')\n", "file()"},
	{"call on the next line after a line comment", "SCHEMA >\n    `s` String,\n    `f` String DEFAULT concat(s, -- hidden\n        «file('{file}'))\n", "file()"},
	{"heredoc path", "SCHEMA >\n    `f` String DEFAULT «file($p${file}$p$)\n", "file()"},
	{"ALIAS subquery into another workspace", "SCHEMA >\n    `x` String,\n    `y` String ALIAS («SELECT groupArray(s) FROM {other}.secrets)[1]\n", "subqueries are refused"},
	{"DEFAULT subquery, odd casing", "SCHEMA >\n    `y` String DEFAULT («sElEcT any(s) FROM {other}.secrets)\n", "subqueries are refused"},
	{"MATERIALIZED subquery with WITH", "SCHEMA >\n    `y` String MATERIALIZED («WITH (1) AS x SELECT any(s) FROM {other}.secrets)\n", "subqueries are refused"},
	{"ALIAS subquery into the own workspace", "SCHEMA >\n    `y` String ALIAS («SELECT any(action) FROM {self}.events)\n", "subqueries are refused"},
	{"subquery into system tables", "SCHEMA >\n    `y` String ALIAS toString((«SELECT groupArray(name) FROM system.tables))\n", "subqueries are refused"},
	{"table as a set", "SCHEMA >\n    `s` String,\n    `y` UInt8 ALIAS s IN «{other}.secrets\n", "IN {other}.secrets reads table"},
	{"table as a set, parenthesised and quoted", "SCHEMA >\n    `s` String,\n    `y` UInt8 ALIAS s NOT IN ((«`{other}`.`secrets`))\n", "IN {other}.secrets reads table"},
	{"in() function form", "SCHEMA >\n    `s` String,\n    `y` UInt8 ALIAS «in(s, {other}.secrets)\n", "in() as a function"},
	{"joinGet", "SCHEMA >\n    `y` String ALIAS «joinGet('{other}.secrets', 's', 1)\n", "joinGet() reads another table"},
	{"dictGet", "SCHEMA >\n    `y` String ALIAS «dictGet('d', 'a', toUInt64(1))\n", "reads a dictionary"},
	{"url() as a set", "SCHEMA >\n    `y` UInt8 DEFAULT 1 IN «url('http://127.0.0.1:9/x', CSV, 'a String')\n", "url(): table functions are refused"},
	{"hasColumnInTable", "SCHEMA >\n    `y` UInt8 ALIAS «hasColumnInTable('{other}', 'secrets', 's')\n", "hasColumnInTable()"},
	{"nested comment hiding a subquery", "SCHEMA >\n    `y` UInt8 DEFAULT 1 /* «/* */ , (SELECT 1) -- */\n", "nested /* comments"},
	{"non-ASCII space before a subquery", "SCHEMA >\n    `y` UInt8 DEFAULT 1 +«\u00a0(SELECT 1)\n", "non-ASCII"},
	{"query in a type", "SCHEMA >\n    `y` Enum8('a' = («SELECT 1))\n", "type of column \"y\": SELECT"},
	{"file() in a CODEC", "SCHEMA >\n    `y` String CODEC(ZSTD(«file('{file}')))\n", "CODEC of column \"y\": file()"},
	{"column of another table", "SCHEMA >\n    `s` String,\n    `y` String ALIAS «secrets.s\n", "unknown column secrets.s"},
	// Keys and TTL.
	{"partition key reading a file", "SCHEMA >\n    `s` String\nENGINE_PARTITION_KEY \"length(«file('{file}'))\"\n", "ENGINE_PARTITION_KEY: file()"},
	{"sorting key subquery", "SCHEMA >\n    `s` String\nENGINE_SORTING_KEY s, («SELECT 1)\n", "ENGINE_SORTING_KEY: SELECT"},
	{"legacy sorting key subquery, odd casing", "SCHEMA >\n    `s` String\nsorting_key \"s, («SeLeCt 1)\"\n", "ENGINE_SORTING_KEY: SeLeCt"},
	{"primary key joinGet", "SCHEMA >\n    `s` String\nENGINE_SORTING_KEY s\nENGINE_PRIMARY_KEY «joinGet('{other}.secrets', 's', 1)\n", "ENGINE_PRIMARY_KEY: joinGet()"},
	{"sampling key reading another workspace", "SCHEMA >\n    `s` UInt64\nENGINE_SORTING_KEY s\nENGINE_SAMPLING_KEY s IN «{other}.secrets\n", "ENGINE_SAMPLING_KEY: IN {other}.secrets"},
	{"TTL with a subquery", "SCHEMA >\n    `d` DateTime,\n    `s` String\nENGINE_TTL \"d + INTERVAL 1 DAY DELETE WHERE s IN («SELECT s FROM {other}.secrets)\"\n", "ENGINE_TTL: SELECT"},
	{"TTL to a disk", "SCHEMA >\n    `d` DateTime\nENGINE_TTL d + INTERVAL 1 DAY «TO DISK 'default'\n", "TO DISK"},
	{"legacy TTL key reading a file", "SCHEMA >\n    `d` DateTime\nTTL d + toIntervalDay(length(«file('{file}')))\n", "ENGINE_TTL: file()"},
	{"key of a missing column", "SCHEMA >\n    `s` String\nENGINE_SORTING_KEY \"s, «base\"\n", "ENGINE_SORTING_KEY: unknown column base"},
	// ENGINE_SETTINGS.
	{"settings turned into CREATE ... AS SELECT", "SCHEMA >\n    `s` String\nENGINE_SETTINGS \"index_granularity = 8192 AS «SELECT s FROM {other}.secrets\"\n", "ENGINE_SETTINGS: SELECT"},
	{"settings AS SELECT from file()", "SCHEMA >\n    `s` String\nENGINE_SETTINGS \"index_granularity = 8192 AS «SELECT * FROM file('{file}', 'LineAsString')\"\n", "ENGINE_SETTINGS: SELECT"},
	{"settings AS SELECT from url()", "SCHEMA >\n    `s` String\nENGINE_SETTINGS \"index_granularity = 8192 AS «SELECT * FROM url('http://127.0.0.1:9/x', CSV, 's String')\"\n", "ENGINE_SETTINGS: SELECT"},
	{"settings with a second statement", "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity = 8192«; DROP TABLE events\n", "ENGINE_SETTINGS: ';' ends a statement"},
	{"setting value a function", "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity = 8192, disk = «disk(type = local, path = '/')\n", "must be a literal"},
	{"setting choosing the storage", "SCHEMA >\n    `s` String\nENGINE_SETTINGS «storage_policy = 'default'\n", "storage_policy is refused"},
	{"unknown setting", "SCHEMA >\n    `s` String\nENGINE_SETTINGS index_granularity = 8192, «no_such_setting = 1\n", "no_such_setting is not a MergeTree setting this ClickHouse knows"},
	// Engine arguments.
	{"ENGINE with a file", "SCHEMA >\n    `s` String\nENGINE «File(LineAsString, '{file}')\n", "unsupported engine"},
	{"ENGINE_VER subquery", "SCHEMA >\n    `v` UInt64\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_VER («SELECT 1)\n", "ENGINE_VER: SELECT"},
	{"ENGINE_IS_DELETED file()", "SCHEMA >\n    `v` UInt64,\n    `d` UInt8\nENGINE ReplacingMergeTree\nENGINE_SORTING_KEY v\nENGINE_VER v\nENGINE_IS_DELETED «file('{file}')\n", "ENGINE_IS_DELETED: file()"},
	{"ENGINE_SIGN of another column list", "SCHEMA >\n    `s` Int8\nENGINE CollapsingMergeTree\nENGINE_SORTING_KEY s\nENGINE_SIGN s«, s\n", "ENGINE_SIGN: expected one column name"},
	{"ENGINE_VERSION not a column", "SCHEMA >\n    `s` Int8,\n    `v` UInt64\nENGINE VersionedCollapsingMergeTree\nENGINE_SORTING_KEY v\nENGINE_SIGN s\nENGINE_VERSION «w\n", "ENGINE_VERSION: unknown column w"},
	{"ENGINE_COLUMNS subquery", "SCHEMA >\n    `a` UInt64\nENGINE SummingMergeTree\nENGINE_COLUMNS a, («SELECT 1)\n", "ENGINE_COLUMNS: SELECT"},
	{"ENGINE_KEY_COLUMNS closing the engine", "SCHEMA >\n    `k` UInt64\nENGINE Join\nENGINE_JOIN_STRICTNESS ANY\nENGINE_JOIN_TYPE LEFT\nENGINE_KEY_COLUMNS k«) AS SELECT 1\n", "ENGINE_KEY_COLUMNS: unbalanced \")\""},
	{"ENGINE_JOIN_STRICTNESS injection", "SCHEMA >\n    `k` UInt64\nENGINE Join\nENGINE_JOIN_STRICTNESS «ANY, LEFT, k) SETTINGS join_use_nulls = 1 --\n", "invalid ENGINE_JOIN_STRICTNESS"},
	// INDEXES.
	{"index expression file()", "SCHEMA >\n    `s` String\nINDEXES >\n    idx «file('{file}') TYPE minmax GRANULARITY 1\n", "index idx: file()"},
	{"index type subquery", "SCHEMA >\n    `s` String\nINDEXES >\n    idx s TYPE set((«SELECT 1)) GRANULARITY 1\n", "type of index idx: SELECT"},
}

// expandMarked expands the placeholders and returns the source without its « marker and the
// marker's line:column.
func (e *hostileEnv) expandMarked(t *testing.T, src, self string) (string, string) {
	t.Helper()
	src = strings.ReplaceAll(e.expand(src), "{self}", self)
	at := strings.Index(src, "«")
	if at < 0 {
		t.Fatalf("no « marker in %q", src)
	}
	line := 1 + strings.Count(src[:at], "\n")
	col := 1 + len([]rune(src[strings.LastIndex(src[:at], "\n")+1:at]))
	return strings.Replace(src, "«", "", 1), fmt.Sprintf("%d:%d", line, col)
}

// tablesOf lists the tables of a database, and the validation databases a push left.
func tablesOf(t *testing.T, sys *sluicetest.System, db string) string {
	t.Helper()
	res, err := sys.App.Warehouse().Query(t.Context(), "SELECT name FROM system.tables WHERE database = "+warehouse.QuoteString(db)+" ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	scratch, err := sys.App.Warehouse().Query(t.Context(), "SELECT name FROM system.databases WHERE startsWith(name, '__sluice_check_')")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("tables of %s: %v; validation databases left: %v", db, res.Rows, scratch.Rows)
}

// legitDatafile uses every position the hostile ones abuse, the way a real project does; the
// server (18.16) has no TTL, codecs or skip indexes, so those are only on chDB.
func legitDatafile(server bool) string {
	src := "SCHEMA >\n" +
		"    `ts` DateTime,\n" +
		"    `s` String,\n" +
		"    `n` UInt64 DEFAULT length(s) * 2,\n" +
		"    `up` String MATERIALIZED upper(s),\n" +
		"    `al` String ALIAS concat(s, '!'),\n" +
		"    `v` UInt64 DEFAULT 1\n"
	if !server {
		src = strings.Replace(src, "`ts` DateTime,", "`ts` DateTime CODEC(Delta(4), ZSTD(1)),", 1)
		src += "INDEXES >\n    idx_s s TYPE bloom_filter(0.01) GRANULARITY 1\n"
	}
	src += "ENGINE ReplacingMergeTree\n" +
		"ENGINE_PARTITION_KEY \"toYYYYMM(ts)\"\n" +
		"ENGINE_SORTING_KEY \"s, cityHash64(s)\"\n" +
		"ENGINE_PRIMARY_KEY \"s, cityHash64(s)\"\n" +
		"ENGINE_SAMPLING_KEY \"cityHash64(s)\"\n" +
		"ENGINE_VER v\n" +
		"ENGINE_SETTINGS \"index_granularity = 4096\"\n"
	if !server {
		src += "ENGINE_TTL \"ts + INTERVAL 3650 DAY\"\n"
	}
	return src
}

func runHostileDatafiles(t *testing.T, sys *sluicetest.System, server bool) {
	e := newHostileEnv(t, sys)
	self := strings.Trim(sys.DatabaseOf(t, e.attacker), "`")
	if len(hostileDatafiles) < 40 {
		t.Fatalf("only %d hostile datafiles", len(hostileDatafiles))
	}
	push := func(t *testing.T, src string) (string, int) {
		dir := t.TempDir()
		p := filepath.Join(dir, "datasources", "hostile.datasource")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := cli(t, e.bin, e.admin, "push", "--workspace", e.attacker, dir)
		return stdout + stderr, code
	}
	before := e.state(t) + "\n" + tablesOf(t, sys, self)
	for _, h := range hostileDatafiles {
		t.Run(h.name, func(t *testing.T) {
			src, at := e.expandMarked(t, h.src, self)
			out, code := push(t, src)
			if code == 0 {
				t.Fatalf("sluice push accepted it:\n%s", out)
			}
			if want := "hostile.datasource:" + at + ": "; !strings.Contains(out, want) {
				t.Errorf("refusal does not point at %s:\n%s", want, out)
			}
			if want := strings.ReplaceAll(e.expand(h.want), "{self}", self); !strings.Contains(out, want) {
				t.Errorf("refusal does not say %q:\n%s", want, out)
			}
			for _, secret := range []string{e.fileSecret, e.dbSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("output holds the secret %s:\n%s", secret, out)
				}
			}
		})
	}
	if after := e.state(t) + "\n" + tablesOf(t, sys, self); after != before {
		t.Errorf("hostile datafiles changed something:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// The same positions, used as real projects use them, deploy and compute from their row.
	if out, code := push(t, legitDatafile(server)); code != 0 {
		t.Fatalf("legitimate datafile refused:\n%s", out)
	}
	if _, err := sys.App.Warehouse().Exec(t.Context(), "INSERT INTO "+warehouse.QualifiedName(self, "hostile")+" (ts, s) SELECT toDateTime('2026-01-02 03:04:05'), 'abc'"); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, "--output", "json", "SELECT s, n, up, al, v FROM hostile")
	if code != 0 || !strings.Contains(out, `"abc"`) || !strings.Contains(out, `"ABC"`) || !strings.Contains(out, `"abc!"`) || !strings.Contains(out, "6") {
		t.Errorf("the legitimate Data Source's defaults: exit %d\n%s%s", code, out, stderr)
	}
}

// TestHostileDatafilesRefusedOnChDB pushes the hostile datafiles to sluiced on embedded
// ClickHouse: each is refused at its file:line:column before any DDL, nothing changes.
func TestHostileDatafilesRefusedOnChDB(t *testing.T) {
	runHostileDatafiles(t, sluicetest.Start(t), false)
}

// TestHostileDatafilesRefusedOnServer does the same against a clickhouse-server process.
func TestHostileDatafilesRefusedOnServer(t *testing.T) {
	cfg := warehousetest.Server(t)
	runHostileDatafiles(t, sluicetest.Start(t, sluicetest.WithArgs("-clickhouse-addr", strings.Join(cfg.Addrs, ","))), true)
}
