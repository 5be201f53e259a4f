package catalog

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// PlanPopulate implements CatalogService: what a populate reads and writes, checked, with the
// condition its steps apply. The catalog owns the workspace's SQL: the scheduler asks it, and
// writes none. The source's partitions come from `SELECT _partition_id, count() ... GROUP BY
// _partition_id` (no column data read); the condition is analysed by ClickHouse with
// `SELECT * FROM <source> WHERE <condition> LIMIT 0`, as the hosted platform validates it (not
// EXPLAIN: servers before 20.6 have none; LIMIT 0 reads nothing). Every statement goes through
// the read-only Query path, which qualifies the tables and runs them with readonly=1.
func (s *Service) PlanPopulate(ctx context.Context, req *catalogv1.PlanPopulateRequest) (*catalogv1.PlanPopulateResponse, error) {
	plan, err := s.planPopulate(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, grpcError(err)
	}
	return plan, nil
}

func (s *Service) planPopulate(ctx context.Context, req *catalogv1.PlanPopulateRequest) (*catalogv1.PlanPopulateResponse, error) {
	ws, pipe := req.GetWorkspace(), req.GetPipe()
	if pipe == "" {
		return nil, invalidArg("pipe", "required")
	}
	plan, err := s.populateTarget(ctx, ws, pipe, req.GetNode())
	if err != nil {
		return nil, err
	}
	if err := s.checkPopulateOptions(ctx, ws, plan, req); err != nil {
		return nil, err
	}
	var conds []string
	if plan.GetSqlCondition() != "" {
		conds = append(conds, "("+plan.GetSqlCondition()+")")
	}
	if col := req.GetCutoverColumn(); col != "" {
		conds = append(conds, cutoverCondition(col, req.GetCutoverValue()))
	}
	plan.Condition = strings.Join(conds, " AND ")
	if plan.Partitions, err = s.sourcePartitions(ctx, ws, plan.GetSource()); err != nil {
		return nil, err
	}
	return plan, nil
}

// populateTarget finds the materialized node (the one given, or the pipe's one materialized
// node), its target and the Data Source that fires it, with the hosted CLI's errors.
func (s *Service) populateTarget(ctx context.Context, ws, pipe, node string) (*catalogv1.PlanPopulateResponse, error) {
	pr, err := s.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: ws, Name: pipe})
	if err != nil {
		return nil, err
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
		return nil, invalidArg("node", "pipe %s has no node %s", pipe, node)
	case node != "" && named.GetType() != catalogv1.NodeType_NODE_TYPE_MATERIALIZED:
		return nil, invalidArg("node", "node %s of pipe %s is not materialized: only a materialized node can be populated", node, pipe)
	case node != "":
		n = named
	case len(mat) == 0:
		return nil, invalidArg("pipe", "pipe %s is not materialized: it has no materialized node to populate", pipe)
	case len(mat) > 1:
		names := make([]string, len(mat))
		for i, m := range mat {
			names[i] = m.GetName()
		}
		return nil, invalidArg("node", "pipe %s has %d materialized nodes (%s): choose one with --node", pipe, len(mat), strings.Join(names, ", "))
	default:
		n = mat[0]
	}
	g, err := s.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: ws, Resource: pipe})
	if err != nil {
		return nil, err
	}
	plan := &catalogv1.PlanPopulateResponse{Node: n.GetName(), Target: n.GetTargetDatasource()}
	for _, e := range g.GetEdges() {
		if e.GetKind() == catalogv1.GraphEdge_KIND_TRIGGERS && e.GetDownstream() == pipe {
			plan.Source = e.GetUpstream()
		}
		if plan.Target == "" && e.GetKind() == catalogv1.GraphEdge_KIND_MATERIALIZES && e.GetUpstream() == pipe {
			plan.Target = e.GetDownstream()
		}
	}
	if plan.Source == "" {
		return nil, invalidArg("pipe", "materialized pipe %s reads no Data Source that fires it: nothing to populate from", pipe)
	}
	if plan.Target == "" {
		return nil, invalidArg("pipe", "materialized node %s of pipe %s has no target Data Source", plan.Node, pipe)
	}
	return plan, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkPopulateOptions checks sql_condition and the cut-over, and sets the plan's
