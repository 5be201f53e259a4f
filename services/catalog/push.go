package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/services/catalog/datafile"
	"github.com/sluicehq/sluice/services/catalog/template"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sluicehq/sluice/platform/apierr"
)

// loadProject is what is deployed in a workspace, analysed.
func (s *Service) loadProject(ctx context.Context, ws workspaceRecord) (*project, error) {
	rev, err := s.store.resourcesRevision(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	if p := s.projects.get(ws, rev); p != nil {
		return p, nil
	}
	deployed, err := s.store.resources(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	p, diags := s.buildProject(ws, deployed, nil, nil, false)
	diags = append(diags, p.analyze()...)
	for _, d := range errorsOf(diags) {
		s.log.Warn("deployed resource has a problem", "workspace", ws.Name, "problem", d.String())
	}
	s.projects.put(ws, rev, p)
	return p, nil
}

// push validates and plans the whole set of files before any DDL runs, then applies the plan.
// It is all or nothing: invalid files change nothing, and a failure part-way rolls back.
func (s *Service) push(ctx context.Context, req *catalogv1.PushRequest) (*catalogv1.PushResponse, error) {
	if len(req.GetFiles()) == 0 {
		return nil, invalidArg("files", "no datafiles given")
	}
	for i, f := range req.GetFiles() {
		if f.GetPath() == "" || path.IsAbs(f.GetPath()) {
			return nil, invalidArg(fmt.Sprintf("files[%d].path", i), "%q must be a relative path", f.GetPath())
		}
	}
	ws, err := s.workspace(ctx, req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	if err := authorizeFiles(ctx, ws.Name, req.GetFiles()); err != nil {
		return nil, err
	}
	ctx, unlock, err := s.lock(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	deployed, err := s.store.resources(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	old, _ := s.buildProject(ws, deployed, nil, nil, false)
	old.analyze()
	next, diags := s.buildProject(ws, deployed, req.GetFiles(), req.GetVariables(), req.GetPrune())
	// Every stage runs even when an earlier one found problems, on what it can still check, so
	// that one answer lists every problem of the push.
	diags = append(diags, next.analyze()...)
	order, cycles := next.buildGraph().topoOrder()
	for _, c := range cycles {
		diags = append(diags, diag{pos: next.cyclePos(c), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_CYCLE, msg: cycleMessage(c)})
	}
	chDiags, err := s.checkInClickHouse(ctx, next, order, filesWithErrors(diags))
	if err != nil {
		return nil, err
	}
	diags = append(diags, chDiags...)
	if errs := errorsOf(diags); len(errs) > 0 {
		return nil, errs
	}
	pl, planDiags := makePlan(next, old, order, req.GetForce(), func(pd *pipeDef) (string, error) {
		c := &composer{p: next, db: ws.Database}
		return c.node(pd.outputNode())
	})
	diags = append(diags, planDiags...)
	diags = append(diags, checkPlanStatements(next, pl)...)
	if errs := errorsOf(diags); len(errs) > 0 {
		return nil, errs
	}
	resp := &catalogv1.PushResponse{Actions: pl.actions()}
	if err := authorizeRemovals(ctx, ws.Name, resp.Actions); err != nil {
		return nil, err
	}
	tokenChanges, err := s.planTokens(ctx, ws.Name, next)
	if err != nil {
		return nil, err
	}
	if err := authorizeTokenChanges(ctx, ws.Name, tokenChanges); err != nil {
		return nil, err
	}
	for _, w := range warningsOf(diags) {
		resp.Warnings = append(resp.Warnings, w.proto())
	}
	filesChanged := s.filesChanged(ctx, ws, req.GetFiles())
	if req.GetDryRun() {
		return resp, nil
	}
	if !pl.changes() && !filesChanged {
		if len(tokenChanges) > 0 {
			// Only tokens differ from the files (one was deleted, or made by hand): bring
			// them back in step.
			if err := s.pushTokens(ctx, ws, tokenChanges, resp); err != nil {
				return nil, err
			}
		}
		return resp, nil
	}
	start := s.deps.Now()
	rowsBefore := s.rowsBefore(ctx, ws, pl)
	writes, err := s.records(ctx, ws, next, old, req.GetFiles(), pl)
	if err != nil {
		return nil, err
	}
	if err := s.deploy(ctx, ws.Name, pl, writes); err != nil {
		var ae *applyError
		if errors.As(err, &ae) {
			s.publish(ctx, pushEvents(ws, next, old, pl, start, s.deps.Now().Sub(start), ae.name, err, rowsBefore))
		}
		return nil, err
	}
	s.publish(ctx, pushEvents(ws, next, old, pl, start, s.deps.Now().Sub(start), "", nil, rowsBefore))
	s.announce(ws.Name)
	resp.Applied = true
	s.log.Info("push applied", "workspace", ws.Name, "actions", len(resp.Actions))
	if err := s.pushTokens(ctx, ws, tokenChanges, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// filesChanged reports whether any pushed file differs from its latest stored version.
func (s *Service) filesChanged(ctx context.Context, ws workspaceRecord, files []*catalogv1.Datafile) bool {
	for _, f := range files {
		latest, err := s.store.latestFile(ctx, ws.Name, path.Clean(f.GetPath()))
		if err != nil || latest.Content != f.GetContent() || latest.Deleted {
			return true
		}
	}
	return false
}

// records are the catalog writes that record a push: a new version of each changed file and
// the deployed resources. They are computed before any DDL runs and written after it all ran
// (see deploy).
func (s *Service) records(ctx context.Context, ws workspaceRecord, next, old *project, files []*catalogv1.Datafile, pl *plan) ([]kvWrite, error) {
	now := s.deps.Now().UTC()
	versions := map[string]int64{}
	var writes []kvWrite
	for _, f := range files {
		p := path.Clean(f.GetPath())
		v, w, err := s.store.fileVersion(ctx, ws.Name, p, f.GetContent(), false, now)
		if err != nil {
			return nil, err
		}
		if w != nil {
			writes = append(writes, *w)
		}
		versions[p] = v
	}
	ddl := map[string][]string{}
	for _, st := range pl.steps {
		if st.phase == phaseCreateViews {
			ddl[st.action.GetName()] = st.action.GetStatements()
		}
	}
	put := func(kind resourceKind, name string, rec resourceRecord, prev *resourceRecord) error {
		if prev != nil && prev.Fingerprint == rec.Fingerprint && ddl[name] == nil {
			return nil
		}
		rec.ID = newID(kind)
		if prev != nil {
			rec.ID = prev.ID
			rec.DDL = prev.DDL
		}
		if d, ok := ddl[name]; ok {
			rec.DDL = d
		}
		if v, ok := versions[rec.Path]; ok {
			rec.FileVersion = v
		}
		rec.UpdateTime = now
		w, err := putWrite(resKey(ws.Name, kind, name), rec)
		writes = append(writes, w)
		return err
	}
	for name, d := range next.datasources {
		var prev *resourceRecord
		if o, ok := old.datasources[name]; ok {
			prev = &o.rec
		}
		if err := put(kindDataSource, name, d.rec, prev); err != nil {
			return nil, err
		}
	}
	for name, pd := range next.pipes {
		var prev *resourceRecord
		if o, ok := old.pipes[name]; ok {
			prev = &o.rec
		}
		rec := pd.rec
		if pd.pipeType() != datafile.NodeMaterialized {
			rec.DDL = nil
		}
		if err := put(kindPipe, name, rec, prev); err != nil {
			return nil, err
		}
	}
	for name := range old.datasources {
		if _, ok := next.datasources[name]; !ok {
			writes = append(writes, kvWrite{Key: resKey(ws.Name, kindDataSource, name), Delete: true})
		}
	}
	for name := range old.pipes {
		if _, ok := next.pipes[name]; !ok {
			writes = append(writes, kvWrite{Key: resKey(ws.Name, kindPipe, name), Delete: true})
		}
	}
	return writes, nil
}

// cyclePos is where a loop of materialized views is reported: the first materialized node of
// the loop in a pushed file (its DATASOURCE line), else the first member's definition.
func (p *project) cyclePos(cycle []string) datafile.Pos {
	for _, name := range cycle {
		if pd, ok := p.pipes[name]; ok && pd.pushed {
			for _, n := range pd.pipe.Nodes {
				if n.Type == datafile.NodeMaterialized {
					return keyPos(&n, "DATASOURCE")
				}
			}
		}
	}
	return p.posOf(cycle[0])
}

// filesWithErrors are the files that already have an error: the ClickHouse check skips their
// pipes rather than report the same problem again.
func filesWithErrors(diags []diag) map[string]bool {
	out := map[string]bool{}
	for _, d := range errorsOf(diags) {
		out[d.pos.File] = true
	}
	return out
}

// posOf is where a resource is defined.
func (p *project) posOf(name string) datafile.Pos {
	if d, ok := p.datasources[name]; ok {
		return d.ds.Pos
	}
	if pd, ok := p.pipes[name]; ok {
		return pd.pipe.Pos
	}
	return datafile.Pos{}
}

func newID(kind resourceKind) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "t_"
	if kind == kindPipe {
		prefix = "p_"
	}
	return prefix + hex.EncodeToString(b[:])
}

// renderNode renders a node of a deployed pipe for running: parameters, job_timestamp, earlier
// nodes inlined, tables qualified.
func (s *Service) renderNode(ctx context.Context, req *catalogv1.RenderNodeRequest) (*catalogv1.RenderNodeResponse, error) {
	ws, err := s.workspace(ctx, req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	p, err := s.loadProject(ctx, ws)
	if err != nil {
		return nil, err
	}
	pd, err := p.deployedPipe(req.GetPipe())
	if err != nil {
		return nil, err
	}
	nd := pd.outputNode()
	if req.GetNode() != "" {
		nd = pd.nodeNamed(req.GetNode())
	}
	if nd == nil {
		return nil, notFound("pipe %s has no node %q", pd.pipe.Name, req.GetNode())
	}
	if nd.tmpl == nil {
		return nil, invalidArg("pipe", "node %s of pipe %s does not parse", nd.node.Name, pd.pipe.Name)
	}
	if err := checkParameterNames(p, nd, req.GetParameters()); err != nil {
		return nil, err
	}
	ts := s.deps.Now().UTC()
	if req.GetJobTimestamp() != nil {
		ts = req.GetJobTimestamp().AsTime().UTC()
	}
	c := &composer{p: p, db: ws.Database, params: req.GetParameters(), opts: template.RenderOptions{JobTimestamp: ts.Truncate(time.Second), Check: req.GetCheck()}}
	sql, err := c.node(nd)
	if cut := pd.rec.Cutover; err == nil && cut != nil && !req.GetWithoutCutover() && nd == pd.outputNode() && pd.pipeType() == datafile.NodeMaterialized {
		// The view as it is: with the cut-over it handles (every cascade through it must see
		// what the view would do).
		if trigger, ok := p.trigger(pd); ok {
			sql, err = withCutover(sql, ws.Database, trigger, cut)
		}
	}
	if err == nil {
		err = s.verifyAST(ctx, ws.Database, sql)
	}
	if err != nil {
		return nil, renderError(err)
	}
	resp := &catalogv1.RenderNodeResponse{Sql: sql, FileVersion: pd.rec.FileVersion, Reads: nd.reads}
	conn, err := s.deps.WorkspaceUsers.For(ctx, ws.Name, ws.Database, s.deps.Warehouse)
	if err != nil {
		return nil, err
	}
	res, err := conn.Query(ctx, "DESCRIBE TABLE ("+sql+")")
	if err != nil {
		return nil, err
	}
	cols := describedColumns(res)
	if nd.node.Type == datafile.NodeCopy {
		if d, ok := p.datasources[nd.node.TargetDatasource]; ok {
			if mapped, ok := positionalColumns(cols, d.ds); ok {
				cols = mapped
			}
		}
	}
	for _, c := range cols {
		resp.Columns = append(resp.Columns, columnProto(c))
	}
	return resp, nil
}

func renderError(err error) error {
	var me *template.MissingParametersError
	if errors.As(err, &me) {
		fields := make([]*errdetails.BadRequest_FieldViolation, len(me.Names))
		for i, n := range me.Names {
			fields[i] = &errdetails.BadRequest_FieldViolation{Field: "parameters[" + n + "]", Description: "required parameter not given"}
		}
		return apierr.BadRequest(commonv1.ErrorReason_ERROR_REASON_MISSING_PARAMETER, "parameters: "+me.Error(), fields...)
	}
	return invalidArg("parameters", "%v", err)
}

// rowsBefore counts the rows of the Data Sources a plan deletes or recreates, for their ops-log
// events.
func (s *Service) rowsBefore(ctx context.Context, ws workspaceRecord, pl *plan) map[string]uint64 {
	out := map[string]uint64{}
	for _, st := range pl.steps {
		k := st.action.GetKind()
		if st.action.GetResourceType() != catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE || (k != catalogv1.PlanAction_KIND_DELETE && k != catalogv1.PlanAction_KIND_RECREATE) {
			continue
		}
		res, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM "+tableName(ws, st.action.GetName()))
		if err == nil && len(res.Rows) == 1 {
			if n, ok := res.Rows[0][0].(uint64); ok {
				out[st.action.GetName()] = n
			}
		}
	}
	return out
}

// authorizeFiles checks that the caller may push these kinds of files: DATASOURCES:CREATE for
// .datasource files, PIPES:CREATE for .pipe files (.incl files are part of those).
func authorizeFiles(ctx context.Context, ws string, files []*catalogv1.Datafile) error {
	var need []auth.Scope
	for _, f := range files {
		var sc auth.Scope
		switch path.Ext(f.GetPath()) {
		case ".datasource":
			sc = auth.Scope{Type: auth.DataSourcesCreate}
		case ".pipe":
			sc = auth.Scope{Type: auth.PipesCreate}
		default:
			continue
		}
		if !slices.Contains(need, sc) {
			need = append(need, sc)
		}
	}
	return auth.Require(ctx, ws, need...)
}

// authorizeRemovals checks that the caller may drop what a push removes (with prune) or
// recreates (with force).
func authorizeRemovals(ctx context.Context, ws string, actions []*catalogv1.PlanAction) error {
	var need []auth.Scope
	for _, a := range actions {
		isPipe := a.GetResourceType() == catalogv1.ResourceType_RESOURCE_TYPE_PIPE
		switch {
		case a.GetKind() == catalogv1.PlanAction_KIND_DELETE && isPipe:
			need = append(need, auth.Scope{Type: auth.PipesDrop, Resource: a.GetName()})
		case a.GetKind() == catalogv1.PlanAction_KIND_DELETE, a.GetKind() == catalogv1.PlanAction_KIND_RECREATE && !isPipe:
			// Recreating a Data Source (--force) drops its rows.
			need = append(need, auth.Scope{Type: auth.DataSourcesDrop, Resource: a.GetName()})
		}
	}
	return auth.Require(ctx, ws, need...)
}

// pushTokens writes the token changes of a push and lists the tokens it created, with their
// secrets, in the response.
func (s *Service) pushTokens(ctx context.Context, ws workspaceRecord, changes []tokenChange, resp *catalogv1.PushResponse) error {
	made, secrets, err := s.applyTokens(ctx, changes)
	for i, r := range made {
		resp.NewTokens = append(resp.NewTokens, &catalogv1.IssuedToken{Token: tokenProto(r), Secret: secrets[i]})
	}
	if err != nil {
		return fmt.Errorf("the push was applied, but its tokens were not all written (push again to finish): %w", err)
	}
	if len(changes) > 0 {
		s.log.Info("push updated tokens", "workspace", ws.Name, "changes", len(changes), "created", len(made))
	}
	return nil
}

// checkParameterNames refuses a parameter that the node's query never reads: a typo would
// otherwise run the query silently with the default. The node reads the parameters of its own
// template, of the earlier nodes and other pipes it reads, and job_timestamp.
func checkParameterNames(p *project, nd *nodeDef, given map[string]string) error {
	if len(given) == 0 {
		return nil
	}
	known := map[string]bool{"job_timestamp": true}
	seen := map[*nodeDef]bool{}
	var walk func(n *nodeDef)
	walk = func(n *nodeDef) {
		if n == nil || seen[n] || n.tmpl == nil {
			return
		}
		seen[n] = true
		for _, prm := range n.tmpl.Parameters() {
			known[prm.Name] = true
		}
		for _, r := range n.reads {
			if dep := n.pipe.nodeNamed(r); dep != nil {
				walk(dep)
			} else if pd, ok := p.pipes[r]; ok {
				walk(pd.outputNode())
			}
		}
	}
	walk(nd)
	var unknown []string
	for name := range given {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := sortedNames(known)
	// UNKNOWN_PARAMETER listing the valid names, like the scheduler's refusal of a NOOP knob;
	// the message names the node and every unknown parameter.
	e := apierr.UnknownName(commonv1.ErrorReason_ERROR_REASON_UNKNOWN_PARAMETER, "parameters", "parameter", unknown[0], names)
	e.Message = fmt.Sprintf("parameters: node %s of pipe %s has no parameter %s; its parameters are: %s",
		nd.node.Name, nd.pipe.pipe.Name, strings.Join(unknown, ", "), strings.Join(names, ", "))
	return e
}
