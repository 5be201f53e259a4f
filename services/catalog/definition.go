package catalog

import (
	"context"
	"fmt"
	"sort"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// A Data Source's definition reaches ClickHouse as CREATE TABLE and ALTER TABLE. The datafile
// parser builds those from parsed parts (see datafile/ddlparts.go); what needs the workspace or
// the engine is checked here: the columns a definition reads are its own (once a connector's
// columns are added), its settings are settings the engine knows, and every statement is
// checked once more before it is sent.

// joinSettings are the settings a Join-engine table takes (ClickHouse's Join engine docs).
var joinSettings = map[string]bool{
	"join_use_nulls": true, "max_rows_in_join": true, "max_bytes_in_join": true,
	"join_overflow_mode": true, "join_any_take_last_row": true, "persistent": true,
}

// refusedTableSettings are MergeTree settings a workspace may not set, with why.
var refusedTableSettings = map[string]string{
	"disk":           "which disks hold a table is the server operator's choice",
	"storage_policy": "which disks hold a table is the server operator's choice",
	"table_disk":     "which disks hold a table is the server operator's choice",
	// How many broken parts a table tolerates decides whether the server starts after a
	// crash: a table's definition may not make it refuse to start.
	"max_suspicious_broken_parts":       "it decides whether the server can load the table after a crash",
	"max_suspicious_broken_parts_bytes": "it decides whether the server can load the table after a crash",
}

// probeTableSettings asks the engine which MergeTree settings it knows.
func (s *Service) probeTableSettings(ctx context.Context) error {
	res, err := s.deps.Warehouse.Query(ctx, "SELECT name FROM system.merge_tree_settings")
	if err != nil {
		return fmt.Errorf("probe ClickHouse MergeTree settings: %w", err)
	}
	known := make(map[string]bool, len(res.Rows))
	for _, r := range res.Rows {
		if len(r) > 0 {
			known[fmt.Sprint(r[0])] = true
		}
	}
	s.caps.mergeTreeSettings = known
	return nil
}

// checkDefinition applies to a Data Source what needs more than its file: the columns its
// expressions, keys and engine arguments read are its own, and its ENGINE_SETTINGS are
// settings its engine knows (asked of the engine when the catalog starts).
func checkDefinition(ds *datafile.DataSource, caps engineCaps) []diag {
	var diags []diag
	if err := ds.CheckColumns(); err != nil {
		diags = append(diags, diagOf(err, ds.Path))
	}
	engine := ds.Engine.EngineName()
	for _, st := range ds.Engine.Settings {
		if st.Pos.File == "" {
			continue // added by Sluice (adaptDataSource), not written by the user
		}
		var msg string
		switch {
		case engine == "Null":
			msg = fmt.Sprintf("ENGINE_SETTINGS: the Null engine takes no settings (%s)", st.Name)
		case engine == "Join":
			if !joinSettings[st.Name] {
				msg = fmt.Sprintf("ENGINE_SETTINGS: %s is not a setting of the Join engine (%s)", st.Name, strings.Join(sortedNames(joinSettings), ", "))
			}
		case refusedTableSettings[st.Name] != "":
			msg = fmt.Sprintf("ENGINE_SETTINGS: %s is refused: %s", st.Name, refusedTableSettings[st.Name])
		case caps.mergeTreeSettings != nil && !caps.mergeTreeSettings[st.Name]:
			msg = fmt.Sprintf("ENGINE_SETTINGS: %s is not a MergeTree setting this ClickHouse knows (see system.merge_tree_settings)", st.Name)
		}
		if msg != "" {
			diags = append(diags, diag{pos: st.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFUSED, msg: msg})
		}
	}
	return diags
}

// checkPlanStatements checks every statement the plan sends for a Data Source, and its undo,
// once more: one statement on that Data Source's table, of a form Sluice builds, nothing after
// it (datafile.CheckStatement).
func checkPlanStatements(p *project, pl *plan) []diag {
	var diags []diag
	for _, st := range pl.steps {
		a := st.action
		if a.GetResourceType() != catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE {
			continue
		}
		tbl := tableName(p.ws, a.GetName())
		qtbl := tableName(p.ws, a.GetName()+quarantineSuffix)
		for _, stmt := range append(append([]string(nil), a.GetStatements()...), st.undo...) {
			// A statement is on the Data Source's table or on its quarantine table.
			if err := datafile.CheckStatement(stmt, tbl); err != nil && datafile.CheckStatement(stmt, qtbl) != nil {
				pos := datafile.Pos{}
				if d, ok := p.datasources[a.GetName()]; ok {
					pos = d.ds.Pos
				}
				diags = append(diags, diag{pos: pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFUSED, msg: fmt.Sprintf("Data Source %s: refused, a statement built for it fails Sluice's final check: %v", a.GetName(), err)})
			}
		}
	}
	return diags
}

// verifyCreateAST is the engine's own reading of a CREATE TABLE Sluice built, on engines with
// EXPLAIN AST (which parses and reads nothing): the statement must create exactly table tbl
// of database db, and hold no subquery, no table, no table function, and no function that
// reaches outside the table. It catches what a difference between Sluice's lexer and the
// engine's parser would let through.
func (s *Service) verifyCreateAST(ctx context.Context, stmt, db, tbl string) error {
	if !s.caps.explainAST {
		return nil
	}
	res, err := s.deps.Warehouse.Query(ctx, "EXPLAIN AST "+stmt)
	if err != nil {
		return fmt.Errorf("ClickHouse cannot parse the statement: %s", chMessage(err))
	}
	lines := make([]string, 0, len(res.Rows))
	for _, r := range res.Rows {
		if len(r) > 0 {
			lines = append(lines, fmt.Sprint(r[0]))
		}
	}
	if probs := createASTProblems(lines, db, tbl); len(probs) > 0 {
		return fmt.Errorf("%s", probs[0])
	}
	return nil
}

// createASTProblems checks the EXPLAIN AST lines of a CREATE TABLE.
func createASTProblems(lines []string, db, tbl string) []string {
	var probs []string
	if len(lines) == 0 {
		return []string{"ClickHouse returned no AST"}
	}
	if head := parseASTLine(lines[0]); head.kind != "CreateQuery" || head.depth != 0 || head.name != db+" "+tbl {
		probs = append(probs, fmt.Sprintf("ClickHouse reads the statement as %q, not as CREATE TABLE %s.%s", strings.TrimSpace(lines[0]), db, tbl))
	}
	engines := map[string]bool{}
	for _, n := range []string{"MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree", "VersionedCollapsingMergeTree", "Join", "Null"} {
		engines[n] = true
	}
	nodes := make([]astNode, len(lines))
	for i, l := range lines {
		nodes[i] = parseASTLine(l)
	}
	// secondArg is the kind of the second argument of the function at i ("" when none).
	secondArg := func(i int) string {
		d := nodes[i].depth
		if i+1 >= len(nodes) || nodes[i+1].kind != "ExpressionList" || nodes[i+1].depth != d+1 {
			return ""
		}
		seen := -1
		for j := i + 2; j < len(nodes) && nodes[j].depth > d+1; j++ {
			if nodes[j].depth == d+2 {
				if seen++; seen == 1 {
					return nodes[j].kind
				}
			}
		}
		return ""
	}
	for i, l := range lines {
		n := nodes[i]
		if i > 0 && n.depth == 0 {
			probs = append(probs, fmt.Sprintf("ClickHouse reads more than one statement (%s)", strings.TrimSpace(l)))
		}
		switch n.kind {
		case "Subquery", "SelectWithUnionQuery", "SelectQuery", "TablesInSelectQuery", "TableExpression", "TableIdentifier":
			probs = append(probs, fmt.Sprintf("ClickHouse reads a query or a table in the definition (%s): a Data Source may only compute from its own columns", strings.TrimSpace(l)))
		case "Function":
			lower := strings.ToLower(n.name)
			switch {
			case engines[n.name]:
			case inFunctions[lower]:
				// x IN (1, 2) is Function in: only a table on its right reaches outside.
				if k := secondArg(i); k == "Identifier" || k == "TableIdentifier" {
					probs = append(probs, fmt.Sprintf("%s(): ClickHouse reads a table as a set in the definition: a Data Source may only compute from its own columns", n.name))
				}
			case chsql.OutsideFunction(lower) != "":
				probs = append(probs, fmt.Sprintf("%s(): refused, %s", n.name, chsql.OutsideFunction(lower)))
			case strings.HasPrefix(lower, "__"):
				probs = append(probs, fmt.Sprintf("%s(): internal ClickHouse functions are refused", n.name))
			case lower == "joinget" || lower == "joingetornull" || strings.HasPrefix(lower, "dictget") || lower == "dicthas" || lower == "dictisin":
				probs = append(probs, fmt.Sprintf("%s() reads another table or a dictionary", n.name))
			case chsql.IsKnownTableFunction(lower) && lower != "format":
				probs = append(probs, fmt.Sprintf("%s(): table functions are refused in a Data Source's definition", n.name))
			}
		}
	}
	sort.Strings(probs)
	return probs
}
