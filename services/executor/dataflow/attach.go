package dataflow

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// The attach fallback. Servers without `MOVE PARTITION ... TO TABLE` (before 19.17) can only
// copy a staged partition into its Data Source (`ATTACH PARTITION ... FROM`) and then drop it
// from staging: two statements, so a crash between them leaves the partition in both tables,
// and a retry must find out whether the attach happened before doing it again. The helpers
// below give the caller what it needs for that: the state of the Data Source's partition
// before the attach (PartitionState), the attach under a known query id with the server's
// query log on (AttachPartition), and afterwards what the server says about that query
// (AttachOutcome). The caller records the first two before attaching (see
// services/executor/commit.go).

// PartitionState is a Data Source partition's parts as they are before an attach.
type PartitionState struct {
	// Parts are the names of the partition's active parts.
	Parts []string
	// MaxBlock is the highest block number of the partition's parts (active or not): every
	// part written later, by the attach or by anyone else, has higher block numbers.
	MaxBlock int64
}

// PartitionState reads the parts of one partition of a Data Source of the flow.
func (d *Delta) PartitionState(ctx context.Context, table, partition string) (PartitionState, error) {
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT name, active, max_block_number FROM system.parts WHERE database = %s AND table = %s AND partition_id = %s",
		warehouse.QuoteString(d.flow.Database), warehouse.QuoteString(table), warehouse.QuoteString(partition)))
	if err != nil {
		return PartitionState{}, fmt.Errorf("parts of %s partition %s: %w", table, partition, err)
	}
	var st PartitionState
	for _, r := range res.Rows {
		if warehouse.Uint64(r[1]) == 1 {
			st.Parts = append(st.Parts, fmt.Sprint(r[0]))
		}
		st.MaxBlock = max(st.MaxBlock, warehouse.Int64(r[2]))
	}
	sort.Strings(st.Parts)
	return st, nil
}

// RowsAbove counts the rows of the partition's active parts that hold blocks above maxBlock:
// what was written into the partition since a PartitionState (merged parts that also hold
// older blocks count whole, so this is an upper bound of the rows written since).
func (d *Delta) RowsAbove(ctx context.Context, table, partition string, maxBlock int64) (uint64, error) {
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT sum(rows) FROM system.parts WHERE database = %s AND table = %s AND partition_id = %s AND active AND max_block_number > %d",
		warehouse.QuoteString(d.flow.Database), warehouse.QuoteString(table), warehouse.QuoteString(partition), maxBlock))
	if err != nil {
		return 0, fmt.Errorf("parts of %s partition %s: %w", table, partition, err)
	}
	if len(res.Rows) != 1 {
		return 0, nil
	}
	return warehouse.Uint64(res.Rows[0][0]), nil
}

// Part is a data part as system.parts describes it: enough to recognise an attached copy of a
// staged part (ATTACH PARTITION ... FROM links the same files, so the sizes and the level are
// the staged part's; the block numbers are new, one block per attached part).
type Part struct {
	Name                     string
	MinBlock, MaxBlock       int64
	Level                    uint64
	Rows                     uint64
	Compressed, Uncompressed uint64
	MarksBytes               uint64
}

// SameFiles reports whether p could be an attached copy of staged part s.
func (p Part) SameFiles(s Part) bool {
	return p.MinBlock == p.MaxBlock && p.Level == s.Level && p.Rows == s.Rows &&
		p.Compressed == s.Compressed && p.Uncompressed == s.Uncompressed && p.MarksBytes == s.MarksBytes
}

