// Package dataflow applies a delta — the rows of a copy, or of one partition of a populate —
// to a Data Source and to every Data Source downstream of it, exactly once and atomically.
//
// The rows are first written to staging tables (one per Data Source the delta touches), the
// materialized views downstream are run over the staged rows in the catalog's topological
// order (the cascade), and only then are the staging tables' partitions moved into their Data
// Sources, upstream first. A move is atomic per partition for the engine's readers and leaves
// the staging table without that partition, so the staging tables say what is left to move;
// through a crash of the engine a move is not atomic, and a plan recorded before the moves
// decides what a killed one did (MovePlan, ResolveMoves): a step that dies while committing is
// finished by its redelivery, which only moves what is left; a step that dies before
// committing is redone from scratch. Moves do not fire materialized views, so no view sees
// staged rows twice. See docs/data-movement.md.
package dataflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// StagingPrefix starts the name of every staging table (see New), in the workspace database.
const StagingPrefix = "__sluice_stage_"

// View is a materialized view in the flow.
type View struct {
	// Pipe is the materialized pipe's name.
	Pipe string
	// Trigger is the Data Source whose inserts fire the view (its query's left-most table).
	Trigger string
	// Target is the Data Source the view writes.
	Target string
	// SQL is the view's query with its tables qualified with the flow's database.
	SQL string
}

// Flow is the part of a workspace's data flow a delta goes through.
type Flow struct {
	// Database is the workspace database.
	Database string
	// Target is the Data Source the delta is written to.
	Target string
	// Views are the materialized views downstream of Target, in topological order (a view
	// comes after every view that writes its trigger).
	Views []View
}

// Tables are the Data Sources the delta writes: Target, then each view's target, in order,
// each once.
func (f Flow) Tables() []string {
	out := []string{f.Target}
	seen := map[string]bool{f.Target: true}
	for _, v := range f.Views {
		if !seen[v.Target] {
			seen[v.Target] = true
			out = append(out, v.Target)
		}
	}
	return out
}

// Validate checks that every view is fed by a table written earlier in the flow.
func (f Flow) Validate() error {
	written := map[string]bool{f.Target: true}
	for _, v := range f.Views {
		if !written[v.Trigger] {
			return fmt.Errorf("view %s is fired by %s, which nothing earlier in the flow writes", v.Pipe, v.Trigger)
		}
		written[v.Target] = true
	}
	return nil
}

// Delta is one step's rows on their way through a flow.
type Delta struct {
	conn warehouse.Conn
	// users runs the statements that hold users' SQL (Load, Cascade); conn when nil.
	users warehouse.Conn
	flow  Flow
	key   string
	// staging maps each Data Source to its staging table.
	staging map[string]string
}

// New prepares a delta of a job. key identifies the delta within the job (a step, or an attempt
// of it): staging tables are named after both, `__sluice_stage_j<job id>_<hash of key>_<n>`,
// so that a redelivery with the same key finds what an earlier attempt left, and whoever finds
// a staging table (the end of the job, an executor starting up) can tell which job it belongs
// to and drop it once that job is finished, whatever attempt left it behind (JobOfStaging).
func New(conn warehouse.Conn, flow Flow, jobID, key string) (*Delta, error) {
	if !jobIDRE.MatchString(jobID) {
		return nil, fmt.Errorf("job id %q cannot name a staging table", jobID)
	}
	if err := flow.Validate(); err != nil {
		return nil, err
	}
	d := &Delta{conn: conn, flow: flow, key: key, staging: map[string]string{}}
	h := sha256.Sum256([]byte(key))
	short := hex.EncodeToString(h[:6])
	for i, t := range flow.Tables() {
		d.staging[t] = fmt.Sprintf("%sj%s_%s_%d", StagingPrefix, jobID, short, i)
	}
	return d, nil
}

// RunUsersSQLOn makes the statements that hold users' SQL — the SELECT of Load and the views'
// queries of Cascade — run on conn (a connection as the workspace's ClickHouse user), while
// Sluice's own statements (staging tables, moves) stay on the delta's connection.
func (d *Delta) RunUsersSQLOn(conn warehouse.Conn) { d.users = conn }

func (d *Delta) usersConn() warehouse.Conn {
	if d.users != nil {
		return d.users
	}
	return d.conn
}

// Staging is the qualified staging table of a Data Source of the flow.
func (d *Delta) Staging(table string) string {
	return warehouse.QualifiedName(d.flow.Database, d.staging[table])
}

func (d *Delta) table(name string) string { return warehouse.QualifiedName(d.flow.Database, name) }

