package populate

import (
	"context"
	"fmt"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// jobPlan is what every step of a job asks the catalog: asked once per job and executor (the
// steps of one job use the same flow and query, also if the pipe is pushed meanwhile).
type jobPlan struct {
	flow *dataflow.Flow
	// flowEpoch is the view fence's epoch the flow was resolved at (see step/fence.go).
	flowEpoch uint64
	query     string
	columns   []string
	hashKey   string
	rendered  bool
}

// maxPlans bounds the plans an executor keeps (one per recent populate job).
const maxPlans = 64

func (r *Runner) cached(id string) *jobPlan {
	r.mu.Lock()
	defer r.mu.Unlock()
	pl := r.plans[id]
	if pl == nil {
		if len(r.plans) >= maxPlans {
			for k := range r.plans {
				delete(r.plans, k)
				break
			}
		}
		pl = &jobPlan{}
		r.plans[id] = pl
	}
	return pl
}

// flow resolves the job's data flow (once per job and view fence epoch: a cut-over of a view
// downstream changes its query).
func (r *Runner) flow(ctx context.Context, job *schedulerv1.Job, epoch uint64) (dataflow.Flow, error) {
	pl := r.cached(job.GetId())
	r.mu.Lock()
	f, at := pl.flow, pl.flowEpoch
	r.mu.Unlock()
	if f != nil && at == epoch {
		return *f, nil
	}
	flow, err := dataflow.Resolve(ctx, r.d.Catalog, job.GetWorkspace(), job.GetTargetDatasource(), job.GetPopulate().GetOnlyThisView())
	if err != nil {
		return flow, step.Transient(err)
	}
	r.mu.Lock()
	pl.flow, pl.flowEpoch = &flow, epoch
	r.mu.Unlock()
	return flow, nil
}

// query renders the job's node query (re-pointed at the source) and finds what sub-ranges hash.
func (r *Runner) query(ctx context.Context, job *schedulerv1.Job, source, db string) (jobPlan, error) {
	pl := r.cached(job.GetId())
	r.mu.Lock()
	done := *pl
	r.mu.Unlock()
	if done.rendered {
		return done, nil
	}
	// The node's own query, without the cut-over its view may handle: the populate handles
	// the rows up to it.
	rn, err := r.d.Catalog.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: job.GetWorkspace(), Pipe: job.GetPipe(), Node: job.GetNode(), WithoutCutover: true})
	if err != nil {
		return done, step.Transient(fmt.Errorf("query of %s: %w", job.GetPipe(), err))
	}
	query, err := repointSource(rn.GetSql(), db, source)
	if err != nil {
		return done, step.Permanent(fmt.Errorf("query of %s: %w", job.GetPipe(), err))
	}
	ds, err := r.d.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Workspace: job.GetWorkspace(), Name: source})
	if err != nil {
		return done, step.Transient(fmt.Errorf("source %s: %w", source, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pl.query, pl.hashKey, pl.columns, pl.rendered = query, hashKey(ds.GetDatasource()), nil, true
	for _, c := range rn.GetColumns() {
		pl.columns = append(pl.columns, c.GetName())
	}
	return *pl, nil
}

// hashKey is what sub-ranges of a partition hash: the sorting key (cheap to read, and rows of
// one key stay together), else every column.
func hashKey(ds *catalogv1.DataSource) string {
	if k := strings.TrimSpace(ds.GetSortingKey()); k != "" && k != "tuple()" {
		return k
	}
	var cols []string
	for _, c := range ds.GetColumns() {
		cols = append(cols, warehouse.QuoteIdent(c.GetName()))
	}
	return strings.Join(cols, ", ")
}

// repointSource rewrites the node's query so that its trigger reference (the left-most table,
// the one whose inserts fire the view) reads a subquery; the result has one %s for it. Other
// references to the source (a self-join) read the whole table, as they do when the view fires.
func repointSource(sql, db, source string) (string, error) {
	const mark = "\x00SOURCE\x00"
	out, err := chsql.ReadLeftFrom(sql, db, source, mark)
	if err != nil {
		return "", err
	}
	out = strings.ReplaceAll(out, "%", "%%")
	return strings.Replace(out, mark, "%s", 1), nil
}
