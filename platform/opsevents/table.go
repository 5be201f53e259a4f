package opsevents

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/platform/chsql"
)

// TableName is the ops log's table in Sluice's own database (-clickhouse-database), and the
// name of the view over it in each workspace's database.
const TableName = "datasources_ops_log"

// Column is a column of datasources_ops_log.
type Column struct{ Name, Type string }

// UserTableColumns are the columns users see (DATAFILES-SPEC §5.1, plus the Options names and
// values and the resource tags), in the spec's order. cpu_time and memory_usage are Nullable:
// NULL where the engine does not report them (chDB, servers before 21.x), not a made-up 0.
var UserTableColumns = []Column{
	{"timestamp", "DateTime"},
	{"event_type", "String"},
	{"datasource_id", "String"},
	{"datasource_name", "String"},
	{"result", "String"},
	{"elapsed_time", "Float32"},
	{"error", "Nullable(String)"},
	{"request_id", "String"},
	{"import_id", "Nullable(String)"},
	{"job_id", "Nullable(String)"},
	{"rows", "Nullable(UInt64)"},
	{"rows_quarantine", "Nullable(UInt64)"},
	{"blocks_ids", "Array(String)"},
	{"operation_id", "String"},
	{"read_rows", "UInt64"},
	{"cpu_time", "Nullable(Float32)"},
	{"memory_usage", "Nullable(UInt64)"},
	{"read_bytes", "UInt64"},
	{"written_rows", "UInt64"},
	{"written_bytes", "UInt64"},
	{"written_rows_quarantine", "UInt64"},
	{"written_bytes_quarantine", "UInt64"},
	{"pipe_id", "String"},
	{"pipe_name", "String"},
	{"release", "String"},
	{"Options.Names", "Array(String)"},
	{"Options.Values", "Array(String)"},
	{"resource_tags", "Array(String)"},
}

// TimestampNSColumn holds the event's timestamp in nanoseconds since the Unix epoch: the
// `timestamp` column users see has whole seconds, and the API orders and pages events by the
// full timestamp. Hidden from the workspace views. (Int64, not DateTime64: servers before 20.1
// have no DateTime64.)
const TimestampNSColumn = "timestamp_ns"

// TimestampNSDefault fills TimestampNSColumn in rows written before the column existed.
const TimestampNSDefault = "toInt64(toUInt32(timestamp)) * 1000000000"

// TableColumns are every column of the table: the workspace and the event id, then the user
// columns, then the full timestamp.
var TableColumns = append(append([]Column{{"workspace", "String"}, {"event_id", "String"}}, UserTableColumns...),
	Column{TimestampNSColumn, "Int64 DEFAULT " + TimestampNSDefault})

// UserColumns are the names of UserTableColumns.
var UserColumns = func() []string {
	out := make([]string, len(UserTableColumns))
	for i, c := range UserTableColumns {
		out[i] = c.Name
	}
	return out
}()

// TableDDL is the CREATE TABLE of the ops log in database db. The sorting key starts with the
// workspace (every read is one workspace's) and then follows DATAFILES-SPEC §5.1 (Data Source,
// timestamp); it also makes the opslog writer's look-up of already written events (by
// workspace, Data Source and timestamp range) read only the granules around its batch. ttl is
// the TTL expression, empty for none (servers before 19.6 have no TTL).
func TableDDL(db, ttl string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n", chsql.QualifiedName(db, TableName))
	for i, c := range TableColumns {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "  %s %s", chsql.QuoteIdent(c.Name), c.Type)
	}
	b.WriteString("\n) ENGINE = MergeTree\nPARTITION BY toYYYYMM(timestamp)\nORDER BY (workspace, datasource_name, timestamp)")
	if ttl != "" {
		b.WriteString("\nTTL " + ttl)
	}
	return b.String()
}

// WorkspaceViewDDL is the statement that makes the ops log one of a workspace's Data Sources:
// the view `<workspaceDB>.datasources_ops_log` shows the user columns of that workspace's own
// events, read from `<opsDB>.datasources_ops_log`. It is idempotent; the table must exist
// (EnsureWorkspaceView makes sure of it).
func WorkspaceViewDDL(opsDB, workspaceDB, workspace string) string {
	cols := make([]string, len(UserColumns))
	for i, c := range UserColumns {
		cols[i] = chsql.QuoteIdent(c)
	}
	return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s AS SELECT %s FROM %s WHERE workspace = %s",
		chsql.QualifiedName(workspaceDB, TableName), strings.Join(cols, ", "),
		chsql.QualifiedName(opsDB, TableName), chsql.QuoteString(workspace))
}