// Prepare drops whatever an earlier attempt staged and creates empty staging tables shaped
// like their Data Sources.
func (d *Delta) Prepare(ctx context.Context) error {
	return d.prepare(ctx, false)
}

// unmergedSettings keep a staging table's parts from ever being merged (no merge fits in one
// byte), across restarts of the engine: the parts stay as the move plan recorded them (see
// MovePlan).
const unmergedSettings = " SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1"

// PrepareForMoves is Prepare for a delta whose staged partitions are moved into their Data
// Sources (not swapped in): its staging tables never merge their parts. A server that refuses
// the settings gets staging tables without them.
func (d *Delta) PrepareForMoves(ctx context.Context) error {
	return d.prepare(ctx, true)
}

func (d *Delta) prepare(ctx context.Context, unmerged bool) error {
	if err := d.Drop(ctx); err != nil {
		return err
	}
	for _, t := range d.flow.Tables() {
		stmt := fmt.Sprintf("CREATE TABLE %s AS %s", d.Staging(t), d.table(t))
		if unmerged {
			_, err := d.conn.Exec(ctx, stmt+unmergedSettings)
			if code := warehouse.CodeOf(err); err == nil || (code != 62 && code != 115 && code != 36) {
				if err != nil {
					return fmt.Errorf("create staging table for %s: %w", t, err)
				}
				continue
			}
		}
		if _, err := d.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create staging table for %s: %w", t, err)
		}
	}
	return nil
}

// Load writes the rows of a SELECT into the target's staging table. columns, when given, name
// the target columns the SELECT's result fills, in order.
func (d *Delta) Load(ctx context.Context, selectSQL string, columns []string, opts ...warehouse.Option) (warehouse.Stats, error) {
	cols := ""
	if len(columns) > 0 {
		q := make([]string, len(columns))
		for i, c := range columns {
			q[i] = warehouse.QuoteIdent(c)
		}
		cols = " (" + strings.Join(q, ", ") + ")"
	}
	return d.usersConn().Exec(ctx, fmt.Sprintf("INSERT INTO %s%s\n%s", d.Staging(d.flow.Target), cols, selectSQL), opts...)
}

// Cascade runs every view of the flow over the staged rows of its trigger, into the staging
// table of its target, in the flow's order. Inside a view's query:
//   - the trigger is read from its staging table only (the delta, not the whole Data Source);
//   - another Data Source this delta writes is read with its staged rows added (the spec's
//     case 3, made deterministic: a view placed after the one writing that Data Source sees
//     this step's rows of it);
//   - the view's own target is read as it is, without this step's rows (case 2);
//   - every other table is read whole (case 1).
func (d *Delta) Cascade(ctx context.Context, opts ...warehouse.Option) (warehouse.Stats, error) {
	var total warehouse.Stats
	for _, v := range d.flow.Views {
		sql, err := d.repoint(v)
		if err != nil {
			return total, fmt.Errorf("view %s: %w", v.Pipe, err)
		}
		// A materialized view writes its target by column name, not position: so does the cascade.
		desc, err := d.usersConn().Query(ctx, "DESCRIBE TABLE ("+sql+")")
		if err != nil {
			return total, fmt.Errorf("view %s: result columns: %w", v.Pipe, err)
		}
		var cols []string
		for _, r := range desc.Rows {
			cols = append(cols, warehouse.QuoteIdent(fmt.Sprint(r[0])))
		}
		st, err := d.usersConn().Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s)\n%s", d.Staging(v.Target), strings.Join(cols, ", "), sql), opts...)
		if err != nil {
			return total, fmt.Errorf("view %s into %s: %w", v.Pipe, v.Target, err)
		}
		addStats(&total, st)
	}
	return total, nil
}

// repoint rewrites a view's query so that its tables read what Cascade says.
func (d *Delta) repoint(v View) (string, error) {
	an, err := chsql.Analyze(v.SQL, nil)
	if err != nil {
		return "", err
	}
	return an.Rewrite(func(ref chsql.TableRef) (string, error) {
		if ref.Kind != chsql.RefTable || (ref.Database != "" && ref.Database != d.flow.Database) {
			return v.SQL[ref.Start:ref.End], nil
		}
		staged, ok := d.staging[ref.Name]
		switch {
		case !ok || ref.Name == v.Target:
			return v.SQL[ref.Start:ref.End], nil
		case ref.Name == v.Trigger:
			return ref.Subquery("SELECT * FROM " + warehouse.QualifiedName(d.flow.Database, staged)), nil
		default:
			return ref.Subquery(fmt.Sprintf("SELECT * FROM %s UNION ALL SELECT * FROM %s",
				d.table(ref.Name), warehouse.QualifiedName(d.flow.Database, staged))), nil
		}
	})
}

