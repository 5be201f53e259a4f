package template

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// TestCorpusDependencies renders every corpus node (check mode and with
// realistic parameters), analyzes the SQL with chsql, and checks the
// dependencies of a handful of known nodes.
func TestCorpusDependencies(t *testing.T) {
	type key struct{ file, node string }
	want := map[key][]string{
		{"members_sorted_copy_pipe.pipe", "github_usernames_array"}:                                    {"memberIdentities"},
		{"members_sorted_copy_pipe.pipe", "members_pre_filter"}:                                        {"activityRelations", "github_usernames_array", "members", "members_public_names_ds"},
		{"pull_request_analysis_snapshot_merger_copy.pipe", "realtime_snapshot"}:                       {"pull_request_analyzed_MV_ds", "pull_requests_analyzed"},
		{"pull_request_analysis_snapshot_merger_copy.pipe", "historical_snapshot"}:                     {"pull_requests_analyzed", "realtime_snapshot"},
		{"pull_request_analysis_snapshot_merger_copy.pipe", "merge_realtime_and_historical_snapshots"}: {"historical_snapshot", "realtime_snapshot"},
		{"get_total_average_page_duration.pipe", "endpoint"}:                                           {"page_views__v3"},
		{"contributions_with_local_time.pipe", "members_with_location_information"}:                    {"country_mapping_array", "members_sorted"},
		{"contributions_with_local_time.pipe", "result"}:                                               {"activityRelations_deduplicated_cleaned_bucket_union", "members_with_location_information"},
		{"security_deduplicated_merged_copy_pipe.pipe", "security_deduplicated_merged_copy_pipe_1"}:    {"evaluation_controlId_category_mapz", "repositories", "securityInsightsEvaluationAssessments", "securityInsightsEvaluations"},
		{"security_deduplicated_merged_copy_pipe.pipe", "evaluation_controlId_category_mapz"}:          nil,
		{"tenant_actions.pipe", "tenant_actions_node"}:                                                 {"analytics_events"},
		{"sync_analytics_events.pipe", "start_syncing"}:                                                {"v1_0_2.analytics_events"},
		{"trend.pipe", "endpoint"}:                                                                     {"hits", "timeseries"},
		{"log_timeseries.pipe", "endpoint"}:                                                            {"error_monitoring_node", "hour_intervals"},
		{"active_contributors.pipe", "maintainers_count"}:                                              {"maintainers_roles_copy_ds", "segments_filtered_by_collection"},
	}
	wantFuncs := map[key][]string{
		{"random_data_generator.pipe", "generate_random_events"}: {"numbers"},
		{"populate.pipe", "populate_users"}:                      {"generateRandom"},
	}
	seen := map[key]bool{}
	pipes := map[*datafile.Pipe]map[string]bool{}
	opts := RenderOptions{JobTimestamp: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}
	for _, cn := range corpusPipes(t) {
		earlier := pipes[cn.pipe]
		if earlier == nil {
			earlier = map[string]bool{}
			pipes[cn.pipe] = earlier
		}
		tpl, err := Parse(cn.node.SQL)
		if err != nil {
			t.Fatalf("%s %s: %v", cn.file, cn.node.Name, err)
		}
		checkOpts := opts
		checkOpts.Check = true
		for _, mode := range []struct {
			name   string
			params map[string]string
			opts   RenderOptions
		}{
			{"check", nil, checkOpts},
			{"realistic", realisticParams(tpl.Parameters()), opts},
		} {
			sql, err := tpl.Render(mode.params, mode.opts)
			if err != nil {
				t.Errorf("%s %s (%s): %v", cn.file, cn.node.Name, mode.name, err)
				continue
			}
			a, err := chsql.Analyze(sql, earlier)
			if err != nil {
				t.Errorf("%s %s (%s): analyze: %v\n%s", cn.file, cn.node.Name, mode.name, err, sql)
				continue
			}
			if a.Statements != 1 || !a.Kind.ReadOnly() {
				t.Errorf("%s %s: %d statements of kind %q", cn.file, cn.node.Name, a.Statements, a.Kind)
			}
			if cn.node.Type == datafile.NodeMaterialized {
				if _, ok := a.LeftTable(); !ok {
					t.Errorf("%s %s: materialized node without a left table", cn.file, cn.node.Name)
				}
			}
			if mode.name != "realistic" {
				continue
			}
			k := key{baseName(cn.file), cn.node.Name}
			if w, ok := want[k]; ok {
				seen[k] = true
				if got := a.Dependencies(); !reflect.DeepEqual(got, w) {
					t.Errorf("%s %s: dependencies %q, want %q\n%s", cn.file, cn.node.Name, got, w, sql)
				}
			}
			if w, ok := wantFuncs[k]; ok {
				seen[k] = true
				var got []string
				for _, r := range a.TableFunctions() {
					got = append(got, r.Name)
				}
				if !reflect.DeepEqual(got, w) {
					t.Errorf("%s %s: table functions %q, want %q", cn.file, cn.node.Name, got, w)
				}
			}
		}
		earlier[cn.node.Name] = true
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("expected node not found in corpus: %v", k)
		}
	}
	for k := range wantFuncs {
		if !seen[k] {
			t.Errorf("expected node not found in corpus: %v", k)
		}
	}
}

func baseName(p string) string {
	return p[strings.LastIndexAny(p, `/\`)+1:]
}
