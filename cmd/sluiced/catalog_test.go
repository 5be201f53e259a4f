package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/services/catalog/corpustest"
)

// problem matches a problem line of a refused push: file:line:column: message.
var problem = regexp.MustCompile(`^\S+\.(pipe|datasource|incl):\d+:\d+: `)

// cli runs the real sluice binary against target (its address and token) and returns stdout,
// stderr and the exit code.
func cli(t *testing.T, bin string, target cliTarget, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = target.CLIEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("sluice %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// TestCorpusPushThroughCLI pushes every project folder of the corpus with `sluice push`. A
// folder whose resources are all present deploys; a folder with a missing resource is refused
// with errors that each name a missing resource (and nothing else), and leaves the workspace
// empty. The one exception is a folder whose SQL ClickHouse 26 itself refuses, named below
// with the engine's error.
func TestCorpusPushThroughCLI(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	expect := map[string][]string{ // project folder → "" (deploys) or names the refusal must mention
		"linuxfoundation__crowd.dev/services/libs/tinybird":                                    {"activities_backup_cleaned", "activityRelations", "members_sorted"},
		"mfts__papermark/lib/tinybird":                                                         {"page_views__v2"},
		"tinybirdco__ai-analytics-template/tinybird":                                           nil,
		"tinybirdco__log-analytics-starter-kit/tinybird":                                       {"errors_per_function_per_hour"},
		"tinybirdco__logs-explorer-template/tinybird":                                          {"logs_range_15m"},
		"tinybirdco__use-case-examples/add_column_BQ_ds":                                       {"bq_pypi_data_new"},
		"tinybirdco__use-case-examples/add_new_column_to_a_materialized_view":                  {"analytics_sessions_mv1", "analytics_hits"},
		"tinybirdco__use-case-examples/add_new_column_with_values":                             {"analytics_pages_mv1", "analytics_events1"},
		"tinybirdco__use-case-examples/alter_default_value_in_column":                          nil,
		"tinybirdco__use-case-examples/change_column_type_landing_and_recover_quarantine_data": {"v1_0_2.analytics_events"},
		"tinybirdco__use-case-examples/change_copy_pipe":                                       {"copy_bots_snapshot", "analytics_events"},
		"tinybirdco__use-case-examples/change_copy_pipe_time_granularity":                      {"copy_bots_snapshot"},
		"tinybirdco__use-case-examples/change_sorting_key_kafka_data_source":                   {"product_events_mv"},
		"tinybirdco__use-case-examples/change_sorting_key_landing_data_source":                 {"v2_0_1.analytics_events"},
		"tinybirdco__use-case-examples/create_a_materialized_view_batch_ingest":                {"analytics_events"},
		"tinybirdco__use-case-examples/create_pipe_sink":                                       {"analytics_events"},
		"tinybirdco__use-case-examples/forward_deployment":                                     nil,
		"tinybirdco__use-case-examples/iterate_dynamodb":                                       nil,
		"tinybirdco__use-case-examples/iterating_api_endpoint":                                 {"analytics_sessions_mv"},
		"tinybirdco__use-case-examples/recover_data_from_quarantine":                           {"analytics_events_quarantine"},
		"tinybirdco__web-analytics-starter-kit/tinybird":                                       {"analytics_hits"},
		"tinybirdco__demo-cdc-users-airline/kits/users/pg":                                     {"AMBIGUOUS_COLUMN_NAME", "update_batch_max_ts"},
		"CrowdDotDev__insights-tinybird/tinybird":                                              nil,
		"tinybirdco__tinynest/tinybird":                                                        nil,
	}
	// Folders whose resources are all present but whose SQL ClickHouse 26 refuses: the copy
	// node selects `*, coalesce(new_max_ts, 0) AS batch_max_updated` over rows that already
	// have batch_max_updated, two columns of one name, which 26.7 refuses in a UNION.
	engineRefuses := map[string]bool{"tinybirdco__demo-cdc-users-airline/kits/users/pg": true}
	// What a refusal for a missing resource says; any other problem fails the test.
	missing := regexp.MustCompile(`missing resource:|unknown Data Source or Pipe|is in another database|cannot be read: its file`)
	root := corpustest.Dir(t)
	var folders []string
	for f := range expect {
		folders = append(folders, f)
	}
	sort.Strings(folders)
	deployed := 0
	for i, folder := range folders {
		t.Run(strings.ReplaceAll(folder, "/", "_"), func(t *testing.T) {
			ws := fmt.Sprintf("corpus_%d", i)
			sys.EnsureWorkspace(t, ws)
			stdout, stderr, code := cli(t, bin, sys, "push", "--workspace", ws, filepath.Join(root, folder))
			want := expect[folder]
			if want == nil {
				if code != 0 {
					t.Fatalf("push refused (exit %d):\n%s", code, stderr)
				}
				if !strings.Contains(stdout, "change(s) applied") {
					t.Fatalf("push output:\n%s", stdout)
				}
				out, _, code := cli(t, bin, sys, "datasource", "ls", "--workspace", ws, "--output", "json")
				var ls struct {
					Datasources []struct{ Name string } `json:"datasources"`
				}
				if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || len(ls.Datasources) == 0 {
					t.Fatalf("datasource ls after push: exit %d\n%s", code, out)
				}
				deployed++
				return
			}
			if code == 0 {
				t.Fatalf("push of a folder with missing dependencies succeeded:\n%s", stdout)
			}
			for _, name := range want {
				if !strings.Contains(stderr, name) {
					t.Errorf("refusal does not name %q:\n%s", name, stderr)
				}
			}
			if !engineRefuses[folder] {
				for _, line := range strings.Split(stderr, "\n") {
					if problem.MatchString(line) && !missing.MatchString(line) {
						t.Errorf("a folder refused for a missing resource has another problem: %s", line)
					}
				}
			}
			if !strings.Contains(stderr, ":") || !strings.Contains(stderr, ".pipe:") && !strings.Contains(stderr, ".datasource:") {
				t.Errorf("refusal has no file:line:col:\n%s", stderr)
			}
			// Nothing was created.
			out, _, _ := cli(t, bin, sys, "datasource", "ls", "--workspace", ws, "--output", "json")
			if strings.Contains(out, `"name"`) {
				t.Errorf("a refused push left Data Sources behind:\n%s", out)
			}
		})
	}
	want := 0
	for _, names := range expect {
		if names == nil {
			want++
		}
	}
	if deployed != want {
		t.Errorf("%d corpus folders deployed, want %d", deployed, want)
	}
}

const cliEvents = `DESCRIPTION >
    Events from the shop.

SCHEMA >
    timestamp DateTime,
    action LowCardinality(String),
    amount Int64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
`

const cliTotals = `SCHEMA >
    action LowCardinality(String),
    total Int64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "action"
`

const cliMV = `NODE totals
SQL >
    SELECT action, sum(amount) AS total FROM events GROUP BY action
TYPE materialized
DATASOURCE totals
`

func TestCatalogVerbsThroughCLI(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	// The shop's admin token is the CLI's, as for a user of the workspace.
	shop := sys.CreateWorkspace(t, "shop")
	dir := t.TempDir()
	for name, content := range map[string]string{
		"datasources/events.datasource": cliEvents, "datasources/totals.datasource": cliTotals, "pipes/totals_mv.pipe": cliMV,
	} {
		p := filepath.Join(dir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		out, stderr, code := cli(t, bin, shop, append(args, "--workspace", "shop")...)
		if code != 0 {
			t.Fatalf("sluice %v: exit %d\n%s", args, code, stderr)
		}
		return out
	}
	if out := run("push", "--dry-run", dir); !strings.Contains(out, "dry run: 3 change(s) planned") {
		t.Fatalf("dry run:\n%s", out)
	}
	if out, _, _ := cli(t, bin, shop, "datasource", "ls", "--workspace", "shop"); strings.Contains(out, "events") {
		t.Fatalf("dry run deployed:\n%s", out)
	}
	if out := run("push", dir); !strings.Contains(out, "3 change(s) applied") {
		t.Fatalf("push:\n%s", out)
	}
	if out := run("push", dir); !strings.Contains(out, "nothing to do") {
		t.Fatalf("re-push:\n%s", out)
	}
	// Every call that changes nothing applies --timeout: one too short to answer in fails the
	// command, naming the deadline.
	for _, args := range [][]string{{"datasource", "show", "events"}, {"pipe", "show", "totals_mv"}, {"graph"}} {
		if _, stderr, code := cli(t, bin, shop, append(args, "--workspace", "shop", "--timeout", "1ns")...); code == 0 || !strings.Contains(strings.ToLower(stderr), "deadline") {
			t.Errorf("sluice %v --timeout 1ns: exit %d, want a failure naming the deadline:\n%s", args, code, stderr)
		}
	}
	// The push is in the workspace's datasources_ops_log, once per Data Source created, and the
	// no-op re-push added nothing.
	var events string
	sluicetest.Eventually(t, 20*time.Second, "create events in datasources_ops_log", func() bool {
		events = run("sql", "SELECT event_type, datasource_name, result FROM datasources_ops_log ORDER BY datasource_name")
		return strings.Count(events, "create") == 2
	})
	if !regexp.MustCompile(`create\s+events\s+ok`).MatchString(events) || !regexp.MustCompile(`create\s+totals\s+ok`).MatchString(events) {
		t.Fatalf("ops log:\n%s", events)
	}
	if out := run("datasource", "show", "events"); !strings.Contains(out, "Events from the shop.") || !strings.Contains(out, "PARTITION BY (toYYYYMM(timestamp))") {
		t.Fatalf("datasource show:\n%s", out)
	}
	if out := run("pipe", "show", "totals_mv"); !strings.Contains(out, "NODE totals (materialized) reads: events") || !strings.Contains(out, "target: totals") {
		t.Fatalf("pipe show:\n%s", out)
	}
	if out := run("graph", "--format", "mermaid"); !strings.Contains(out, "n_events -->|triggers| n_totals_mv") || !strings.Contains(out, "n_totals_mv -->|materializes| n_totals") {
		t.Fatalf("graph:\n%s", out)
	}
	if out := run("graph", "--format", "dot", "totals"); !strings.Contains(out, `"totals_mv" -> "totals"`) {
		t.Fatalf("graph dot:\n%s", out)
	}
	// Rows inserted into events flow through the view; sql reads them back.
	if _, err := sys.App.Warehouse().Exec(t.Context(), "INSERT INTO "+sys.DatabaseOf(t, "shop")+".events VALUES (now(), 'buy', 3), (now(), 'buy', 4)"); err != nil {
		t.Fatal(err)
	}
	out := run("sql", "SELECT action, sum(total) AS t FROM totals GROUP BY action", "--output", "json")
	var res struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Rows) != 1 || res.Rows[0]["t"] != "7" {
		t.Fatalf("sql: %v\n%s", err, out)
	}
	_, stderr, code := cli(t, bin, shop, "sql", "DROP TABLE events", "--workspace", "shop")
	if code == 0 || !strings.Contains(stderr, "DROP is refused") {
		t.Fatalf("sql DROP: exit %d %s", code, stderr)
	}
	// A file error names file, line and column, and the push changes nothing.
	if err := os.WriteFile(filepath.Join(dir, "pipes", "bad.pipe"), []byte("NODE n\nSQL >\n    SELECT * FROM nowhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = cli(t, bin, shop, "push", dir, "--workspace", "shop")
	if code == 0 || !strings.Contains(stderr, "pipes/bad.pipe:3:19:") || !strings.Contains(stderr, `"nowhere"`) {
		t.Fatalf("bad push: exit %d\n%s", code, stderr)
	}
}
