package populate

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/delta"
	"github.com/sluicehq/sluice/services/executor/step"
)

// maxSplit is the largest number of sub-ranges a partition is split into before its step fails.
const maxSplit = 64

// snapshotParts are the parts of the step's partitions (its own, and for step 0 any partition
// the job's list missed) whose blocks are all at or below the cut-over block. A part that
// straddles it (merged across the cut-over, say after a restart lifted the stopped merges)
// cannot be split by rows: the step fails and asks for a new populate.
func (r *Runner) snapshotParts(ctx context.Context, db string, p *persistencev1.PopulateStep, maxBlock uint64) ([]string, error) {
	where := fmt.Sprintf("database = %s AND table = %s AND active", warehouse.QuoteString(db), warehouse.QuoteString(p.GetSource()))
	own := jobs.PopulatePartitions(p)
	if len(p.GetJobPartitions()) > 0 {
		known := make([]string, 0, len(p.GetJobPartitions()))
		for _, k := range p.GetJobPartitions() {
			if !slices.Contains(own, k) {
				known = append(known, warehouse.QuoteString(k))
			}
		}
		if len(known) > 0 {
			where += " AND partition_id NOT IN (" + strings.Join(known, ", ") + ")"
		}
	} else {
		where += " AND " + partitionIn("partition_id", own)
	}
	res, err := r.d.Warehouse.Query(ctx, fmt.Sprintf("SELECT name, min_block_number, max_block_number FROM system.parts WHERE %s ORDER BY name", where))
	if err != nil {
		return nil, fmt.Errorf("parts of %s: %w", p.GetSource(), err)
	}
	var out []string
	for _, row := range res.Rows {
		name, lo, hi := fmt.Sprint(row[0]), warehouse.Uint64(row[1]), warehouse.Uint64(row[2])
		switch {
		case hi <= maxBlock:
			out = append(out, name)
		case lo <= maxBlock:
			return nil, step.Permanent(fmt.Errorf("part %s of %s was merged across the cut-over (block %d): its rows cannot be told apart; run the populate again", name, p.GetSource(), maxBlock))
		}
	}
	return out, nil
}

// stage is one attempt at staging a partition.
type stage struct {
	r        *Runner
	s        *step.Context
	p        *persistencev1.PopulateStep
	flow     dataflow.Flow
	delta    *dataflow.Delta
	token    string   // the attempt naming the staging tables (dataflow.NewForAttempt)
	query    string   // the node's query, source re-pointed at %s (the partition subquery)
	columns  []string // the node's result columns
	hashKey  string   // expression the sub-ranges hash
	filter   string   // partition and condition
	budget   uint64
	bytes    uint64
	maxLevel int
}

func (r *Runner) newStage(ctx context.Context, s *step.Context, p *persistencev1.PopulateStep, flow dataflow.Flow) (*stage, error) {
	job := s.Job
	// Staging tables of this attempt alone: an attempt that is late (it started before another
	// one recorded the commit, or its message was redelivered while it ran on) must never
	// write into the tables a commit record names, or a later attempt finishing that commit
	// would move its rows too.
	var b [4]byte
	_, _ = rand.Read(b[:])
	attempt := hex.EncodeToString(b[:])
	d, err := dataflow.NewForAttempt(r.d.Warehouse, flow, job.GetId(), s.IdempotencyKey, attempt)
	if err != nil {
		return nil, step.Permanent(err)
	}
	users, err := r.d.Users.For(ctx, job.GetWorkspace(), flow.Database, r.d.Warehouse)
	if err != nil {
		return nil, err
	}
	d.RunUsersSQLOn(users)
	pl, err := r.query(ctx, job, p.GetSource(), flow.Database)
	if err != nil {
		return nil, err
	}
	st := &stage{r: r, s: s, p: p, flow: flow, delta: d, token: attempt, query: pl.query, columns: pl.columns, hashKey: pl.hashKey,
		budget: cmp.Or(p.GetMemoryBudget(), r.d.MemoryBudget), bytes: p.GetBytes(), maxLevel: 2}
	var conds []string
	if parts := jobs.PopulatePartitions(p); len(parts) > 0 {
		conds = append(conds, partitionIn("_partition_id", parts))
	}
	if c := strings.TrimSpace(p.GetCondition()); c != "" {
		conds = append(conds, "("+c+")")
	}
	st.filter = strings.Join(conds, " AND ")
	if parts := jobs.PopulatePartitions(p); len(parts) > 0 && st.budget > 0 && st.bytes == 0 {
		// A plan without the partitions' size (a job planned before sizes were): read it now.
		res, err := r.d.Warehouse.Query(ctx, fmt.Sprintf("SELECT sum(data_uncompressed_bytes) FROM system.parts WHERE database = %s AND table = %s AND active AND %s",
			warehouse.QuoteString(flow.Database), warehouse.QuoteString(p.GetSource()), partitionIn("partition_id", parts)))
		if err == nil && len(res.Rows) == 1 && len(res.Rows[0]) == 1 {
			st.bytes = warehouse.Uint64(res.Rows[0][0])
		}
	}
	return st, nil
}

// levelSettings are the resources of a staging attempt: level 0 as ClickHouse chooses, 1 fewer
// threads and smaller blocks, 2 one thread, small blocks and external aggregation and sorting.
func (st *stage) levelSettings(level int) warehouse.Settings {
	s := warehouse.Settings{}
	if st.budget > 0 {
		s["max_memory_usage"] = st.budget
	}
	switch {
	case level == 1:
		s["max_threads"] = 2
		s["max_insert_threads"] = 1
		s["max_block_size"] = 16384
		if st.budget > 0 {
			s["max_bytes_before_external_group_by"] = st.budget / 2
		}
	case level >= 2:
		s["max_threads"] = 1
		s["max_insert_threads"] = 1
		s["max_block_size"] = 4096
		s["min_insert_block_size_rows"] = 4096
		s["min_insert_block_size_bytes"] = 1 << 20
		if st.budget > 0 {
			s["max_bytes_before_external_group_by"] = st.budget / 4
			s["max_bytes_before_external_sort"] = st.budget / 4
		}
	}
	return s
}