// Move is one staging partition waiting to be moved into its Data Source.
type Move struct {
	Table       string
	PartitionID string
	Rows        uint64
	Bytes       uint64
}

// Pending lists the staging partitions still to move, upstream tables first. A move leaves an
// empty active part behind in the staging table, so partitions without rows are not pending.
// One plain read of system.parts for every staging table of the delta, summed here: a GROUP BY
// in the query costs the engine more than the rows it sums.
func (d *Delta) Pending(ctx context.Context) ([]Move, error) {
	names := make([]string, 0, len(d.staging))
	for _, t := range d.flow.Tables() {
		names = append(names, warehouse.QuoteString(d.staging[t]))
	}
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT table, partition_id, rows, data_uncompressed_bytes FROM system.parts WHERE database = %s AND table IN (%s) AND active AND rows > 0",
		warehouse.QuoteString(d.flow.Database), strings.Join(names, ", ")))
	if err != nil {
		return nil, fmt.Errorf("list staged partitions of %s: %w", d.flow.Target, err)
	}
	type key struct{ table, partition string }
	sums := map[key]*Move{}
	for _, r := range res.Rows {
		k := key{fmt.Sprint(r[0]), fmt.Sprint(r[1])}
		m := sums[k]
		if m == nil {
			m = &Move{PartitionID: k.partition}
			sums[k] = m
		}
		m.Rows += warehouse.Uint64(r[2])
		m.Bytes += warehouse.Uint64(r[3])
	}
	byTable := map[struct{ table, partition string }]*Move{}
	for _, t := range d.flow.Tables() {
		for k, m := range sums {
			if k.table == d.staging[t] {
				m.Table = t
				byTable[struct{ table, partition string }{t, k.partition}] = m
			}
		}
	}
	return orderMoves(d.flow.Tables(), byTable), nil
}

// orderMoves lists moves keyed by Data Source and partition in the order they are made: the
// flow's tables in order (upstream first), each one's partitions by id.
func orderMoves[K comparable](tables []string, moves map[K]*Move) []Move {
	var out []Move
	for _, t := range tables {
		var ms []Move
		for _, m := range moves {
			if m.Table == t {
				ms = append(ms, *m)
			}
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].PartitionID < ms[j].PartitionID })
		out = append(out, ms...)
	}
	return out
}

// Commit moves every staged partition into its Data Source, upstream first, by what the
// staging tables hold (for commit records without a MovePlan: a move the engine was killed
// inside is moved again). The caller must have recorded that the step is committing before
// calling it, and must not Prepare again after that.
func (d *Delta) Commit(ctx context.Context) ([]Move, error) {
	moves, err := d.Pending(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range moves {
		stmt := fmt.Sprintf("ALTER TABLE %s MOVE PARTITION ID %s TO TABLE %s", d.Staging(m.Table), warehouse.QuoteString(m.PartitionID), d.table(m.Table))
		if _, err := d.conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("move partition %s into %s: %w", m.PartitionID, m.Table, err)
		}
	}
	return moves, nil
}

// Drop removes the staging tables.
func (d *Delta) Drop(ctx context.Context) error {
	var errs []error
	for _, t := range d.flow.Tables() {
		if _, err := d.conn.Exec(ctx, "DROP TABLE IF EXISTS "+d.Staging(t)); err != nil {
			errs = append(errs, fmt.Errorf("drop staging table of %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

func addStats(total *warehouse.Stats, s warehouse.Stats) {
	total.ReadRows += s.ReadRows
	total.ReadBytes += s.ReadBytes
	total.WrittenRows += s.WrittenRows
	total.WrittenBytes += s.WrittenBytes
	total.Elapsed += s.Elapsed
	total.MemoryUsage = max(total.MemoryUsage, s.MemoryUsage)
}

// Proto is the flow as a commit record keeps it.
func (f Flow) Proto() *persistencev1.Flow {
	p := &persistencev1.Flow{Database: f.Database, Target: f.Target}
	for _, v := range f.Views {
		p.Views = append(p.Views, &persistencev1.View{Pipe: v.Pipe, Trigger: v.Trigger, Target: v.Target, Sql: v.SQL})
	}
	return p
}

// FlowOf is the flow a commit record keeps.
func FlowOf(p *persistencev1.Flow) Flow {
	f := Flow{Database: p.GetDatabase(), Target: p.GetTarget()}
	for _, v := range p.GetViews() {
		f.Views = append(f.Views, View{Pipe: v.GetPipe(), Trigger: v.GetTrigger(), Target: v.GetTarget(), SQL: v.GetSql()})
	}
	return f
}
