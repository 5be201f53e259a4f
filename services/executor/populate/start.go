package populate

import (
	"context"
	"fmt"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// start is a populate job's start, done once before any step loads (step.Context.StartOnce):
// truncate empties the target; a snapshot cut-over stops the source's merges, empties the
// flow's Data Sources and records the source's highest block number, retrying until no insert
// landed in between; a cut-over column cuts the view over (cutOverColumn).
func (r *Runner) start(ctx context.Context, s *step.Context, flow dataflow.Flow, source string) (*persistencev1.JobStart, error) {
	opts := s.Job.GetPopulate()
	tables := []string{flow.Target}
	if opts.GetCutoverSnapshot() {
		tables = flow.Tables()
	}
	if opts.GetCutoverColumn() != "" {
		return &persistencev1.JobStart{}, r.cutOverColumn(ctx, s, flow, source)
	}
	truncate := func() error { return truncateOn(ctx, r.d.Warehouse, flow.Database, tables) }
	if !opts.GetCutoverSnapshot() {
		if err := truncate(); err != nil {
			return nil, err
		}
		s.Log.Info("populate truncated its target", "target", flow.Target)
		return &persistencev1.JobStart{}, nil
	}
	src := warehouse.QualifiedName(flow.Database, source)
	if _, err := r.d.Warehouse.Exec(ctx, "SYSTEM STOP MERGES "+src); err != nil {
		return nil, fmt.Errorf("stop merges of %s: %w", source, err)
	}
	// The emptying and the snapshot must see the same inserts: on the embedded engine both run
	// back to back with nothing in between (Sequencer); on a server, until no insert landed
	// between them.
	if seq, ok := r.d.Warehouse.(warehouse.Sequencer); ok {
		var block uint64
		err := seq.Sequence(ctx, func(c warehouse.Conn) error {
			if err := truncateOn(ctx, c, flow.Database, tables); err != nil {
				return err
			}
			var err error
			block, err = maxBlock(ctx, c, flow.Database, source)
			return err
		})
		if err != nil {
			return nil, err
		}
		s.Log.Info("populate cut over", "source", source, "max_block", block, "emptied", tables)
		return &persistencev1.JobStart{MaxBlock: block}, nil
	}
	for try := 1; ; try++ {
		before, err := maxBlock(ctx, r.d.Warehouse, flow.Database, source)
		if err != nil {
			return nil, err
		}
		if err := truncate(); err != nil {
			return nil, err
		}
		after, err := maxBlock(ctx, r.d.Warehouse, flow.Database, source)
		if err != nil {
			return nil, err
		}
		if before == after {
			s.Log.Info("populate cut over", "source", source, "max_block", after, "emptied", tables, "tries", try)
			return &persistencev1.JobStart{MaxBlock: after}, nil
		}
		if try >= 100 {
			return nil, step.Permanent(fmt.Errorf("snapshot cut-over of %s: inserts landed between every attempt (%d)", source, try))
		}
	}
}

func truncateOn(ctx context.Context, c warehouse.Conn, db string, tables []string) error {
	for _, t := range tables {
		if _, err := c.Exec(ctx, "TRUNCATE TABLE "+warehouse.QualifiedName(db, t)); err != nil {
			return fmt.Errorf("truncate %s: %w", t, err)
		}
	}
	return nil
}

// cutOverColumn is the start of a populate with a cut-over column:
//
//  1. the catalog cuts the view over (CutOverView): it checks the column, the value and that
//     no source row is after it yet, changes the view to handle only the rows after it (part
//     of the view's definition from then on, so that every cascade through it does the
//     same), stops the merges of the flow's Data Sources and reads their highest block
//     numbers; a check that fails leaves everything as it was, and one that fails after the
//     change reverts it. Asked again for the same job, it returns what it recorded.
//  2. each Data Source of the flow (the target, and those downstream unless only_this_view)
//     loses the parts up to its recorded block: what the view wrote before the cut-over, which
//     the populate writes again. Parts written after it (the view handling new rows) stay.
//     Dropping a part that is gone already does nothing, so a redelivery does the same. Then
//     their merges start again.
//  3. it waits until the cut-over has passed, so that the rows up to it are in the source.
func (r *Runner) cutOverColumn(ctx context.Context, s *step.Context, flow dataflow.Flow, source string) error {
	job := s.Job
	col, val := job.GetPopulate().GetCutoverColumn(), job.GetPopulate().GetCutoverValue()
	// No commit that cascades through the views (staged with the view as it was) may land
	// after the cut-over: the fence makes new ones stage again and waits for those under way.
	if err := s.BeginCut(ctx); err != nil {
		return err
	}
	defer func() {
		if err := s.EndCut(context.WithoutCancel(ctx)); err != nil {
			s.Log.Warn("clearing the view fence failed; it is cleared when the job ends", "err", err)
		}
	}()
	resp, err := r.d.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{
		Workspace: job.GetWorkspace(), Pipe: job.GetPipe(), Node: job.GetNode(),
		Column: col, Value: val, JobId: job.GetId(), Tables: flow.Tables(),
	})
	if err != nil {
		return step.CatalogError(fmt.Errorf("cut-over of the view of %s: %w", job.GetPipe(), err))
	}
	for _, t := range flow.Tables() {
		if err := dropPartsUpTo(ctx, r.d.Warehouse, flow.Database, t, resp.GetBlocks()[t]); err != nil {
			return err
		}
		if _, err := r.d.Warehouse.Exec(ctx, "SYSTEM START MERGES "+warehouse.QualifiedName(flow.Database, t)); err != nil {
			return fmt.Errorf("start merges of %s: %w", t, err)
		}
	}
	// Commits cascade again, through the view as it is now.
	if err := s.EndCut(ctx); err != nil {
		return err
	}
	src := warehouse.QualifiedName(flow.Database, source)
	after := warehouse.QuoteIdent(col) + " > " + warehouse.QuoteString(val)
	s.Log.Info("populate cut the view over; waiting for the cut-over to pass", "view", job.GetPipe(), "cutover", after, "emptied_up_to", resp.GetBlocks())
	wait := "SELECT (SELECT count() FROM " + src + " WHERE " + after + ") > 0 OR ifNull(now() > parseDateTimeBestEffortOrNull(" + warehouse.QuoteString(val) + ") + 1, 0)"
	for {
		res, err := r.d.Warehouse.Query(ctx, wait)
		if err != nil {
			return err
		}
		if len(res.Rows) == 1 && warehouse.Uint64(res.Rows[0][0]) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dropPartsUpTo drops a table's parts whose blocks are all at or below block: what it held
// when a view was cut over. A part that also holds later blocks (merged across the cut-over,
// which stopped merges prevent unless ClickHouse restarted meanwhile) cannot be split: the
// populate fails rather than drop rows the view wrote after the cut-over.
func dropPartsUpTo(ctx context.Context, c warehouse.Conn, db, table string, block uint64) error {
	res, err := c.Query(ctx, fmt.Sprintf("SELECT name, max_block_number FROM system.parts WHERE database = %s AND table = %s AND active AND min_block_number <= %d ORDER BY name",
		warehouse.QuoteString(db), warehouse.QuoteString(table), block))
	if err != nil {
		return fmt.Errorf("parts of %s: %w", table, err)
	}
	for _, row := range res.Rows {
		name, hi := fmt.Sprint(row[0]), warehouse.Uint64(row[1])
		if hi > block {
			return step.Permanent(fmt.Errorf("part %s of %s holds rows from before and after the cut-over (block %d): they cannot be told apart; run the populate again", name, table, block))
		}
		if _, err := c.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PART %s", warehouse.QualifiedName(db, table), warehouse.QuoteString(name))); err != nil {
			if warehouse.CodeOf(err) == 232 { // NO_SUCH_DATA_PART: dropped by an earlier attempt
				continue
			}
			return fmt.Errorf("drop part %s of %s: %w", name, table, err)
		}
	}
	return nil
}

func maxBlock(ctx context.Context, c warehouse.Conn, db, table string) (uint64, error) {
	res, err := c.Query(ctx, fmt.Sprintf("SELECT max(max_block_number) FROM system.parts WHERE database = %s AND table = %s AND active",
		warehouse.QuoteString(db), warehouse.QuoteString(table)))
	if err != nil {
		return 0, fmt.Errorf("blocks of %s: %w", table, err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, nil
	}
	return warehouse.Uint64(res.Rows[0][0]), nil
}
