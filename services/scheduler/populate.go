package scheduler

import (
	"context"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// Populate implements SchedulerService: a POPULATEVIEW job with one step per partition of the
// view's source Data Source.
//
// The scheduler has no ClickHouse connection of its own. It reads what it needs through the
// catalog, which owns the workspace's SQL access: the pipe and graph (GetPipe, GetGraph), the
// source's partitions (`SELECT _partition_id, count() ... GROUP BY _partition_id` through the
// catalog's read-only Query, which qualifies the table and runs it with readonly=1) and the
// query that validates sql_condition. Steps size themselves from system.parts when they run
// (an executor has the connection), so the partition list only needs ids.
func (s *Service) Populate(ctx context.Context, req *schedulerv1.PopulateRequest) (*schedulerv1.PopulateResponse, error) {
	job, err := s.populate(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err // the catalog's status (NotFound, InvalidArgument) as it gave it
		}
		return nil, grpcError(err)
	}
	return &schedulerv1.PopulateResponse{Job: job}, nil
}

// populateTarget is what a populate writes and reads.
type populateTarget struct {
	node   string
	target string
	source string
}

func (s *Service) populate(ctx context.Context, req *schedulerv1.PopulateRequest) (*schedulerv1.Job, error) {
	ws := req.GetWorkspace()
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	if req.GetPipe() == "" {
		return nil, &InvalidError{Field: "pipe", Msg: "required"}
	}
	if s.deps.Catalog == nil {
		return nil, status.Error(codes.Unavailable, "populate: no catalog connection")
	}
	opts := req.GetOptions()
	if opts == nil {
		opts = &schedulerv1.PopulateOptions{}
	}
	pt, err := s.populateTarget(ctx, ws, req.GetPipe(), req.GetNode())
	if err != nil {
		return nil, err
	}
	if err := s.validatePopulateOptions(ctx, ws, pt.source, opts); err != nil {
		return nil, err
	}
	parts, err := s.sourcePartitions(ctx, ws, pt.source)
	if err != nil {
		return nil, err
	}
	steps := populateSteps(pt.source, parts, req.GetMemoryBudgetBytes(), populateCondition(opts), opts.GetCutoverSnapshot())
	job, err := s.createJob(ctx, jobRequest{
		Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_POPULATEVIEW, Pipe: req.GetPipe(), Node: pt.node,
		TargetDatasource: pt.target, Populate: opts, MaxExecutionTime: req.GetMaxExecutionTime().AsDuration(), Steps: steps,
	})
	if err != nil {
		return nil, err
	}
	s.populateQueued(ctx, job, pt)
	return job, nil
}

// populateSteps are a populate's steps: one per source partition. An empty source still makes
// a job (with one step reading the whole source), so that truncate and the ops log behave as for
// any other populate. With a snapshot cut-over, step 0 also reads the partitions created
// between the plan and the cut-over.
func populateSteps(source string, parts []sourcePartition, budget uint64, condition string, snapshot bool) []*persistencev1.StepSpec {
	if len(parts) == 0 {
		parts = []sourcePartition{{}}
	}
	steps := make([]*persistencev1.StepSpec, len(parts))
	for i, p := range parts {
		ps := &persistencev1.PopulateStep{Source: source, Partition: p.id, Rows: p.rows, MemoryBudget: budget, Condition: condition}
		if i == 0 && snapshot {
			for _, q := range parts {
				ps.JobPartitions = append(ps.JobPartitions, q.id)
			}
		}
		steps[i] = &persistencev1.StepSpec{Id: strconv.Itoa(i), Work: &persistencev1.StepSpec_Populate{Populate: ps}}
	}
	return steps
}

// populateCondition is the condition every step puts on its source rows: sql_condition and the
// rows up to the cut-over value.
func populateCondition(o *schedulerv1.PopulateOptions) string {
	var conds []string
	if c := strings.TrimSpace(o.GetSqlCondition()); c != "" {
		conds = append(conds, "("+c+")")
	}
	if col := o.GetCutoverColumn(); col != "" {
		conds = append(conds, CutoverCondition(col, o.GetCutoverValue()))
	}
	return strings.Join(conds, " AND ")
}

