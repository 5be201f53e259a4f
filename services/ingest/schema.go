package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// QuarantineSuffix names a Data Source's quarantine table: `<datasource>_quarantine`.
const QuarantineSuffix = "_quarantine"

// Quarantine columns besides the Data Source's own (all Nullable(String)), as the hosted
// platform names them.
const (
	colErrorColumn = "c__error_column"
	colError       = "c__error"
	colImportID    = "c__import_id"
	colInsertDate  = "insertion_date"
)

// column is one column rows can be written to.
type column struct {
	name string
	typ  *chType
	path jsonPath
	// hasDefault: the column has a DEFAULT expression, used when the input has no value.
	hasDefault bool
}

// schema is what converting rows for one Data Source needs.
type schema struct {
	workspace  string
	datasource string
	id         string
	database   string
	table      string // qualified
	quarantine string // qualified quarantine table, "" when it does not exist
	columns    []column
	byName     map[string]int
	loaded     time.Time
	// columnList is the JSON array of the column names, as messages carry it.
	columnList string
}

// errUnknownDataSource is a Data Source that does not exist in the workspace.
type errUnknownDataSource struct{ workspace, name string }

func (e *errUnknownDataSource) Error() string {
	return fmt.Sprintf("Data Source '%s' does not exist in workspace %s", e.name, e.workspace)
}

// schemas caches Data Source schemas for a short time; the catalog's change announcements
// drop a workspace's entries at once.
type schemas struct {
	s   *Service
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]*schema
}

func (c *schemas) invalidate(workspace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.m {
		if workspace == "" || v.workspace == workspace {
			delete(c.m, k)
		}
	}
}

func (c *schemas) get(ctx context.Context, workspace, name string) (*schema, error) {
	key := workspace + "\x00" + name
	c.mu.Lock()
	sc := c.m[key]
	c.mu.Unlock()
	if sc != nil && time.Since(sc.loaded) < c.ttl {
		return sc, nil
	}
	sc, err := c.load(ctx, workspace, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = sc
	c.mu.Unlock()
	return sc, nil
}

// load reads the Data Source from the catalog (JSON paths, defaults) and its table from
// ClickHouse (the types as the engine has them, also for columns declared without one).
func (c *schemas) load(ctx context.Context, workspace, name string) (*schema, error) {
	if strings.HasSuffix(name, QuarantineSuffix) {
		return nil, &errUnknownDataSource{workspace, name}
	}
	ds, err := c.s.deps.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Workspace: workspace, Name: name})
	if err != nil {
		if st, ok := status.FromError(err); ok && (st.Code() == codes.NotFound || st.Code() == codes.InvalidArgument) {
			return nil, &errUnknownDataSource{workspace, name}
		}
		return nil, fmt.Errorf("read Data Source %s: %w", name, err)
	}
	ws, err := c.s.deps.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: workspace})
	if err != nil {
		return nil, fmt.Errorf("read workspace %s: %w", workspace, err)
	}
	db := ws.GetWorkspace().GetDatabase()
	sc := &schema{
		workspace: workspace, datasource: name, id: ds.GetDatasource().GetId(), database: db,
		table: warehouse.QualifiedName(db, name), byName: map[string]int{}, loaded: time.Now(),
	}
	// DESCRIBE: name, type, default kind, in order, on every server (18.16's system.columns has
	// no position).
	res, err := c.s.deps.Warehouse.Query(ctx, "DESCRIBE TABLE "+sc.table)
	if err != nil {
		if warehouse.CodeOf(err) == 60 { // UNKNOWN_TABLE
			return nil, &errUnknownDataSource{workspace, name}
		}
		return nil, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	if len(res.Rows) == 0 {
		return nil, &errUnknownDataSource{workspace, name}
	}
	paths := map[string]string{}
	for _, col := range ds.GetDatasource().GetColumns() {
		paths[col.GetName()] = col.GetJsonPath()
	}
	for _, r := range res.Rows {
		colName, typ, dk := fmt.Sprint(r[0]), fmt.Sprint(r[1]), fmt.Sprint(r[2])
		switch dk {
		case "MATERIALIZED", "ALIAS", "EPHEMERAL":
			continue // never written by an insert
		}
		p := paths[colName]
		if p == "" {
			p = "$['" + strings.ReplaceAll(colName, "'", "") + "']"
		}
		jp, err := parseJSONPath(p)
		if err != nil {
			return nil, fmt.Errorf("column %s of Data Source %s: %w", colName, name, err)
		}
		sc.byName[colName] = len(sc.columns)
		sc.columns = append(sc.columns, column{
			name: colName, typ: parseType(typ), path: jp, hasDefault: dk == "DEFAULT",
		})
	}
	names := make([]string, len(sc.columns))
	for i, col := range sc.columns {
		names[i] = col.name
	}
	list, _ := json.Marshal(names)
	sc.columnList = string(list)
	q, err := c.s.deps.Warehouse.Query(ctx, fmt.Sprintf("SELECT count() FROM system.tables WHERE database = %s AND name = %s",
		warehouse.QuoteString(db), warehouse.QuoteString(name+QuarantineSuffix)))
	if err == nil && len(q.Rows) == 1 && fmt.Sprint(q.Rows[0][0]) != "0" {
		sc.quarantine = warehouse.QualifiedName(db, name+QuarantineSuffix)
	}
	return sc, nil
}

// isUnknown reports an unknown Data Source.
func isUnknown(err error) bool {
	var u *errUnknownDataSource
	return errors.As(err, &u)
}

// columnNames are the names of the columns rows hold, in order.
func (sc *schema) columnNames() []string {
	out := make([]string, len(sc.columns))
	for i, c := range sc.columns {
		out[i] = c.name
	}
	return out
}