// firstLevel picks the first attempt's level from the partition's uncompressed size against
// the budget: a partition much larger than the budget starts with fewer resources rather than
// failing first.
func (st *stage) firstLevel() int {
	if st.budget == 0 || st.bytes == 0 {
		return 0
	}
	switch ratio := float64(st.bytes) / float64(st.budget); {
	case ratio < 1:
		return 0
	case ratio < 4:
		return 1
	}
	return 2
}

// stage stages the partition, lowering resources and then splitting on memory limits.
func (st *stage) stage(ctx context.Context) (*delta.Staged, error) {
	level, split := st.firstLevel(), 0
	for {
		rec, err := st.attempt(ctx, level, split)
		if err == nil {
			rec.Level, rec.Split = int32(level), int32(split)
			return &delta.Staged{Record: rec, Delta: st.delta}, nil
		}
		if warehouse.ClassOf(err) != warehouse.ClassMemoryLimit || ctx.Err() != nil {
			return nil, err
		}
		switch {
		case level < st.maxLevel:
			level++
		case split == 0:
			split = 2
		case split < maxSplit:
			split *= 2
		default:
			return nil, step.Permanent(fmt.Errorf("populate partition %s of %s: memory limit exceeded even split into %d ranges with one thread (raise the memory budget, or populate with a narrower --sql-condition): %w",
				st.partitionName(), st.p.GetSource(), split, err))
		}
		st.s.Log.Warn("populate step hit the memory limit; restaging with fewer resources",
			"partition", st.partitionName(), "level", level, "split", split, "err", err)
	}
}

// partitionName names the step's partitions in errors and logs.
func (st *stage) partitionName() string {
	return partitionsName(st.p)
}

func partitionsName(p *persistencev1.PopulateStep) string {
	parts := jobs.PopulatePartitions(p)
	switch {
	case len(parts) == 0:
		return "(all)"
	case len(parts) > 1:
		return parts[0] + ".." + parts[len(parts)-1] + " (" + strconv.Itoa(len(parts)) + " partitions)"
	}
	return parts[0]
}

// partitionIn is the condition that column (partition_id, _partition_id) is one of parts.
func partitionIn(column string, parts []string) string {
	if len(parts) == 1 {
		return column + " = " + warehouse.QuoteString(parts[0])
	}
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = warehouse.QuoteString(p)
	}
	return column + " IN (" + strings.Join(q, ", ") + ")"
}

// attempt stages the whole partition once: from empty staging tables, the node's query over
// the partition (in split sub-ranges when split > 0), then the cascade.
func (st *stage) attempt(ctx context.Context, level, split int) (*persistencev1.DeltaCommit, error) {
	rec := &persistencev1.DeltaCommit{Phase: persistencev1.CommitPhase_COMMIT_PHASE_MOVING, StagingKey: st.s.IdempotencyKey, Attempt: st.token}
	// Always from empty staging tables: even a first delivery may find what an attempt left
	// (after a crash of an embedded NATS, its delivery count can start again from 1).
	if err := st.delta.PrepareForMoves(ctx); err != nil {
		return nil, err
	}
	if st.r.d.Committer.NoMove() {
		// The commit attaches: no merges in staging (see package delta's attachCommit).
		st.delta.StopStagingMerges(ctx)
	}
	set := warehouse.WithSettings(st.levelSettings(level))
	ranges := []string{""}
	if split > 0 {
		ranges = ranges[:0]
		for i := range split {
			ranges = append(ranges, fmt.Sprintf("cityHash64(%s) %% %d = %d", st.hashKey, split, i))
		}
	}
	for _, rg := range ranges {
		conds := st.filter
		if rg != "" {
			conds = joinConds(rg, conds)
		}
		sub := "SELECT * FROM " + warehouse.QualifiedName(st.flow.Database, st.p.GetSource())
		if conds != "" {
			sub += " WHERE " + conds
		}
		stats, err := st.delta.Load(ctx, fmt.Sprintf(st.query, sub), st.columns, set)
		if err != nil {
			return nil, fmt.Errorf("populate partition %s of %s: %w", st.partitionName(), st.p.GetSource(), err)
		}
		rec.ReadRows += stats.ReadRows
		rec.ReadBytes += stats.ReadBytes
		st.s.Progress(&commonv1.Statistics{ReadRows: rec.GetReadRows(), ReadBytes: rec.GetReadBytes(), WrittenRows: stats.WrittenRows, WrittenBytes: stats.WrittenBytes})
	}
	if _, err := st.delta.Cascade(ctx, set); err != nil {
		return nil, fmt.Errorf("populate partition %s of %s, cascade: %w", st.partitionName(), st.p.GetSource(), err)
	}
	var moves []dataflow.Move
	if !st.r.d.Committer.NoMove() {
		plan, err := st.delta.Plan(ctx)
		if err != nil {
			return nil, err
		}
		if plan != nil {
			rec.MovePlan, moves = plan.Proto(), plan.Moves
		}
	}
	if rec.GetMovePlan() == nil {
		var err error
		if moves, err = st.delta.Pending(ctx); err != nil {
			return nil, err
		}
	}
	rec.Tables = delta.Figures(st.flow, moves)
	return rec, nil
}
