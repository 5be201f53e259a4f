package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/app"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

const (
	wsuLeaky     = "SCHEMA >\n    `x` String,\n    `y` String\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"x\"\n"
	wsuLeakyCopy = "NODE c\nSQL >\n    SELECT x, y FROM leaky\nTYPE copy\nTARGET_DATASOURCE leaky_copy\nCOPY_SCHEDULE @on-demand\n"
	wsuLeakyMV   = "NODE m\nSQL >\n    SELECT x, y FROM leaky\nTYPE materialized\nDATASOURCE leaky_pop\n"
)

// TestWorkspaceSQLRunsAsWorkspaceUserOnServer runs sluiced against a clickhouse-server with
// -clickhouse-workspace-user: `sluice sql`, copies and populates of a workspace run as its own
// ClickHouse user, which may only use the workspace's database (users.xml allow_databases, as
// 18.16 has no SQL RBAC). The workspace's SQL works; and when a definition that reads another
// workspace is put into a table behind Sluice's back (standing for a hole in Sluice's
// checks), ClickHouse itself refuses to read it for `sluice sql` and for a copy, while Sluice's
// own user would have read the secret.
func TestWorkspaceSQLRunsAsWorkspaceUserOnServer(t *testing.T) {
	cfg := warehousetest.Server(t)
	sys := sluicetest.Start(t, sluicetest.WithArgs("-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-clickhouse-database", warehousetest.WorkspaceUsersOwnDatabase,
		"-clickhouse-workspace-user", warehousetest.WorkspaceUser, "-clickhouse-workspace-password", warehousetest.WorkspacePassword))
	_, bin := sluicetest.Binaries(t)
	ctx := t.Context()
	app, victim := warehousetest.WorkspaceUserWorkspaces[0], warehousetest.WorkspaceUserWorkspaces[1]
	admin := sys.App.Warehouse()
	for _, ws := range []string{app, victim} {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent("ws_"+ws))
		if _, err := sys.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
			t.Fatal(err)
		}
	}
	push := func(ws string, files map[string]string) {
		t.Helper()
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, name)
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, stderr, code := cli(t, bin, sys, "push", "--workspace", ws, dir); code != 0 {
			t.Fatalf("push %s: %s%s", ws, out, stderr)
		}
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	push(victim, map[string]string{"datasources/secrets.datasource": hostileSecrets})
	push(app, map[string]string{
		"datasources/events.datasource": hostileEvents, "datasources/totals.datasource": hostileTotals,
		"pipes/totals_mv.pipe": hostileTotalsMV, "pipes/totals_copy.pipe": hostileTotalsCopy,
		"datasources/leaky.datasource": wsuLeaky, "datasources/leaky_copy.datasource": wsuLeaky,
		"pipes/leaky_copy_pipe.pipe": wsuLeakyCopy, "datasources/leaky_pop.datasource": wsuLeaky,
		"pipes/leaky_mv.pipe": wsuLeakyMV,
	})
	const secret = "workspace-user-secret"
	exec("INSERT INTO ws_" + victim + ".secrets SELECT '" + secret + "'")
	// Before the view exists on these rows: 3 buys and 2 views, then one buy through the view.
	exec("INSERT INTO ws_" + app + ".leaky SELECT 'row', 'plain'")
	exec("INSERT INTO ws_" + app + ".events SELECT now(), arrayJoin(['buy', 'buy', 'buy', 'view', 'view'])")
	wsCLI := func(args ...string) (string, int) {
		out, stderr, code := cli(t, bin, sys, append(args, "--workspace", app)...)
		return out + stderr, code
	}

	// The workspace's SQL works as its user: sluice sql, a copy, a populate.
	if out, code := wsCLI("sql", "SELECT count() AS n FROM events"); code != 0 || !strings.Contains(out, "5") {
		t.Fatalf("sluice sql as the workspace user: %s", out)
	}
	if out, code := wsCLI("pipe", "copy", "run", "totals_copy", "--wait"); code != 0 {
		t.Fatalf("copy as the workspace user: %s", out)
	}
	if out, code := wsCLI("pipe", "populate", "totals_mv", "--wait"); code != 0 {
		t.Fatalf("populate as the workspace user: %s", out)
	}
	// The copy wrote buy=3, the populate buy=3 and view=2 (SummingMergeTree sums them).
	if out, code := wsCLI("sql", "--output", "json", "SELECT action, sum(total) AS n FROM totals GROUP BY action ORDER BY action"); code != 0 || !strings.Contains(out, `"buy"`) || !strings.Contains(out, "6") || !strings.Contains(out, `"view"`) {
		t.Fatalf("totals after the copy and the populate: %s", out)
	}
	// The ops log view reads Sluice's own database with the reader's rights (18.16): the
	// workspace user is allowed that database too, and sees its workspace's rows only.
	sluicetest.Eventually(t, 60*time.Second, "the push events in the ops log", func() bool {
		out, code := wsCLI("sql", "SELECT arraySort(groupUniqArray(datasource_name)) AS names FROM datasources_ops_log")
		return code == 0 && strings.Contains(out, "leaky_pop") && !strings.Contains(out, "secrets")
	})
	out, code := "", 0
	if out, code := wsCLI("pipe", "copy", "run", "leaky_copy_pipe", "--wait"); code != 0 {
		t.Fatalf("copy of leaky: %s", out)
	}

	// Definitions reading another workspace, put into tables behind Sluice's back: a column
	// of the populate's target computed at insert, then a column of the copy's source
	// computed at read.
	exec("ALTER TABLE ws_" + app + ".leaky_pop ADD COLUMN z String MATERIALIZED (SELECT any(s) FROM ws_" + victim + ".secrets)")
	if out, code := wsCLI("pipe", "populate", "leaky_mv", "--wait"); code == 0 || strings.Contains(out, secret) || !strings.Contains(out, "291") {
		t.Errorf("populate into the altered target: exit %d, want a job failed by ClickHouse's refusal (code 291) and no secret:\n%s", code, out)
	}
	exec("ALTER TABLE ws_" + app + ".leaky MODIFY COLUMN y String ALIAS (SELECT any(s) FROM ws_" + victim + ".secrets)")
	if res, err := admin.Query(ctx, "SELECT y FROM ws_"+app+".leaky"); err != nil || !strings.Contains(fmt.Sprint(res.Rows), secret) {
		t.Fatalf("Sluice's own user reads the secret through the altered table (the hole this test stands for): %v %v", res, err)
	}
	out, code = wsCLI("sql", "SELECT x, y FROM leaky")
	if code == 0 || strings.Contains(out, secret) || !strings.Contains(out, "291") {
		t.Errorf("sluice sql through the altered table: exit %d, want ClickHouse's refusal (code 291) and no secret:\n%s", code, out)
	}
	out, code = wsCLI("pipe", "copy", "run", "leaky_copy_pipe", "--wait")
	if code == 0 || strings.Contains(out, secret) || !strings.Contains(out, "291") {
		t.Errorf("copy through the altered table: exit %d, want a job failed by ClickHouse's refusal (code 291) and no secret:\n%s", code, out)
	}
	for _, tbl := range []string{"leaky_copy", "leaky_pop"} {
		res, err := admin.Query(ctx, "SELECT x, y FROM ws_"+app+"."+tbl)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(res.Rows); got != "[[row plain]]" {
			t.Errorf("%s holds %s, want only the row written before the alter", tbl, got)
		}
	}
}

// TestWorkspaceUserNeedsServerAndPlaceholder: the option is refused with embedded ClickHouse
// (one process, no users) and without {workspace} in the name.
func TestWorkspaceUserNeedsServerAndPlaceholder(t *testing.T) {
	for args, want := range map[string]string{
		"-data-dir /tmp/x -clickhouse-workspace-user sluice_{workspace}":                            "needs a ClickHouse server",
		"-data-dir /tmp/x -clickhouse-addr 127.0.0.1:9000 -clickhouse-workspace-user sluice_ws":     "must hold {workspace}",
		"-data-dir /tmp/x -clickhouse-addr 127.0.0.1:9000 -clickhouse-workspace-user s_{workspace}": "",
	} {
		cfg, err := app.ParseConfig(strings.Fields(args))
		if err == nil {
			err = cfg.Validate()
		}
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}