func (d *Delta) parts(ctx context.Context, table, partition, extra string) ([]Part, error) {
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT name, min_block_number, max_block_number, level, rows, data_compressed_bytes, data_uncompressed_bytes, marks_bytes FROM system.parts "+
			"WHERE database = %s AND table = %s AND partition_id = %s AND active%s",
		warehouse.QuoteString(d.flow.Database), warehouse.QuoteString(table), warehouse.QuoteString(partition), extra))
	if err != nil {
		return nil, fmt.Errorf("parts of %s partition %s: %w", table, partition, err)
	}
	out := make([]Part, 0, len(res.Rows))
	for _, r := range res.Rows {
		out = append(out, Part{Name: fmt.Sprint(r[0]), MinBlock: warehouse.Int64(r[1]), MaxBlock: warehouse.Int64(r[2]), Level: warehouse.Uint64(r[3]), Rows: warehouse.Uint64(r[4]),
			Compressed: warehouse.Uint64(r[5]), Uncompressed: warehouse.Uint64(r[6]), MarksBytes: warehouse.Uint64(r[7])})
	}
	return out, nil
}

// PartContent is a fingerprint of the rows of one part of a Data Source of the flow (staging:
// of its staging table): their count and the sum of their hashes.
func (d *Delta) PartContent(ctx context.Context, table string, staging bool, part string) (string, error) {
	tbl := d.table(table)
	if staging {
		tbl = d.Staging(table)
	}
	res, err := d.conn.Query(ctx, fmt.Sprintf("SELECT toString(count()), toString(sum(cityHash64(*))) FROM %s WHERE _part = %s", tbl, warehouse.QuoteString(part)))
	if err != nil {
		return "", fmt.Errorf("rows of part %s of %s: %w", part, table, err)
	}
	if len(res.Rows) != 1 {
		return "", fmt.Errorf("rows of part %s of %s: no answer", part, table)
	}
	return fmt.Sprint(res.Rows[0][0]) + "/" + fmt.Sprint(res.Rows[0][1]), nil
}

// StagedParts are the active parts of a staged partition.
func (d *Delta) StagedParts(ctx context.Context, m Move) ([]Part, error) {
	return d.parts(ctx, d.staging[m.Table], m.PartitionID, "")
}

// PartsAbove are the active parts of a Data Source's partition that hold blocks above
// maxBlock: what was written into it since a PartitionState.
func (d *Delta) PartsAbove(ctx context.Context, table, partition string, maxBlock int64) ([]Part, error) {
	return d.parts(ctx, table, partition, fmt.Sprintf(" AND max_block_number > %d", maxBlock))
}

// StopStagingMerges stops the merges of the delta's staging tables (best effort: a table that
// is gone, or a server that refuses, changes nothing the caller relies on).
func (d *Delta) StopStagingMerges(ctx context.Context) {
	for _, t := range d.flow.Tables() {
		_, _ = d.conn.Exec(ctx, "SYSTEM STOP MERGES "+d.Staging(t))
	}
}

// AttachPartition copies one staged partition into its Data Source under queryID, with the
// server's query log on for the statement, so that AttachOutcome can tell later whether it
// ran.
func (d *Delta) AttachPartition(ctx context.Context, m Move, queryID string) error {
	stmt := fmt.Sprintf("ALTER TABLE %s ATTACH PARTITION ID %s FROM %s", d.table(m.Table), warehouse.QuoteString(m.PartitionID), d.Staging(m.Table))
	if _, err := d.conn.Exec(ctx, stmt, warehouse.WithQueryID(queryID), warehouse.WithSettings(warehouse.Settings{"log_queries": 1})); err != nil {
		return fmt.Errorf("attach partition %s into %s: %w", m.PartitionID, m.Table, err)
	}
	return nil
}

// DropStaged drops one partition from a staging table (after it was attached to its Data
// Source). Dropping a partition that is not there does nothing.
func (d *Delta) DropStaged(ctx context.Context, m Move) error {
	stmt := fmt.Sprintf("ALTER TABLE %s DROP PARTITION ID %s", d.Staging(m.Table), warehouse.QuoteString(m.PartitionID))
	if _, err := d.conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("drop staged partition %s of %s: %w", m.PartitionID, m.Table, err)
	}
	return nil
}

// QueryOutcome is what a server says about an earlier statement, by its query id.
type QueryOutcome int