// populateTarget finds the materialized node (the one given, or the pipe's one materialized
// node), its target and the Data Source that fires it, with the hosted CLI's errors.
func (s *Service) populateTarget(ctx context.Context, ws, pipe, node string) (populateTarget, error) {
	pr, err := s.deps.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: ws, Name: pipe})
	if err != nil {
		return populateTarget{}, err
	}
	var mat []*catalogv1.Node
	var named *catalogv1.Node
	for _, n := range pr.GetPipe().GetNodes() {
		if n.GetType() == catalogv1.NodeType_NODE_TYPE_MATERIALIZED {
			mat = append(mat, n)
		}
		if n.GetName() == node {
			named = n
		}
	}
	var n *catalogv1.Node
	switch {
	case node != "" && named == nil:
		return populateTarget{}, &InvalidError{Field: "node", Msg: fmt.Sprintf("pipe %s has no node %s", pipe, node)}
	case node != "" && named.GetType() != catalogv1.NodeType_NODE_TYPE_MATERIALIZED:
		return populateTarget{}, &InvalidError{Field: "node", Msg: fmt.Sprintf("node %s of pipe %s is not materialized: only a materialized node can be populated", node, pipe)}
	case node != "":
		n = named
	case len(mat) == 0:
		return populateTarget{}, &InvalidError{Field: "pipe", Msg: fmt.Sprintf("pipe %s is not materialized: it has no materialized node to populate", pipe)}
	case len(mat) > 1:
		names := make([]string, len(mat))
		for i, m := range mat {
			names[i] = m.GetName()
		}
		return populateTarget{}, &InvalidError{Field: "node", Msg: fmt.Sprintf("pipe %s has %d materialized nodes (%s): choose one with --node", pipe, len(mat), strings.Join(names, ", "))}
	default:
		n = mat[0]
	}
	g, err := s.deps.Catalog.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: ws, Resource: pipe})
	if err != nil {
		return populateTarget{}, err
	}
	pt := populateTarget{node: n.GetName(), target: n.GetTargetDatasource()}
	for _, e := range g.GetEdges() {
		if e.GetKind() == catalogv1.GraphEdge_KIND_TRIGGERS && e.GetDownstream() == pipe {
			pt.source = e.GetUpstream()
		}
		if pt.target == "" && e.GetKind() == catalogv1.GraphEdge_KIND_MATERIALIZES && e.GetUpstream() == pipe {
			pt.target = e.GetDownstream()
		}
	}
	if pt.source == "" {
		return populateTarget{}, &InvalidError{Field: "pipe", Msg: fmt.Sprintf("materialized pipe %s reads no Data Source that fires it: nothing to populate from", pipe)}
	}
	if pt.target == "" {
		return populateTarget{}, &InvalidError{Field: "pipe", Msg: fmt.Sprintf("materialized node %s of pipe %s has no target Data Source", pt.node, pipe)}
	}
	return pt, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validatePopulateOptions checks sql_condition and the cut-over. A condition must be one
// expression: it is spliced into `WHERE _partition_id = '...' AND (<condition>)` by the steps,
// so it may not close that parenthesis, end the statement or read other tables; ClickHouse then
// analyses `SELECT * FROM <source> WHERE <condition> LIMIT 0` through the catalog (which
// refuses table functions, files and other databases), as the hosted platform validates it.
// (Not EXPLAIN: servers before 20.6 have none; LIMIT 0 reads nothing.)
func (s *Service) validatePopulateOptions(ctx context.Context, ws, source string, o *schedulerv1.PopulateOptions) error {
	if cond := strings.TrimSpace(o.GetSqlCondition()); cond != "" {
		if err := checkCondition(cond); err != nil {
			return &InvalidError{Field: "options.sql_condition", Msg: err.Error()}
		}
		// Steps splice the condition into a longer WHERE: without comments, so that a `--`
		// cannot swallow what follows it.
		norm, err := chsql.Normalize(cond)
		if err != nil {
			return &InvalidError{Field: "options.sql_condition", Msg: err.Error()}
		}
		cond = strings.TrimSpace(norm)
		o.SqlCondition = cond
		if _, err := s.deps.Catalog.Query(ctx, &catalogv1.QueryRequest{
			Workspace: ws, Sql: "SELECT * FROM " + warehouse.QuoteIdent(source) + " WHERE (" + cond + ") LIMIT 0", Timeout: durationpb.New(30 * time.Second),
		}); err != nil {
			return &InvalidError{Field: "options.sql_condition", Msg: fmt.Sprintf("%q is not a valid condition on %s: %s", cond, source, status.Convert(err).Message())}
		}
	}
	col, val := o.GetCutoverColumn(), o.GetCutoverValue()
	if col == "" && val == "" {
		return nil
	}
	if o.GetCutoverSnapshot() {
		return &InvalidError{Field: "options.cutover_snapshot", Msg: "a snapshot cut-over needs no cut-over column: give one or the other"}
	}
	if col == "" || val == "" {
		return &InvalidError{Field: "options.cutover_column", Msg: "cutover_column and cutover_value go together"}
	}
	if !identRE.MatchString(col) {
		return &InvalidError{Field: "options.cutover_column", Msg: fmt.Sprintf("%q is not a column name", col)}
	}
	if _, err := s.deps.Catalog.Query(ctx, &catalogv1.QueryRequest{
		Workspace: ws, Sql: "EXPLAIN SELECT * FROM " + warehouse.QuoteIdent(source) + " WHERE " + CutoverCondition(col, val), Timeout: durationpb.New(30 * time.Second),
	}); err != nil {
		return &InvalidError{Field: "options.cutover_column", Msg: fmt.Sprintf("cut-over %s <= %q does not apply to %s: %s", col, val, source, status.Convert(err).Message())}
	}
	// Refused now if the data is past it already (the job checks again before it changes
	// anything: rows keep coming meanwhile).
	resp, err := s.deps.Catalog.Query(ctx, &catalogv1.QueryRequest{
		Workspace: ws, Sql: "SELECT count(), toString(max(" + warehouse.QuoteIdent(col) + ")) FROM " + warehouse.QuoteIdent(source) + " WHERE NOT (" + CutoverCondition(col, val) + ")", Timeout: durationpb.New(30 * time.Second),
	})
	if err != nil {
		return err
	}
	if rows := resp.GetRows(); len(rows) == 1 && len(rows[0].GetValues()) == 2 {
		// count() is a UInt64: its exact decimal string.
		if n, _ := strconv.ParseUint(rows[0].GetValues()[0].GetStringValue(), 10, 64); n > 0 {
			return &InvalidError{Field: "options.cutover_value", Msg: fmt.Sprintf("cut-over %s > %q is behind the data: %d rows of %s are after it already (the latest: %s); choose a cut-over ahead of the data, for example --cutover-in 30s",
				col, val, n, source, rows[0].GetValues()[1].GetStringValue())}
		}
	}
	return nil
}

