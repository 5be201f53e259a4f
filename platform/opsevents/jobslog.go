package opsevents

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/chsql"
)

// JobsLogTable is the service Data Source `tinybird.jobs_log`: one row per job, its latest
// state, kept by the opslog service from the job records (the job system's sluice_jobs KV
// bucket, platform/jobs) in Sluice's database, with a view per workspace like the ops log's.
const JobsLogTable = "jobs_log"

// jobsLogUserColumns are the columns of DATAFILES-SPEC §5.3 that users see; ts is the time
// type (DateTime64(3), or DateTime on servers without it).
func jobsLogUserColumns(ts string) []Column {
	return []Column{
		{"job_id", "String"},
		{"job_type", "String"},
		{"status", "String"},
		{"error", "Nullable(String)"},
		{"request_id", "String"},
		{"pipe_id", "String"},
		{"pipe_name", "String"},
		{"datasource_id", "String"},
		{"datasource_name", "String"},
		{"created_at", ts},
		{"started_at", "Nullable(" + ts + ")"},
		{"updated_at", ts},
		{"job_metadata", "String"},
	}
}

// JobsLogColumns are the table's column names in insert order: the workspace first.
var JobsLogColumns = func() []string {
	out := []string{"workspace"}
	for _, c := range jobsLogUserColumns("") {
		out = append(out, c.Name)
	}
	return out
}()

// JobsLogDDL is the table: ReplacingMergeTree on updated_at, so that the rows of every state a
// job went through collapse to its latest (reads use FINAL), also when a row is written twice.
func JobsLogDDL(db string, dateTime64 bool, ttl string) string {
	ts := "DateTime"
	if dateTime64 {
		ts = "DateTime64(3)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n  `workspace` String", chsql.QualifiedName(db, JobsLogTable))
	for _, c := range jobsLogUserColumns(ts) {
		fmt.Fprintf(&b, ",\n  %s %s", chsql.QuoteIdent(c.Name), c.Type)
	}
	b.WriteString("\n) ENGINE = ReplacingMergeTree(updated_at)\nPARTITION BY toYYYYMM(created_at)\nORDER BY (workspace, job_id)")
	if ttl != "" {
		b.WriteString("\nTTL " + ttl)
	}
	return b.String()
}

// JobsLogViewDDL is the view `<workspaceDB>.jobs_log`: the workspace's jobs, each once.
func JobsLogViewDDL(opsDB, workspaceDB, workspace string) string {
	cols := make([]string, 0, len(JobsLogColumns)-1)
	for _, c := range JobsLogColumns[1:] {
		cols = append(cols, chsql.QuoteIdent(c))
	}
	return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s AS SELECT %s FROM %s FINAL WHERE workspace = %s",
		chsql.QualifiedName(workspaceDB, JobsLogTable), strings.Join(cols, ", "),
		chsql.QualifiedName(opsDB, JobsLogTable), chsql.QuoteString(workspace))
}

// JobsLogRow is the table row of a job record, in JobsLogColumns order. Resource ids are not in
// job records: pipe_id and datasource_id hold the names.
func JobsLogRow(j *schedulerv1.Job) []any {
	kind := strings.ToLower(strings.TrimPrefix(j.GetKind().String(), "JOB_KIND_"))
	status := strings.ToLower(strings.TrimPrefix(j.GetStatus().String(), "JOB_STATUS_"))
	var errText any
	if m := j.GetError().GetMessage(); m != "" {
		errText = m
	}
	var started any
	if j.GetStartTime() != nil {
		started = j.GetStartTime().AsTime().UTC()
	}
	updated := j.GetUpdateTime().AsTime().UTC()
	if j.GetUpdateTime() == nil {
		updated = j.GetCreateTime().AsTime().UTC()
	}
	meta := map[string]any{}
	if len(j.GetParameters()) > 0 {
		meta["parameters"] = j.GetParameters()
	}
	if j.GetJobTimestamp() != nil {
		meta["job_timestamp"] = j.GetJobTimestamp().AsTime().UTC().Format(time.DateTime)
	}
	if et := j.GetExecutionType(); et != schedulerv1.ExecutionType_EXECUTION_TYPE_UNSPECIFIED {
		meta["execution_type"] = strings.ToLower(strings.TrimPrefix(et.String(), "EXECUTION_TYPE_"))
	}
	if m := j.GetMode(); m != commonv1.CopyMode_COPY_MODE_UNSPECIFIED {
		meta["mode"] = strings.ToLower(strings.TrimPrefix(m.String(), "COPY_MODE_"))
	}
	if p := j.GetProgress(); p != nil {
		if b, err := protojson.Marshal(p); err == nil {
			meta["progress"] = json.RawMessage(b)
		}
	}
	if j.GetFinishTime() != nil {
		meta["finished_at"] = j.GetFinishTime().AsTime().UTC().Format("2006-01-02 15:04:05.000")
	}
	metaJSON, _ := json.Marshal(meta)
	return []any{
		j.GetWorkspace(), j.GetId(), kind, status, errText, j.GetId(),
		j.GetPipe(), j.GetPipe(), j.GetTargetDatasource(), j.GetTargetDatasource(),
		j.GetCreateTime().AsTime().UTC(), started, updated, string(metaJSON),
	}
}