const (
	// QueryUnknown: the server cannot say (it keeps no query log, or could not flush it).
	QueryUnknown QueryOutcome = iota
	// QueryNotLogged: the query log, flushed, has no record of the statement: the server
	// never ran it, or it restarted before writing that part of its log.
	QueryNotLogged
	// QueryRunning: the statement is running now.
	QueryRunning
	// QueryFinished: the statement completed.
	QueryFinished
	// QueryFailed: the statement failed (and did not complete).
	QueryFailed
)

func (o QueryOutcome) String() string {
	return [...]string{"unknown", "not logged", "running", "finished", "failed"}[o]
}

// Outcome asks the server what became of the statement with queryID, issued around since:
// running (system.processes), else what its query log says (flushed first). An error means
// the server could not be asked; a server without a query log answers QueryUnknown.
func Outcome(ctx context.Context, conn warehouse.Conn, queryID string, since time.Time) (QueryOutcome, error) {
	out, err := outcome(ctx, conn, queryID, since)
	if err != nil || out != QueryNotLogged {
		return out, err
	}
	// A server can answer a statement before it queues the statement's log entry (seen on
	// 18.16: a flush right after a finished ATTACH did not hold it). "Never ran" decides
	// that a partition is attached again, so it is believed only when a second look, a
	// moment later, says the same.
	select {
	case <-ctx.Done():
		return QueryUnknown, ctx.Err()
	case <-time.After(outcomeSettle):
	}
	return outcome(ctx, conn, queryID, since)
}

// outcomeSettle is how long Outcome waits before it looks at the query log a second time.
const outcomeSettle = 500 * time.Millisecond

func outcome(ctx context.Context, conn warehouse.Conn, queryID string, since time.Time) (QueryOutcome, error) {
	res, err := conn.Query(ctx, "SELECT count() FROM system.processes WHERE query_id = "+warehouse.QuoteString(queryID))
	if err != nil {
		return QueryUnknown, fmt.Errorf("running statements: %w", err)
	}
	if len(res.Rows) == 1 && warehouse.Uint64(res.Rows[0][0]) > 0 {
		return QueryRunning, nil
	}
	flushed := true
	if _, err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		if warehouse.ClassOf(err) == warehouse.ClassRetryable {
			return QueryUnknown, fmt.Errorf("flush the query log: %w", err)
		}
		flushed = false // not allowed, say: what the log holds still counts
	}
	// type: 1 QueryStart, 2 QueryFinish, 3 ExceptionBeforeStart, 4 ExceptionWhileProcessing.
	res, err = conn.Query(ctx, fmt.Sprintf("SELECT toUInt8(type) FROM system.query_log WHERE event_date >= toDate(%d) - 1 AND query_id = %s",
		since.Unix(), warehouse.QuoteString(queryID)))
	if err != nil {
		if code := warehouse.CodeOf(err); code == 60 || code == 81 { // no query log on this server
			return QueryUnknown, nil
		}
		return QueryUnknown, fmt.Errorf("query log: %w", err)
	}
	out := QueryNotLogged
	if !flushed {
		out = QueryUnknown
	}
	for _, r := range res.Rows {
		switch warehouse.Uint64(r[0]) {
		case 2:
			return QueryFinished, nil
		case 3, 4:
			out = QueryFailed
		}
	}
	return out, nil
}

// ServerStart is when the server last started (now() - uptime(), in Unix seconds): a change
// tells a caller that the server restarted, and lost its unwritten query log, meanwhile.
func ServerStart(ctx context.Context, conn warehouse.Conn) (int64, error) {
	res, err := conn.Query(ctx, "SELECT toUInt64(toUnixTimestamp(now()) - uptime())")
	if err != nil {
		return 0, fmt.Errorf("server start time: %w", err)
	}
	if len(res.Rows) != 1 {
		return 0, fmt.Errorf("server start time: no answer")
	}
	return warehouse.Int64(res.Rows[0][0]), nil
}

// SameParts reports whether two sorted part lists are equal.
func SameParts(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}
