package main_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// hostileQuery is users' SQL that tries to leave its workspace (issue 9). In sql, {file} is
// the absolute path of a file holding a secret, {other} the database of another workspace
// (whose Data Source secrets holds another secret) and {dir} a directory nothing may write to.
type hostileQuery struct {
	name string
	sql  string
	// want is what the refusal must say (it names the reference), through every path.
	want string
	// wantPush replaces want for a pushed pipe, when a node is refused for another reason
	// first (a node holds one SELECT).
	wantPush string
}

// hostileQueries is the one table every path runs: `sluice sql`, a pushed pipe, and (when
// Copy Pipes land) a pushed pipe run as a copy.
var hostileQueries = []hostileQuery{
	// Files, by name and by table function.
	{"backticked path", "SELECT * FROM `{file}`", `"{file}"`, ""},
	{"backticked path, odd casing and comment", "sElEcT * fRoM/**/`{file}`", `"{file}"`, ""},
	{"double-quoted path", `SELECT * FROM "{file}"`, `"{file}"`, ""},
	{"path in a subquery", "SELECT * FROM events WHERE action IN (SELECT * FROM `{file}`)", `"{file}"`, ""},
	{"file()", "SELECT * FROM file('{file}', 'LineAsString')", "file()", ""},
	{"FiLe() with 3 args", "SELECT * FROM FiLe('{file}', 'TSV', 's String')", "FiLe()", ""},
	{"file() scalar", "SELECT file('{file}')", "file()", ""},
	{"file() quoted scalar", "SELECT `file`('{file}')", "file()", ""},
	{"file() in IN subquery", "SELECT * FROM events WHERE action IN (SELECT * FROM /* x */ file('{file}', 'LineAsString'))", "file()", ""},
	{"file() in JOIN", "SELECT * FROM events e JOIN file('{file}', 'LineAsString') f ON 1", "file()", ""},
	{"file() in CTE", "WITH x AS (SELECT * FROM file('{file}', 'LineAsString')) SELECT * FROM x", "file()", ""},
	{"file() in UNION", "SELECT 'a' UNION ALL SELECT * FROM file('{file}', 'LineAsString')", "file()", ""},
	{"file() in ARRAY JOIN", "SELECT * FROM events ARRAY JOIN [(SELECT any(line) FROM file('{file}', 'LineAsString'))] AS x", "file()", ""},
	{"path after an alias column list", "SELECT * FROM numbers(1) AS a(x), `{file}`", `"{file}"`, ""},
	{"nested comment hiding a subquery", "SELECT 1 /* /* */ , (SELECT any(s) FROM {other}.secrets) -- */", "nested /* comments", ""},
	{"non-ASCII space before a name", "SELECT * FROM\u00a0{other}.secrets", "non-ASCII", ""},
	{"INTO OUTFILE", "SELECT * FROM events INTO OUTFILE '{dir}/out.txt'", "INTO OUTFILE", ""},
	{"catboostEvaluate()", "SELECT catboostEvaluate('{file}', 1)", "catboostEvaluate()", ""},
	// Table functions outside the allow-list.
	{"url()", "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')", "url()", ""},
	{"url() scalar in IN", "SELECT * FROM events WHERE action IN url('http://127.0.0.1:9/x', CSV, 'a String')", "url()", ""},
	{"s3()", "SELECT * FROM s3('http://127.0.0.1:9/b/k', CSV)", "s3()", ""},
	{"s3() in a scalar subquery", "SELECT (SELECT count() FROM S3('http://127.0.0.1:9/b/k', CSV))", "S3()", ""},
	{"remote()", "SELECT * FROM remote('127.0.0.1', {other}.secrets)", "remote()", ""},
	{"remoteSecure()", "SELECT * FROM remoteSecure('127.0.0.1', {other}, secrets)", "remoteSecure()", ""},
	{"cluster()", "SELECT * FROM cluster('default', {other}.secrets)", "cluster()", ""},
	{"clusterAllReplicas()", "SELECT * FROM clusterAllReplicas('default', {other}.secrets)", "clusterAllReplicas()", ""},
	{"mysql()", "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", "mysql()", ""},
	{"postgresql()", "SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')", "postgresql()", ""},
	{"executable()", "SELECT * FROM executable('cat {file}', TSV, 'x String')", "executable()", ""},
	{"input()", "SELECT * FROM input('x String')", "input()", ""},
	{"hdfs()", "SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', TSV, 'x String')", "hdfs()", ""},
	{"azureBlobStorage()", "SELECT * FROM azureBlobStorage('http://127.0.0.1:9', 'c', 'b')", "azureBlobStorage()", ""},
	{"iceberg()", "SELECT * FROM iceberg('http://127.0.0.1:9/x')", "iceberg()", ""},
	{"merge()", "SELECT * FROM merge('{other}', '.*')", "merge()", ""},
	{"view()", "SELECT * FROM view(SELECT * FROM {other}.secrets)", "view()", ""},
	{"loop()", "SELECT * FROM loop({other}.secrets) LIMIT 1", "loop()", ""},
	{"dictionary()", "SELECT * FROM dictionary('d')", "dictionary()", ""},
	{"sqlite()", "SELECT * FROM sqlite('{file}', 't')", "sqlite()", ""},
	{"filesystem()", "SELECT * FROM filesystem('/etc')", "filesystem()", ""},
	{"jdbc() in a JOIN", "SELECT * FROM events e LEFT JOIN jdbc('x', 'y', 'z') j ON 1", "jdbc()", ""},
	// Other workspaces and databases.
	{"other workspace", "SELECT * FROM {other}.secrets", "{other}.secrets", ""},
	{"other workspace, back-quoted", "SELECT * FROM `{other}`.`secrets`", "{other}.secrets", ""},
	{"other workspace, double-quoted and spaced", `SELECT * FROM "{other}" . "secrets"`, "{other}.secrets", ""},
	{"other workspace in JOIN", "SELECT * FROM events JOIN {other}.secrets USING (s)", "{other}.secrets", ""},
	{"other workspace in ANY LEFT JOIN", "SELECT * FROM events e ANY LEFT JOIN {other}.secrets AS s ON 1", "{other}.secrets", ""},
	{"other workspace in PASTE JOIN", "SELECT * FROM events PASTE JOIN {other}.secrets", "{other}.secrets", ""},
	{"other workspace after a comma", "SELECT * FROM events AS e FINAL, -- hidden\n{other}.secrets", "{other}.secrets", ""},
	{"other workspace in IN", "SELECT * FROM events WHERE action IN {other}.secrets", "{other}.secrets", ""},
	{"other workspace in IN (...)", "SELECT * FROM events WHERE action NOT IN (({other}.secrets))", "{other}.secrets", ""},
	{"other workspace in GLOBAL IN subquery", "SELECT * FROM events WHERE action GLOBAL IN (SELECT s FROM {other}.secrets)", "{other}.secrets", ""},
	{"other workspace in nested subqueries", "SELECT * FROM (SELECT * FROM (SELECT * FROM {other}.secrets))", "{other}.secrets", ""},
	{"other workspace in a CTE", "WITH c AS (SELECT * FROM {other}.secrets) SELECT * FROM c", "{other}.secrets", ""},
	{"other workspace in a scalar WITH", "WITH (SELECT any(s) FROM {other}.secrets) AS v SELECT v", "{other}.secrets", ""},
	{"other workspace in UNION", "SELECT action FROM events UNION ALL SELECT s FROM {other}.secrets", "{other}.secrets", ""},
	{"other workspace in EXISTS", "SELECT * FROM events WHERE EXISTS (SELECT 1 FROM {other}.secrets)", "{other}.secrets", ""},
	{"other workspace in ARRAY JOIN", "SELECT * FROM events ARRAY JOIN (SELECT groupArray(s) FROM {other}.secrets) AS x", "{other}.secrets", ""},
	{"other workspace in a joined subquery", "SELECT * FROM events e JOIN (SELECT * FROM {other}.secrets) s USING (action)", "{other}.secrets", ""},
	{"other database, odd casing", "select * FROM DEFAULT.secrets", "DEFAULT.secrets", ""},
	{"system table", "SELECT * FROM system.tables", "system.tables", ""},
	{"system table, odd casing", "SELECT name FROM SYSTEM.databases", "system.databases", ""},
	{"information_schema", "SELECT * FROM information_schema.tables", "information_schema.tables", ""},
	{"joinGet string", "SELECT joinGet('{other}.secrets', 's', 1)", "{other}.secrets", ""},
	{"joinGet identifier", "SELECT joinGet({other}.secrets, 's', 1)", "{other}.secrets", ""},
	{"joinGet computed name", "SELECT joinGet(concat('{other}', '.secrets'), 's', 1)", "joinGet's first argument", ""},
	{"dictGet", "SELECT dictGet('{other}.d', 'a', toUInt64(1))", "{other}.d", ""},
	{"dictGetString", "SELECT dictGetString('d', 'a', toUInt64(1))", "dictionaries are not supported", ""},
	{"in() function form", "SELECT in('{db-secret}', {other}.secrets)", "in()", ""},
	{"notIn() function form", "SELECT notIn('x', {other}.secrets)", "notIn()", ""},
	{"hasColumnInTable", "SELECT hasColumnInTable('{other}', 'secrets', 's')", "hasColumnInTable()", ""},
	{"query parameter as a table", "SELECT * FROM {t:Identifier}", "{t:Identifier}", ""},
	// Statements and clauses.
	{"SETTINGS relaxing a limit", "SELECT * FROM events SETTINGS readonly = 0", "SETTINGS readonly", ""},
	{"SETTINGS in a subquery", "SELECT * FROM (SELECT * FROM events SETTINGS max_result_rows = 0)", "SETTINGS max_result_rows", ""},
	{"FORMAT clause", "SELECT * FROM events FORMAT TSV", "FORMAT TSV", ""},
	{"two statements", "SELECT 1; SELECT * FROM {other}.secrets", "one statement at a time", "{other}.secrets"},
	{"EXPLAIN of a cross-workspace query", "EXPLAIN SELECT * FROM {other}.secrets", "{other}.secrets", ""},
	{"DESCRIBE file()", "DESCRIBE file('{file}', 'LineAsString')", "file()", ""},
	{"DESCRIBE other workspace", "DESC TABLE {other}.secrets", "{other}.secrets", ""},
	{"SHOW TABLES FROM other workspace", "SHOW TABLES FROM {other}", "database {other}", ""},
	{"SHOW CREATE other workspace", "SHOW CREATE TABLE {other}.secrets", "{other}.secrets", ""},
	{"EXISTS other workspace", "EXISTS TABLE {other}.secrets", "{other}.secrets", ""},
	{"INSERT INTO FUNCTION file()", "INSERT INTO FUNCTION file('{dir}/w.txt', 'LineAsString') SELECT 'x'", "file()", ""},
	{"INSERT into the other workspace", "INSERT INTO {other}.secrets SELECT 'x'", "{other}.secrets", ""},
	{"DROP", "DROP TABLE events", "DROP is refused", "a node holds one SELECT query"},
}

