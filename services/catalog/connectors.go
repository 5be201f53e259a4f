package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// engineCaps are what the ClickHouse behind the catalog supports that changes the DDL.
type engineCaps struct {
	// dimensionsSetting: the server has the MergeTree setting allow_dimensions_outside_sorting_key
	// (ClickHouse 26+) and refuses AggregatingMergeTree tables with plain columns outside the
	// sorting key unless it is set.
	dimensionsSetting bool
	// intSettings: the native protocol of this server (before ClickHouse 19.11) carries only
	// integer settings, so string settings go in the query's SETTINGS clause (see query.go).
	intSettings bool
	// explainAST: the server has EXPLAIN AST (ClickHouse 20.x+), used to verify users' SQL.
	explainAST bool
	// timezone is the server's time zone: DateTime values of types that name none are in it.
	timezone *time.Location
	// mergeTreeSettings are the MergeTree settings the engine knows (system.merge_tree_settings):
	// ENGINE_SETTINGS may only name these. Nil when not probed (then ClickHouse alone checks).
	mergeTreeSettings map[string]bool
}

func (s *Service) probeCaps(ctx context.Context) error {
	res, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM system.merge_tree_settings WHERE name = 'allow_dimensions_outside_sorting_key'")
	if err != nil {
		return fmt.Errorf("probe ClickHouse settings: %w", err)
	}
	s.caps.dimensionsSetting = len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) == "1"
	if err := s.probeTableSettings(ctx); err != nil {
		return err
	}
	return s.probeQueryCaps(ctx)
}

// buildProject assembles the project and adapts its Data Sources to what Sluice deploys.
func (s *Service) buildProject(ws workspaceRecord, deployed map[resourceKind]map[string]resourceRecord, files []*catalogv1.Datafile, vars map[string]string, prune bool) (*project, []diag) {
	p, diags := assembleProject(ws, deployed, files, vars, prune)
	for _, name := range sortedNames(p.datasources) {
		d := p.datasources[name]
		if w := adaptDataSource(d.ds, s.caps); w != "" && d.pushed {
			diags = append(diags, diag{pos: firstPos(d.ds.Engine.Pos, d.ds.Pos), warning: true, msg: w})
		}
		if d.pushed {
			diags = append(diags, checkDefinition(d.ds, s.caps)...)
		}
	}
	return p, diags
}

// Columns that the hosted platform's connectors add to a Data Source. Sluice runs no
// connector, but adds the columns so that the Data Source (whose keys often use them) is
// created as the user wrote it and can be loaded another way.
var (
	kafkaColumns = []datafile.Column{
		{Name: "__value", Type: "String"},
		{Name: "__topic", Type: "LowCardinality(String)"},
		{Name: "__partition", Type: "Int16"},
		{Name: "__offset", Type: "Int64"},
		{Name: "__timestamp", Type: "DateTime"},
		{Name: "__key", Type: "String"},
	}
	dynamoDBColumns = []datafile.Column{
		{Name: "_record", Type: "String"},
		{Name: "_old_record", Type: "String", Nullable: true},
		{Name: "_timestamp", Type: "DateTime64(3)"},
		{Name: "_event_type", Type: "LowCardinality(String)"},
		{Name: "_is_deleted", Type: "UInt8"},
	}
)

// adaptDataSource changes a parsed Data Source into what Sluice deploys, and says why when it
// changes anything:
//   - connector Data Sources (Kafka, DynamoDB) get the connector's columns;
//   - on ClickHouse 26+, AggregatingMergeTree tables get allow_dimensions_outside_sorting_key,
//     because datafiles written for the hosted platform keep plain columns outside the sorting key.
func adaptDataSource(ds *datafile.DataSource, caps engineCaps) string {
	var notes []string
	var feature string
	for _, o := range ds.OutOfScope {
		feature = o.Feature
		break
	}
	service := ""
	for _, c := range ds.Connector {
		if c.Keyword == "IMPORT_SERVICE" {
			service = strings.ToLower(strings.Trim(c.Value, `'"`))
		}
	}
	var extra []datafile.Column
	switch {
	case feature == "kafka":
		extra = kafkaColumns
	case service == "dynamodb":
		extra = dynamoDBColumns
	}
	have := map[string]bool{}
	for _, c := range ds.Columns {
		have[c.Name] = true
	}
	var added []string
	for _, c := range extra {
		if !have[c.Name] {
			ds.Columns = append(ds.Columns, c)
			added = append(added, c.Name)
		}
	}
	if len(added) > 0 {
		notes = append(notes, fmt.Sprintf("added the connector's columns %s", strings.Join(added, ", ")))
	}
	if caps.dimensionsSetting && ds.NeedsDimensionsSetting() {
		ds.Engine.Settings = append(ds.Engine.Settings, datafile.EngineSetting{Name: datafile.DimensionsSetting, Value: "1"}) // no Pos: added by Sluice
		notes = append(notes, "set allow_dimensions_outside_sorting_key = 1 (ClickHouse 26 refuses plain columns outside an AggregatingMergeTree sorting key without it; such columns keep an arbitrary value when rows merge)")
	}
	if len(notes) == 0 {
		return ""
	}
	return fmt.Sprintf("Data Source %s: %s", ds.Name, strings.Join(notes, "; "))
}
