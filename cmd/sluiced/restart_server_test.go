package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// The project TestServerRestartsAfterPushes changes and removes: a Data Source with
// defaults, a materialized view into a second one, and a third that goes away.
const (
	restartBase = "SCHEMA >\n" +
		"    `id` UInt64,\n" +
		"    `s` String,\n" +
		"    `d` Date DEFAULT toDate('2026-01-01'),\n" +
		"    `up` String MATERIALIZED upper(s),\n" +
		"    `al` String ALIAS concat(s, '!')\n" +
		"ENGINE \"MergeTree\"\n" +
		"ENGINE_PARTITION_KEY \"toYYYYMM(d)\"\n" +
		"ENGINE_SORTING_KEY \"id\"\n"
	restartTotals = "SCHEMA >\n    `s` String,\n    `n` UInt64\nENGINE \"SummingMergeTree\"\nENGINE_SORTING_KEY \"s\"\n"
	restartMV     = "NODE totals\nSQL >\n    SELECT s, count() AS n FROM base GROUP BY s\nTYPE materialized\nDATASOURCE totals\n"
	restartExtra  = "SCHEMA >\n    `k` UInt64,\n    `v` String DEFAULT 'x'\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"k\"\n"
)

// TestServerRestartsAfterPushes pushes, changes and removes Data Sources in a workspace of a
// clickhouse-server, tries the definitions that used to leave tables depending on other tables
// (an ALIAS reading a Data Source that a later push removes, one reading another workspace),
// and restarts the server after each step: it starts every time, with every row.
func TestServerRestartsAfterPushes(t *testing.T) {
	srv := warehousetest.NewDedicatedServer(t)
	sys := sluicetest.Start(t, sluicetest.WithArgs("-clickhouse-addr", strings.Join(srv.Config().Addrs, ",")))
	_, bin := sluicetest.Binaries(t)
	ctx := t.Context()
	for _, ws := range []string{"rs_app", "rs_victim"} {
		if _, err := sys.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := warehouse.OpenNative(ctx, srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	db := strings.Trim(sys.DatabaseOf(t, "rs_app"), "`")
	victim := strings.Trim(sys.DatabaseOf(t, "rs_victim"), "`")

	push := func(ws string, files map[string]string, args ...string) (string, int) {
		t.Helper()
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stdout, stderr, code := cli(t, bin, sys, append(append([]string{"push", "--workspace", ws}, args...), dir)...)
		return stdout + stderr, code
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// state is what every restart must keep: the workspace's tables and their rows, read
	// through Sluice (which reconnects) and through a fresh connection.
	state := func() string {
		t.Helper()
		var out string
		sluicetest.Eventually(t, 60*time.Second, "sluiced reads the workspace again", func() bool {
			res, err := sys.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: "rs_app", Sql: "SHOW TABLES"})
			if err != nil {
				return false
			}
			var tables []string
			for _, r := range res.GetRows() {
				tables = append(tables, r.GetValues()[0].GetStringValue())
			}
			out = "tables: " + strings.Join(tables, ",")
			return true
		})
		conn, err := warehouse.OpenNative(ctx, srv.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, q := range []string{
			"SELECT count(), sum(id), arraySort(groupUniqArray(up)), arraySort(groupUniqArray(al)) FROM " + warehouse.QualifiedName(db, "base"),
			"SELECT s, sum(n) FROM " + warehouse.QualifiedName(db, "totals") + " GROUP BY s ORDER BY s",
			"SELECT count(), arraySort(groupUniqArray(v)) FROM " + warehouse.QualifiedName(db, "extra"),
			"SELECT groupArray(s) FROM " + warehouse.QualifiedName(victim, "secrets"),
		} {
			res, err := conn.Query(ctx, q)
			if err != nil {
				out += fmt.Sprintf("\n%s: %v", q[strings.LastIndex(q, "FROM")+5:], strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "UNKNOWN_TABLE"))
				continue
			}
			out += fmt.Sprintf("\n%v", res.Rows)
		}
		return out
	}
	restart := func(step, want string) {
		t.Helper()
		srv.Restart(t)
		if got := state(); got != want {
			t.Fatalf("after restart %s:\n got %s\nwant %s", step, got, want)
		}
	}

	// 1. The project, with rows.
	project := map[string]string{
		"datasources/base.datasource": restartBase, "datasources/totals.datasource": restartTotals,
		"datasources/extra.datasource": restartExtra, "pipes/totals_mv.pipe": restartMV,
	}
	if out, code := push("rs_app", project); code != 0 {
		t.Fatalf("push: %s", out)
	}
	if out, code := push("rs_victim", map[string]string{"datasources/secrets.datasource": hostileSecrets}); code != 0 {
		t.Fatalf("push victim: %s", out)
	}
	exec("INSERT INTO " + warehouse.QualifiedName(victim, "secrets") + " SELECT 'victim-secret'")
	exec("INSERT INTO " + warehouse.QualifiedName(db, "base") + " (id, s) SELECT number, if(number % 2 = 0, 'a', 'b') FROM system.numbers LIMIT 100")
	exec("INSERT INTO " + warehouse.QualifiedName(db, "extra") + " (k) SELECT number FROM system.numbers LIMIT 10")
	want := state()
	if !strings.Contains(want, "[[100 4950 [A B] [a! b!]]]") || !strings.Contains(want, "[[a 50] [b 50]]") || !strings.Contains(want, "[[10 [x]]]") {
		t.Fatalf("the project's rows:\n%s", want)
	}
	restart("after the first push", want)

	// 2. A change: a new column with a default, a changed ALIAS, a removed Data Source.
	// (The new column goes after an ordinary one: 18.16 cannot add a column after an ALIAS.)
	changedBase := strings.Replace(restartBase, "`al` String ALIAS concat(s, '!')", "`al` String ALIAS concat(s, '?')", 1)
	changedBase = strings.Replace(changedBase, "`d` Date DEFAULT toDate('2026-01-01'),", "`d` Date DEFAULT toDate('2026-01-01'),\n    `n` UInt64 DEFAULT length(s) + id,", 1)
	delete(project, "datasources/extra.datasource")
	project["datasources/base.datasource"] = changedBase
	if out, code := push("rs_app", project, "--prune"); code != 0 {
		t.Fatalf("push the change: %s", out)
	}
	exec("INSERT INTO " + warehouse.QualifiedName(db, "base") + " (id, s) SELECT 100 + number, 'c' FROM system.numbers LIMIT 10")
	want = state()
	if !strings.Contains(want, "[[110 5995 [A B C] [a? b? c?]]]") || !strings.Contains(want, "[[a 50] [b 50] [c 10]]") || !strings.Contains(want, "extra`: true") {
		t.Fatalf("after the change:\n%s", want)
	}
	restart("after a change and a removal", want)

	// 3. Definitions that would make a table depend on another at load time are refused, so
	// removing what they would read can never stop the server.
	for name, src := range map[string]string{
		"reading a Data Source of the workspace": "SCHEMA >\n    `x` String,\n    `y` String ALIAS (SELECT any(s) FROM " + db + ".base)\n",
		"reading another workspace":              "SCHEMA >\n    `x` String,\n    `y` String DEFAULT (SELECT any(s) FROM " + victim + ".secrets)\n",
		"reading a table as a set":               "SCHEMA >\n    `x` String,\n    `y` UInt8 MATERIALIZED x IN " + db + ".base\n",
	} {
		files := map[string]string{"datasources/dos.datasource": src}
		for k, v := range project {
			files[k] = v
		}
		if out, code := push("rs_app", files); code == 0 || !strings.Contains(out, "dos.datasource:3:") {
			t.Errorf("%s: not refused at its file:line:column:\n%s", name, out)
		}
	}
	restart("after the refused definitions", want)

	// 4. Removing the Data Source the refused definitions would have read, and its view.
	delete(project, "datasources/base.datasource")
	delete(project, "pipes/totals_mv.pipe")
	if out, code := push("rs_app", project, "--prune"); code != 0 {
		t.Fatalf("push the removal: %s", out)
	}
	want = state()
	if !strings.Contains(want, "tables: datasources_ops_log,jobs_log,totals,totals_quarantine\n") || !strings.Contains(want, "base`: true") || !strings.Contains(want, "[[a 50] [b 50] [c 10]]") || !strings.Contains(want, "[[[victim-secret]]]") {
		t.Fatalf("after the removal:\n%s", want)
	}
	restart("after removing a Data Source", want)
	restart("a second time", want)
}