// hostileEnv is what the hostile queries are run against.
type hostileEnv struct {
	sys *sluicetest.System
	// admin carries the attacker workspace's admin token: the hostile queries run with it.
	admin      *sluicetest.Clients
	bin        string
	attacker   string // workspace the queries run in
	other      string // database of the victim workspace
	secretFile string
	fileSecret string
	dbSecret   string
	dir        string
}

func (e *hostileEnv) expand(s string) string {
	return strings.NewReplacer("{file}", e.secretFile, "{other}", e.other, "{dir}", e.dir, "{db-secret}", e.dbSecret).Replace(s)
}

const hostileEvents = `SCHEMA >
    timestamp DateTime,
    action String

ENGINE "MergeTree"
ENGINE_SORTING_KEY "timestamp"
`

// The attacker's legitimate pipes: pushing them validates a materialized view (CREATE
// MATERIALIZED VIEW) and a copy (DESCRIBE of its query) in ClickHouse, on either engine.
const hostileTotals = `SCHEMA >
    action String,
    total UInt64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "action"
`

const hostileTotalsMV = `NODE totals
SQL >
    SELECT action, count() AS total FROM events GROUP BY action
TYPE materialized
DATASOURCE totals
`

const hostileTotalsCopy = `NODE only_buys
SQL >
    SELECT action FROM events WHERE action = 'buy'

NODE counted
SQL >
    SELECT action, count() AS total FROM only_buys GROUP BY action
TYPE copy
TARGET_DATASOURCE totals
COPY_SCHEDULE @on-demand
`