// sql_condition to the condition without comments. A condition must be one expression: steps
// splice it into `WHERE _partition_id = '...' AND (<condition>)`, so it may not close that
// parenthesis, end the statement or read other tables.
func (s *Service) checkPopulateOptions(ctx context.Context, ws string, plan *catalogv1.PlanPopulateResponse, req *catalogv1.PlanPopulateRequest) error {
	source := plan.GetSource()
	if cond := strings.TrimSpace(req.GetSqlCondition()); cond != "" {
		if err := checkCondition(cond); err != nil {
			return invalidArg("options.sql_condition", "%s", err)
		}
		// Steps splice the condition into a longer WHERE: without comments, so that a `--`
		// cannot swallow what follows it.
		norm, err := chsql.Normalize(cond)
		if err != nil {
			return invalidArg("options.sql_condition", "%s", err)
		}
		cond = strings.TrimSpace(norm)
		plan.SqlCondition = cond
		if _, err := s.readOnly(ctx, ws, "SELECT * FROM "+warehouse.QuoteIdent(source)+" WHERE ("+cond+") LIMIT 0", 0); err != nil {
			return invalidArg("options.sql_condition", "%q is not a valid condition on %s: %s", cond, source, status.Convert(err).Message())
		}
	}
	col, val := req.GetCutoverColumn(), req.GetCutoverValue()
	if col == "" && val == "" {
		return nil
	}
	if req.GetCutoverSnapshot() {
		return invalidArg("options.cutover_snapshot", "a snapshot cut-over needs no cut-over column: give one or the other")
	}
	if col == "" || val == "" {
		return invalidArg("options.cutover_column", "cutover_column and cutover_value go together")
	}
	if !identRE.MatchString(col) {
		return invalidArg("options.cutover_column", "%q is not a column name", col)
	}
	if _, err := s.readOnly(ctx, ws, "EXPLAIN SELECT * FROM "+warehouse.QuoteIdent(source)+" WHERE "+cutoverCondition(col, val), 0); err != nil {
		return invalidArg("options.cutover_column", "cut-over %s <= %q does not apply to %s: %s", col, val, source, status.Convert(err).Message())
	}
	// Refused now if the data is past it already (the job checks again before it changes
	// anything: rows keep coming meanwhile).
	resp, err := s.readOnly(ctx, ws, "SELECT count(), toString(max("+warehouse.QuoteIdent(col)+")) FROM "+warehouse.QuoteIdent(source)+" WHERE NOT ("+cutoverCondition(col, val)+")", 0)
	if err != nil {
		return err
	}
	if rows := resp.GetRows(); len(rows) == 1 && len(rows[0].GetValues()) == 2 {
		// count() is a UInt64: its exact decimal string.
		if n, _ := strconv.ParseUint(rows[0].GetValues()[0].GetStringValue(), 10, 64); n > 0 {
			return invalidArg("options.cutover_value", "cut-over %s > %q is behind the data: %d rows of %s are after it already (the latest: %s); choose a cut-over ahead of the data, for example --cutover-in 30s",
				col, val, n, source, rows[0].GetValues()[1].GetStringValue())
		}
	}
	return nil
}

// cutoverCondition is the populate's side of a cut-over: the rows up to the cut-over value (the
// materialized view handles the rows after it).
func cutoverCondition(column, value string) string {
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

// sourcePartitions lists the source's partitions with their rows and uncompressed bytes, from
// the active parts in system.parts (no column data read): what the scheduler sizes the steps by.
func (s *Service) sourcePartitions(ctx context.Context, ws, source string) ([]*catalogv1.PopulatePartition, error) {
	w, err := s.workspace(ctx, ws)
	if err != nil {
		return nil, err
	}
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf(
		"SELECT partition_id, sum(rows), sum(data_uncompressed_bytes) FROM system.parts WHERE database = %s AND table = %s AND active GROUP BY partition_id ORDER BY partition_id",
		warehouse.QuoteString(w.Database), warehouse.QuoteString(source)))
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", source, err)
	}
	var out []*catalogv1.PopulatePartition
	for _, r := range res.Rows {
		if len(r) != 3 || warehouse.Uint64(r[1]) == 0 {
			continue
		}
		out = append(out, &catalogv1.PopulatePartition{Id: fmt.Sprint(r[0]), Rows: warehouse.Uint64(r[1]), Bytes: warehouse.Uint64(r[2])})
	}
	return out, nil
}

// readOnly runs a statement of the catalog's own on a workspace through the read-only Query
// path (tables qualified with the workspace database, readonly=1).
func (s *Service) readOnly(ctx context.Context, ws, sql string, maxRows int64) (*catalogv1.QueryResponse, error) {
	timeout := 30 * time.Second
	if maxRows > 0 {
		timeout = time.Minute
	}
	return s.Query(ctx, &catalogv1.QueryRequest{Workspace: ws, Sql: sql, Timeout: durationpb.New(timeout), MaxRows: maxRows})
}
