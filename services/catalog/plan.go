package catalog

import (
	"fmt"
	"slices"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// dropView starts the statement that drops a materialized view. DROP TABLE drops views on
// every ClickHouse version; DROP VIEW is unknown to servers before 20.x (18.16 refuses it).
const dropView = "DROP TABLE IF EXISTS "

// mvPrefix names the materialized views Sluice creates: `__sluice_mv_<pipe>`. Resource names
// may not start with `__sluice`, so these never collide with Data Sources.
const mvPrefix = "__sluice_mv_"

// step is one action of a plan with the statements that apply it and those that undo it.
type step struct {
	action *catalogv1.PlanAction
	// phase orders the steps: reversible work first, irreversible drops last (see plan).
	phase int
	// undo runs, in order, when a later step fails.
	undo []string
}

const (
	phaseCreateTables = iota
	phaseAlterTables
	phaseDropViews
	phaseDropTables
	phaseCreateViews
	phaseMetadata
)

// plan is what a push does, in the order it runs:
//  1. create new tables (upstream first), then alter changed tables — undone by drops and
//     reverse alters if a later step fails;
//  2. drop the views of changed or removed materialized pipes, and of pipes whose tables are
//     recreated or removed — undone by creating them again;
//  3. drop removed tables, and drop and create recreated ones (only with force) — data
//     cannot come back, so this runs after everything reversible has succeeded;
//  4. create views (upstream first) — undone by dropping them.
type plan struct {
	steps []*step
}

func (pl *plan) add(phase int, kind catalogv1.PlanAction_Kind, rt catalogv1.ResourceType, name, reason string, stmts, undo []string) {
	pl.steps = append(pl.steps, &step{
		action: &catalogv1.PlanAction{Kind: kind, ResourceType: rt, Name: name, Reason: reason, Statements: stmts},
		phase:  phase, undo: undo,
	})
}

// changes reports whether the plan does anything.
func (pl *plan) changes() bool {
	for _, s := range pl.steps {
		if s.action.GetKind() != catalogv1.PlanAction_KIND_NONE {
			return true
		}
	}
	return false
}

func (pl *plan) actions() []*catalogv1.PlanAction {
	out := make([]*catalogv1.PlanAction, 0, len(pl.steps))
	for _, s := range pl.steps {
		out = append(out, s.action)
	}
	return out
}

func tableName(ws workspaceRecord, name string) string {
	return warehouse.QualifiedName(ws.Database, name)
}
func viewName(ws workspaceRecord, pipe string) string {
	return warehouse.QualifiedName(ws.Database, mvPrefix+pipe)
}

// makePlan compares the project with what is deployed. order is the project's topological
// order; viewSQL renders a materialized pipe's view query against the workspace database.
func makePlan(p *project, old *project, order []string, force bool, viewSQL func(*pipeDef) (string, error)) (*plan, []diag) {
	pl := &plan{}
	var diags []diag
	recreated := map[string]bool{}

	// Data Sources, upstream first.
	for _, name := range order {
		d, ok := p.datasources[name]
		if !ok {
			continue
		}
		tbl := tableName(p.ws, name)
		qtbl := tableName(p.ws, name+quarantineSuffix)
		if base := p.quarantineOf(name); base != "" {
			diags = append(diags, diag{pos: d.ds.Pos, msg: fmt.Sprintf("Data Source %s: the name is taken by the quarantine table of Data Source %s; rename it", name, base)})
			continue
		}
		prev, existed := old.datasources[name]
		switch {
		case !existed && p.replacedBroken[name] != "" && !force:
			// Its table exists, but its stored definition is one Sluice now refuses: what the
			// table holds cannot be compared with the new definition.
			diags = append(diags, diag{pos: d.ds.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_NEEDS_FORCE, msg: fmt.Sprintf(
				"Data Source %s: its deployed definition is refused by this version of Sluice (%s); push with --force to drop and recreate its table", name, p.replacedBroken[name])})
		case !existed && p.replacedBroken[name] != "":
			recreated[name] = true
			pl.add(phaseDropTables, catalogv1.PlanAction_KIND_RECREATE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
				"its deployed definition is refused by this version of Sluice (forced: existing rows are dropped)", []string{"DROP TABLE IF EXISTS " + tbl, d.ds.DDL(tbl)}, nil)
		case !existed:
			pl.add(phaseCreateTables, catalogv1.PlanAction_KIND_CREATE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
				"new Data Source", []string{d.ds.DDL(tbl), "DROP TABLE IF EXISTS " + qtbl, quarantineDDL(d.ds, qtbl)}, []string{"DROP TABLE IF EXISTS " + qtbl, "DROP TABLE IF EXISTS " + tbl})
		case prev.rec.Fingerprint == d.rec.Fingerprint:
			pl.add(phaseMetadata, catalogv1.PlanAction_KIND_NONE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name, "unchanged", nil, nil)
		default:
			alters, undo, why := alterTable(tbl, prev.ds, d.ds)
			switch {
			case why != "" && !force:
				diags = append(diags, diag{pos: d.ds.Engine.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_NEEDS_FORCE, msg: fmt.Sprintf(
					"Data Source %s: %s, which needs a new table: its data would be lost. Push with --force to drop and recreate it, "+
						"or create a new Data Source and backfill it while ingestion goes on (see docs/backfill.md)", name, why)})
				if d.ds.Engine.Pos.File == "" {
					diags[len(diags)-1].pos = d.ds.Pos
				}
			case why != "":
				recreated[name] = true
				pl.add(phaseDropTables, catalogv1.PlanAction_KIND_RECREATE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
					why+" (forced: existing rows are dropped)", []string{"DROP TABLE IF EXISTS " + tbl, d.ds.DDL(tbl), "DROP TABLE IF EXISTS " + qtbl, quarantineDDL(d.ds, qtbl)}, nil)
			case len(alters) == 0:
				pl.add(phaseMetadata, catalogv1.PlanAction_KIND_ALTER, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
					"description, tags or tokens changed (no DDL)", nil, nil)
			default:
				qa, qundo := quarantineAlters(qtbl, prev.ds, d.ds)
				pl.add(phaseAlterTables, catalogv1.PlanAction_KIND_ALTER, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
					"schema changed", append(alters, qa...), append(undo, qundo...))
			}
		}
	}
	for _, name := range sortedNames(old.datasources) {
		if _, ok := p.datasources[name]; !ok {
			pl.add(phaseDropTables, catalogv1.PlanAction_KIND_DELETE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, name,
				"not in the project any more", []string{"DROP TABLE IF EXISTS " + tableName(p.ws, name), "DROP TABLE IF EXISTS " + tableName(p.ws, name+quarantineSuffix)}, nil)
		}
	}

	// Pipes: only materialized pipes have DDL (their view).
	for _, name := range order {
		pd, ok := p.pipes[name]
		if !ok {
			continue
		}
		prev, existed := old.pipes[name]
		isMV := pd.pipeType() == datafile.NodeMaterialized
		wasMV := existed && prev.pipeType() == datafile.NodeMaterialized
		touchesRecreated := isMV && (recreated[pd.outputNode().node.Datasource] || slices.ContainsFunc(pd.outputNode().reads, func(r string) bool { return recreated[r] }))
		view := viewName(p.ws, name)
		var create []string
		if isMV {
			sql, err := viewSQL(pd)
			if err != nil {
				diags = append(diags, diag{pos: pd.outputNode().node.SQLPos, msg: fmt.Sprintf("materialized node %s: %v", pd.outputNode().node.Name, err)})
				continue
			}
			create = []string{fmt.Sprintf("CREATE MATERIALIZED VIEW %s TO %s AS\n%s", view, tableName(p.ws, pd.outputNode().node.Datasource), sql)}
		}
		switch {
		case !existed:
			reason := "new " + string(pd.pipeType()) + " pipe"
			if isMV {
				pl.add(phaseCreateViews, catalogv1.PlanAction_KIND_CREATE, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name, reason, create, []string{dropView + view})
			} else {
				pl.add(phaseMetadata, catalogv1.PlanAction_KIND_CREATE, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name, reason, nil, nil)
			}
		case prev.rec.Fingerprint == pd.rec.Fingerprint && !touchesRecreated:
			pl.add(phaseMetadata, catalogv1.PlanAction_KIND_NONE, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name, "unchanged", nil, nil)
		default:
			reason := "pipe changed"
			if touchesRecreated {
				reason = "a Data Source it reads or writes is recreated"
			}
			var oldCreate []string
			if wasMV {
				oldCreate = prev.rec.DDL
				pl.add(phaseDropViews, catalogv1.PlanAction_KIND_ALTER, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name,
					reason+": its materialized view is replaced", []string{dropView + view}, oldCreate)
			}
			if isMV {
				pl.add(phaseCreateViews, catalogv1.PlanAction_KIND_ALTER, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name, reason, create,
					[]string{dropView + view})
			} else if !wasMV {
				pl.add(phaseMetadata, catalogv1.PlanAction_KIND_ALTER, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name, reason, nil, nil)
			}
		}
	}
	for _, name := range sortedNames(old.pipes) {
		if _, ok := p.pipes[name]; ok {
			continue
		}
		var stmts, undo []string
		if old.pipes[name].pipeType() == datafile.NodeMaterialized {
			stmts = []string{dropView + viewName(p.ws, name)}
			undo = old.pipes[name].rec.DDL
		}
		pl.add(phaseDropViews, catalogv1.PlanAction_KIND_DELETE, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, name,
			"not in the project any more", stmts, undo)
	}
	slices.SortStableFunc(pl.steps, func(a, b *step) int { return a.phase - b.phase })
	return pl, diags
}

// alterTable returns the ALTER statements that turn prev into next, with their undo, or the
// reason the change needs a new table.
func alterTable(tbl string, prev, next *datafile.DataSource) (stmts, undo []string, recreate string) {
	pe, ne := prev.Engine, next.Engine
	pe.TTL, ne.TTL = "", ""
	pe.Pos, ne.Pos = datafile.Pos{}, datafile.Pos{}
	if pe.Clause() != ne.Clause() {
		return nil, nil, describeEngineChange(prev.Engine, next.Engine)
	}
	old := map[string]datafile.Column{}
	for _, c := range prev.Columns {
		old[c.Name] = c
	}
	keep := map[string]bool{}
	after := ""
	for _, c := range next.Columns {
		keep[c.Name] = true
		o, ok := old[c.Name]
		switch {
		case !ok:
			pos := "FIRST"
			if after != "" {
				pos = "AFTER " + warehouse.QuoteIdent(after)
			}
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", tbl, c.ColumnSQL(), pos))
			undo = append(undo, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", tbl, warehouse.QuoteIdent(c.Name)))
		case o.ColumnSQL() != c.ColumnSQL():
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s", tbl, c.ColumnSQL()))
			undo = append(undo, fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s", tbl, o.ColumnSQL()))
		}
		after = c.Name
	}
	for _, c := range prev.Columns {
		if !keep[c.Name] {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", tbl, warehouse.QuoteIdent(c.Name)))
		}
	}
	oldIdx := map[string]string{}
	for _, i := range prev.Indexes {
		oldIdx[i.Name] = i.IndexSQL()
	}
	newIdx := map[string]bool{}
	for _, i := range next.Indexes {
		newIdx[i.Name] = true
		if o, ok := oldIdx[i.Name]; ok && o == i.IndexSQL() {
			continue
		} else if ok {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP INDEX %s", tbl, warehouse.QuoteIdent(i.Name)))
		}
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD %s", tbl, i.IndexSQL()))
		undo = append(undo, fmt.Sprintf("ALTER TABLE %s DROP INDEX IF EXISTS %s", tbl, warehouse.QuoteIdent(i.Name)))
	}
	for _, i := range prev.Indexes {
		if !newIdx[i.Name] {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP INDEX %s", tbl, warehouse.QuoteIdent(i.Name)))
		}
	}
	if o, n := strings.TrimSpace(prev.Engine.TTL), strings.TrimSpace(next.Engine.TTL); o != n {
		if n == "" {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s REMOVE TTL", tbl))
		} else {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s MODIFY TTL %s", tbl, n))
		}
	}
	return stmts, undo, ""
}

func describeEngineChange(a, b datafile.Engine) string {
	var what []string
	diff := func(name, x, y string) {
		if strings.TrimSpace(x) != strings.TrimSpace(y) {
			what = append(what, name)
		}
	}
	diff("ENGINE", a.EngineName(), b.EngineName())
	diff("ENGINE_PARTITION_KEY", a.PartitionKey, b.PartitionKey)
	diff("ENGINE_SORTING_KEY", a.SortingKey, b.SortingKey)
	diff("ENGINE_PRIMARY_KEY", a.PrimaryKey, b.PrimaryKey)
	diff("ENGINE_SAMPLING_KEY", a.SamplingKey, b.SamplingKey)
	diff("ENGINE_SETTINGS", a.SettingsSQL(), b.SettingsSQL())
	if len(what) == 0 {
		what = append(what, "the engine's arguments")
	}
	return "changing " + strings.Join(what, ", ")
}