// CutoverCondition is the populate's side of a cut-over: the rows up to the cut-over value (the
// materialized view handles the rows after it).
func CutoverCondition(column, value string) string {
	return warehouse.QuoteIdent(column) + " <= " + warehouse.QuoteString(value)
}

// checkCondition refuses what would let a condition escape its parenthesis or reach beyond
// the source: unbalanced parentheses, `;`, SETTINGS/FORMAT/UNION at the top level, and
// subqueries (their table names would not be qualified with the workspace database).
func checkCondition(cond string) error {
	toks, err := chsql.Lex(cond)
	if err != nil {
		return fmt.Errorf("cannot read the condition: %w", err)
	}
	depth := 0
	for _, t := range chsql.Significant(toks) {
		switch {
		case t.Kind == chsql.Punct && t.Text == "(":
			depth++
		case t.Kind == chsql.Punct && t.Text == ")":
			depth--
			if depth < 0 {
				return fmt.Errorf("unbalanced ')' at offset %d", t.Start)
			}
		case t.Kind == chsql.Punct && t.Text == ";":
			return fmt.Errorf("one condition, no ';'")
		}
		switch t.Upper() {
		case "SELECT", "WITH":
			return fmt.Errorf("subqueries are not allowed in a populate condition (offset %d)", t.Start)
		case "SETTINGS", "FORMAT", "UNION", "INTERSECT", "EXCEPT", "INTO", "LIMIT", "ORDER", "GROUP", "HAVING":
			if depth == 0 {
				return fmt.Errorf("%s is not part of a condition (offset %d)", t.Upper(), t.Start)
			}
		}
	}
	if depth != 0 {
		return fmt.Errorf("unbalanced '('")
	}
	return nil
}

type sourcePartition struct {
	id   string
	rows uint64
}

// sourcePartitions lists the source's partitions with their row counts. Reading
// `_partition_id` touches no column data.
func (s *Service) sourcePartitions(ctx context.Context, ws, source string) ([]sourcePartition, error) {
	resp, err := s.deps.Catalog.Query(ctx, &catalogv1.QueryRequest{
		Workspace: ws, Timeout: durationpb.New(time.Minute), MaxRows: 100000,
		Sql: "SELECT _partition_id AS partition_id, count() AS rows FROM " + warehouse.QuoteIdent(source) + " GROUP BY partition_id ORDER BY partition_id",
	})
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", source, err)
	}
	var out []sourcePartition
	for _, r := range resp.GetRows() {
		v := r.GetValues()
		if len(v) != 2 {
			continue
		}
		p := sourcePartition{id: v[0].GetStringValue()}
		if n := v[1].GetNumberValue(); n > 0 {
			p.rows = uint64(n)
		} else if sv := v[1].GetStringValue(); sv != "" {
			p.rows, _ = strconv.ParseUint(sv, 10, 64)
		}
		out = append(out, p)
	}
	return out, nil
}

// populateQueued records `populateview-queued` for the target (DATAFILES-SPEC §5.2). The
// event id derives from the job, so a retried publish writes one row; a failure to publish is
// logged, not returned: the job exists.
func (s *Service) populateQueued(ctx context.Context, job *schedulerv1.Job, pt populateTarget) {
	if s.deps.NATS == nil {
		return
	}
	pub := opsevents.NewPublisher(s.deps.NATS, nil)
	ids := opsevents.ResourceIDs(ctx, s.deps.Catalog, job.GetWorkspace(), pt.target)
	ev := opsevents.JobEvent(opsevents.JobResult{
		Workspace: job.GetWorkspace(), EventType: opsevents.EventPopulateViewQueued, JobID: job.GetId(),
		CreatedAt: job.GetCreateTime().AsTime(), DataSourceName: pt.target, PipeName: job.GetPipe(),
		DataSourceID: ids[pt.target], PipeID: ids[job.GetPipe()],
		Result: opsevents.ResultOK, Options: map[string]string{opsevents.OptionTriggerDataSourceID: pt.source},
	})
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := pub.Publish(pctx, ev); err != nil {
		s.log.Warn("populateview-queued event not recorded", "job", job.GetId(), "err", err)
	}
}