const hostileSecrets = `SCHEMA >
    s String

ENGINE "MergeTree"
ENGINE_SORTING_KEY "s"
`

var hostileSeq atomic.Int64

// newHostileEnv pushes a victim workspace holding a secret and an attacker workspace, and
// writes a file holding another secret.
func newHostileEnv(t *testing.T, sys *sluicetest.System) *hostileEnv {
	t.Helper()
	_, bin := sluicetest.Binaries(t)
	var b [8]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	// Workspace databases are per ClickHouse, which the systems of a test binary share.
	n := hostileSeq.Add(1)
	victim := fmt.Sprintf("sec_victim%d", n)
	e := &hostileEnv{sys: sys, bin: bin, attacker: fmt.Sprintf("sec_attacker%d", n), fileSecret: "file-secret-" + tag, dbSecret: "db-secret-" + tag, dir: t.TempDir()}
	e.secretFile = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(e.secretFile, []byte(e.fileSecret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys.EnsureWorkspace(t, victim)
	e.admin = sys.CreateWorkspace(t, e.attacker)
	for ws, files := range map[string]map[string]string{
		victim: {"datasources/secrets.datasource": hostileSecrets},
		e.attacker: {
			"datasources/events.datasource": hostileEvents, "datasources/totals.datasource": hostileTotals,
			"pipes/totals_mv.pipe": hostileTotalsMV, "pipes/totals_copy.pipe": hostileTotalsCopy,
		},
	} {
		if _, err := sys.Catalog.CreateWorkspace(t.Context(), &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, name)
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, stderr, code := cli(t, bin, sys, "push", "--workspace", ws, dir); code != 0 {
			t.Fatalf("push %s: exit %d\n%s", ws, code, stderr)
		}
	}
	resp, err := sys.Catalog.GetWorkspace(t.Context(), &catalogv1.GetWorkspaceRequest{Name: victim})
	if err != nil {
		t.Fatal(err)
	}
	e.other = resp.GetWorkspace().GetDatabase()
	// INSERT ... SELECT: 18.16 does not take inline rows through Exec.
	if _, err := sys.App.Warehouse().Exec(t.Context(), "INSERT INTO "+warehouse.QualifiedName(e.other, "secrets")+" SELECT "+warehouse.QuoteString(e.dbSecret)); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.App.Warehouse().Exec(t.Context(), "INSERT INTO "+sys.DatabaseOf(t, e.attacker)+".events SELECT now(), 'buy'"); err != nil {
		t.Fatal(err)
	}
	return e
}

// state is what no hostile query may change: the victim's rows, the secret file, the
// attacker's resources.
func (e *hostileEnv) state(t *testing.T) string {
	t.Helper()
	res, err := e.sys.App.Warehouse().Query(t.Context(), "SELECT count(), groupArray(s) FROM "+warehouse.QualifiedName(e.other, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(e.secretFile)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(e.secretFile)
	written, _ := os.ReadDir(e.dir)
	ds, _, _ := cli(t, e.bin, e.admin, "datasource", "ls", "--workspace", e.attacker, "--output", "json")
	pipes, _, _ := cli(t, e.bin, e.admin, "pipe", "ls", "--workspace", e.attacker, "--output", "json")
	var names []string
	for _, f := range written {
		names = append(names, f.Name())
	}
	return strings.Join([]string{
		fmt.Sprintf("victim rows: %v", res.Rows),
		"file: " + string(content) + " " + fi.ModTime().Format(time.RFC3339Nano),
		"written files: " + strings.Join(names, ","),
		"attacker data sources: " + ds,
		"attacker pipes: " + pipes,
	}, "\n")
}

// hostilePath runs one hostile query one way and returns its refusal (stdout and stderr
// together), failing the test when it was not refused.
type hostilePath struct {
	name string
	run  func(t *testing.T, e *hostileEnv, q hostileQuery) (refusal string)
}

var filePos = regexp.MustCompile(`hostile\.pipe:\d+:\d+: `)

var hostilePaths = []hostilePath{
	{"sql", func(t *testing.T, e *hostileEnv, q hostileQuery) string {
		stdout, stderr, code := cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, e.expand(q.sql))
		if code == 0 {
			t.Errorf("sluice sql ran it:\n%s", stdout)
		}
		return stdout + stderr
	}},
	{"push", func(t *testing.T, e *hostileEnv, q hostileQuery) string {
		dir := t.TempDir()
		lines := strings.Split(e.expand(q.sql), "\n")
		pipe := "NODE hostile\nSQL >\n    " + strings.Join(lines, "\n    ") + "\n"
		if err := os.MkdirAll(filepath.Join(dir, "pipes"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pipes", "hostile.pipe"), []byte(pipe), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := cli(t, e.bin, e.admin, "push", "--workspace", e.attacker, dir)
		if code == 0 {
			t.Errorf("sluice push accepted it:\n%s", stdout)
		}
		if !filePos.MatchString(stderr) {
			t.Errorf("refusal gives no file:line:col:\n%s", stderr)
		}
		return stdout + stderr
	}},
	// A third path, a pushed copy pipe run by the executor, is added here when Copy Pipes land.
}

// runHostile runs every hostile query through every path against a running system.
func runHostile(t *testing.T, sys *sluicetest.System) {
	e := newHostileEnv(t, sys)
	// The system works: legitimate SQL runs, through both paths.
	if out, stderr, code := cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, "SELECT count() AS n FROM events /* a comment */ WHERE action = $$buy$$"); code != 0 || !strings.Contains(out, "1") {
		t.Fatalf("legitimate sql: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, "SHOW TABLES"); code != 0 || !strings.Contains(out, "events") {
		t.Fatalf("SHOW TABLES: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code := cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, "--max-rows", "2", "SELECT number FROM numbers(10)")
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 2 || !strings.Contains(stderr, "result cut at 2 rows") {
		t.Fatalf("sql --max-rows 2: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = cli(t, e.bin, e.admin, "sql", "--workspace", e.attacker, "SELECT action, sum(total) AS n FROM totals_mv GROUP BY action")
	if code != 0 || !strings.Contains(out, "buy") {
		t.Fatalf("sql reading a pipe: exit %d\n%s%s", code, out, stderr)
	}
	before := e.state(t)
	if len(hostileQueries) < 40 {
		t.Fatalf("only %d hostile queries", len(hostileQueries))
	}
	for _, path := range hostilePaths {
		for _, q := range hostileQueries {
			t.Run(path.name+"/"+q.name, func(t *testing.T) {
				out := path.run(t, e, q)
				want := q.want
				if path.name != "sql" && q.wantPush != "" {
					want = q.wantPush
				}
				if want = e.expand(want); !strings.Contains(out, want) {
					t.Errorf("refusal does not say %q:\n%s", want, out)
				}
				for _, secret := range []string{e.fileSecret, e.dbSecret} {
					if strings.Contains(out, secret) {
						t.Errorf("output holds the secret %s:\n%s", secret, out)
					}
				}
			})
		}
	}
	if after := e.state(t); after != before {
		t.Errorf("hostile queries changed something:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if !strings.Contains(before, e.dbSecret) || !strings.Contains(before, e.fileSecret) {
		t.Errorf("the secrets are not where the test put them:\n%s", before)
	}
}

// TestHostileSQLRefusedOnChDB runs the hostile queries against sluiced on embedded ClickHouse.
func TestHostileSQLRefusedOnChDB(t *testing.T) {
	runHostile(t, sluicetest.Start(t))
}

// TestHostileSQLRefusedOnServer runs them against sluiced on a clickhouse-server process.
func TestHostileSQLRefusedOnServer(t *testing.T) {
	cfg := warehousetest.Server(t)
	runHostile(t, sluicetest.Start(t, sluicetest.WithArgs("-clickhouse-addr", strings.Join(cfg.Addrs, ","))))
}

const hostileParamCopy = `NODE picked
SQL >
    %
    SELECT action, count() AS total FROM {{ TABLE(String(src, 'events')) }} GROUP BY action
TYPE copy
TARGET_DATASOURCE totals
COPY_SCHEDULE @on-demand
`

// TestCopyRenderRefusesHostileParameters covers what a copy run renders (RenderNode, which the
// executor calls): parameters given at run time cannot point a pushed pipe outside its
// workspace either.
func TestCopyRenderRefusesHostileParameters(t *testing.T) {
	sys := sluicetest.Start(t)
	e := newHostileEnv(t, sys)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pipes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pipes", "param_copy.pipe"), []byte(hostileParamCopy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := cli(t, e.bin, e.admin, "push", "--workspace", e.attacker, dir); code != 0 {
		t.Fatalf("push: exit %d\n%s", code, stderr)
	}
	render := func(src string) (string, error) {
		resp, err := sys.Catalog.RenderNode(t.Context(), &catalogv1.RenderNodeRequest{Workspace: e.attacker, Pipe: "param_copy", Parameters: map[string]string{"src": src}})
		return resp.GetSql(), err
	}
	if sql, err := render("events"); err != nil || !strings.Contains(sql, sys.DatabaseOf(t, e.attacker)+".`events`") {
		t.Fatalf("legitimate render: %v\n%s", err, sql)
	}
	for src, want := range map[string]string{
		e.other + ".secrets": e.other + ".secrets",
		"system.tables":      "system.tables",
		"default.secrets":    "default.secrets",
	} {
		sql, err := render(src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("src=%s: rendered %q, %v; want a refusal naming %s", src, sql, err, want)
		}
	}
}
