package catalog

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// viewCutover is the cut-over a materialized pipe's view handles (CutOverView): only the rows
// of its trigger Data Source with Column > Value. It is part of the pipe's deployed definition
// until the pipe is pushed changed.
type viewCutover struct {
	Column string `json:"column"`
	Value  string `json:"value"`
	// Job is the populate that made it.
	Job string `json:"job"`
	// Blocks are the highest block numbers of the tables the populate empties, read when the
	// view changed.
	Blocks map[string]uint64 `json:"blocks"`
	At     time.Time         `json:"at"`
}

// withCutover rewrites a view query so that its trigger (the left-most table) reads only the
// rows after the cut-over.
func withCutover(sql, db, trigger string, c *viewCutover) (string, error) {
	if c == nil {
		return sql, nil
	}
	filter := fmt.Sprintf("SELECT * FROM %s WHERE %s > %s", warehouse.QualifiedName(db, trigger), warehouse.QuoteIdent(c.Column), warehouse.QuoteString(c.Value))
	return chsql.ReadLeftFrom(sql, db, trigger, filter)
}

// CutOverView implements CatalogService.
func (s *Service) CutOverView(ctx context.Context, req *catalogv1.CutOverViewRequest) (*catalogv1.CutOverViewResponse, error) {
	resp, err := s.cutOverView(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *Service) cutOverView(ctx context.Context, req *catalogv1.CutOverViewRequest) (*catalogv1.CutOverViewResponse, error) {
	ctx, ws, unlock, err := s.lockWorkspace(ctx, req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := s.loadProject(ctx, ws)
	if err != nil {
		return nil, err
	}
	pd, err := p.deployedPipe(req.GetPipe())
	if err != nil {
		return nil, err
	}
	nd := pd.outputNode()
	if pd.pipeType() != datafile.NodeMaterialized || nd == nil {
		return nil, invalidArg("pipe", "pipe %s is not a materialized pipe", pd.pipe.Name)
	}
	if req.GetNode() != "" && req.GetNode() != nd.node.Name {
		return nil, invalidArg("node", "node %q of pipe %s is not its materialized node (%s)", req.GetNode(), pd.pipe.Name, nd.node.Name)
	}
	trigger, ok := p.trigger(pd)
	if !ok {
		return nil, invalidArg("pipe", "the materialized node of pipe %s reads no Data Source first: no trigger to cut over", pd.pipe.Name)
	}
	if c := pd.rec.Cutover; c != nil && c.Job == req.GetJobId() && c.Column == req.GetColumn() && c.Value == req.GetValue() {
		sql, err := s.viewQuery(p, ws, pd, trigger, c)
		if err != nil {
			return nil, err
		}
		return &catalogv1.CutOverViewResponse{Blocks: c.Blocks, Sql: sql}, nil
	}
	tables := req.GetTables()
	for _, t := range tables {
		if _, ok := p.datasources[t]; !ok {
			return nil, invalidArg("tables", "%q is not a Data Source of workspace %s", t, ws.Name)
		}
	}
	cut := &viewCutover{Column: req.GetColumn(), Value: req.GetValue(), Job: req.GetJobId(), At: s.deps.Now().UTC()}
	colType, err := s.checkCutover(ctx, ws, trigger, cut)
	if err != nil {
		return nil, err
	}
	oldSQL, err := s.viewQuery(p, ws, pd, trigger, pd.rec.Cutover)
	if err != nil {
		return nil, err
	}
	newSQL, err := s.viewQuery(p, ws, pd, trigger, cut)
	if err != nil {
		return nil, err
	}

	// The change. Merges of the tables stop first: a part written before the cut-over must not
	// merge with one written after it before the caller removes it.
	wh := s.deps.Warehouse
	view := viewName(ws, pd.pipe.Name)
	merges := func(c warehouse.Conn, verb string) error {
		for _, t := range tables {
			if _, err := c.Exec(ctx, "SYSTEM "+verb+" MERGES "+tableName(ws, t)); err != nil {
				return fmt.Errorf("%s merges of %s: %w", strings.ToLower(verb), t, err)
			}
		}
		return nil
	}
	ahead := func(c warehouse.Conn) error { return s.aheadOfData(ctx, c, ws, trigger, cut, colType) }
	change := func(c warehouse.Conn) error {
		if _, err := c.Exec(ctx, "ALTER TABLE "+view+" MODIFY QUERY "+newSQL); err != nil {
			if code := warehouse.CodeOf(err); code == 62 || code == 48 || code == 36 {
				return &preconditionError{fmt.Sprintf("this ClickHouse cannot change a materialized view's query (ALTER TABLE ... MODIFY QUERY): a cut-over with a column needs it; populate with --cutover-snapshot instead (%v)", err)}
			}
			return fmt.Errorf("cut over the view of %s: %w", pd.pipe.Name, err)
		}
		var err error
		cut.Blocks, err = maxBlocks(ctx, c, ws, tables)
		return err
	}
	revert := func(cause error) error {
		rctx := context.WithoutCancel(ctx)
		var errs []error
		if _, err := wh.Exec(rctx, "ALTER TABLE "+view+" MODIFY QUERY "+oldSQL); err != nil {
			errs = append(errs, fmt.Errorf("reverting the view of %s failed: %w", pd.pipe.Name, err))
		}
		if err := merges(wh, "START"); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			s.log.Error("a refused cut-over could not be reverted", "pipe", pd.pipe.Name, "err", errors.Join(errs...))
			return fmt.Errorf("%w (and %w)", cause, errors.Join(errs...))
		}
		return cause
	}
	if err := merges(wh, "STOP"); err != nil {
		return nil, revert(err)
	}
	if seq, ok := wh.(warehouse.Sequencer); ok {
		// The check and the change with no insert in between.
		err = seq.Sequence(ctx, func(c warehouse.Conn) error {
			if err := ahead(c); err != nil {
				return err
			}
			return change(c)
		})
		if err != nil {
			return nil, revert(err)
		}
	} else {
		// A server takes inserts at any moment: check again after the change, and revert the
		// change if a row after the cut-over came meanwhile (the view before the change may
		// have written it).
		if err := change(wh); err != nil {
			return nil, revert(err)
		}
		if err := ahead(wh); err != nil {
			return nil, revert(err)
		}
	}
	rec := pd.rec
	rec.Cutover = cut
	rec.DDL = []string{fmt.Sprintf("CREATE MATERIALIZED VIEW %s TO %s AS\n%s", view, tableName(ws, nd.node.Datasource), newSQL)}
	rec.UpdateTime = s.deps.Now().UTC()
	if err := s.store.putJSON(ctx, resKey(ws.Name, kindPipe, pd.pipe.Name), rec); err != nil {
		return nil, revert(err)
	}
	s.log.Info("view cut over", "workspace", ws.Name, "pipe", pd.pipe.Name, "column", cut.Column, "value", cut.Value, "job", cut.Job, "blocks", cut.Blocks)
	return &catalogv1.CutOverViewResponse{Blocks: cut.Blocks, Sql: newSQL}, nil
}

// viewQuery is the materialized pipe's view query with cut-over c (nil: none).
func (s *Service) viewQuery(p *project, ws workspaceRecord, pd *pipeDef, trigger string, c *viewCutover) (string, error) {
	comp := &composer{p: p, db: ws.Database}
	sql, err := comp.node(pd.outputNode())
	if err != nil {
		return "", err
	}
	out, err := withCutover(sql, ws.Database, trigger, c)
	if err != nil {
		return "", invalidArg("pipe", "pipe %s: %v", pd.pipe.Name, err)
	}
	return out, nil
}

// checkCutover checks the column and the value of a cut-over before anything changes, and
// returns the column's type.
func (s *Service) checkCutover(ctx context.Context, ws workspaceRecord, trigger string, c *viewCutover) (string, error) {
	wh := s.deps.Warehouse
	res, err := wh.Query(ctx, fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = %s AND table = %s",
		warehouse.QuoteString(ws.Database), warehouse.QuoteString(trigger)))
	if err != nil {
		return "", err
	}
	var names []string
	colType := ""
	for _, r := range res.Rows {
		names = append(names, fmt.Sprint(r[0]))
		if fmt.Sprint(r[0]) == c.Column {
			colType = fmt.Sprint(r[1])
		}
	}
	if colType == "" {
		return "", invalidArg("cutover_column", "Data Source %s has no column %q (its columns: %s)", trigger, c.Column, strings.Join(names, ", "))
	}
	base, why := cutoverType(colType)
	if why != "" {
		return "", invalidArg("cutover_column", "column %s of %s is %s: %s", c.Column, trigger, colType, why)
	}
	v := fmt.Sprintf("CAST(%s AS %s)", warehouse.QuoteString(c.Value), colType)
	if _, err := wh.Query(ctx, "SELECT "+v); err != nil {
		return "", invalidArg("cutover_value", "%q is not a value of column %s (%s): %v", c.Value, c.Column, colType, firstLine(err.Error()))
	}
	if last := typeMax(base, colType); last != "" {
		res, err := wh.Query(ctx, fmt.Sprintf("SELECT %s < %s", v, last))
		if err != nil {
			return "", err
		}
		if len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) != "1" && fmt.Sprint(res.Rows[0][0]) != "true" {
			return "", invalidArg("cutover_value", "%q is the last value of %s: no row can come after it, the cut-over would never pass", c.Value, colType)
		}
	}
	return colType, s.aheadOfData(ctx, wh, ws, trigger, c, colType)
}

// aheadOfData refuses a cut-over that some row of the trigger is already after: those rows,
// written by the view before the change, would be removed with what it wrote and not
// populated again.
func (s *Service) aheadOfData(ctx context.Context, c warehouse.Conn, ws workspaceRecord, trigger string, cut *viewCutover, colType string) error {
	res, err := c.Query(ctx, fmt.Sprintf("SELECT count(), toString(max(%s)) FROM %s WHERE %s > CAST(%s AS %s)",
		warehouse.QuoteIdent(cut.Column), tableName(ws, trigger), warehouse.QuoteIdent(cut.Column), warehouse.QuoteString(cut.Value), colType))
	if err != nil {
		return fmt.Errorf("rows after the cut-over: %w", err)
	}
	if len(res.Rows) == 1 {
		if n, _ := strconv.ParseUint(fmt.Sprint(res.Rows[0][0]), 10, 64); n > 0 {
			return &preconditionError{fmt.Sprintf("cut-over %s > %s is behind the data: %d rows of %s are after it already (the latest: %v); nothing was changed; choose a cut-over ahead of the data (for example --cutover-in 30s)",
				cut.Column, cut.Value, n, trigger, res.Rows[0][1])}
		}
	}
	return nil
}

// maxBlocks reads the highest block number of each table's parts.
func maxBlocks(ctx context.Context, c warehouse.Conn, ws workspaceRecord, tables []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, t := range tables {
		res, err := c.Query(ctx, fmt.Sprintf("SELECT max(max_block_number) FROM system.parts WHERE database = %s AND table = %s AND active",
			warehouse.QuoteString(ws.Database), warehouse.QuoteString(t)))
		if err != nil {
			return nil, fmt.Errorf("blocks of %s: %w", t, err)
		}
		out[t] = 0
		if len(res.Rows) == 1 {
			n, _ := strconv.ParseUint(fmt.Sprint(res.Rows[0][0]), 10, 64)
			out[t] = n
		}
	}
	return out, nil
}

var (
	wrapperRE = regexp.MustCompile(`^LowCardinality\((.*)\)$`)
	intRE     = regexp.MustCompile(`^(U?)Int(8|16|32|64|128|256)$`)
	decimalRE = regexp.MustCompile(`^Decimal(?:(32|64|128|256)\(\s*(\d+)\s*\)|\(\s*(\d+)\s*,\s*(\d+)\s*\))$`)
)

// cutoverType returns the base of a column type a cut-over can use, or why it cannot: rows
// must be ordered by it, and none may be NULL (the view would handle a NULL row, or the
// populate, or neither).
func cutoverType(t string) (string, string) {
	if m := wrapperRE.FindStringSubmatch(t); m != nil {
		t = m[1]
	}
	switch {
	case strings.HasPrefix(t, "Nullable("):
		return "", "a Nullable column cannot split the rows (a NULL row is neither before nor after the cut-over); use a column that is never NULL"
	case intRE.MatchString(t), t == "Float32", t == "Float64", decimalRE.MatchString(t):
		return t, ""
	case t == "Date", t == "Date32", strings.HasPrefix(t, "DateTime"):
		return t, ""
	}
	return "", "a cut-over needs a column that orders the rows as they arrive: a time (Date, DateTime, DateTime64) or a number"
}

// typeMax is an SQL expression of the last value of a type ("" when there is none to check:
// floats are checked finite instead).
func typeMax(base, full string) string {
	switch {
	case intRE.MatchString(base):
		m := intRE.FindStringSubmatch(base)
		bits, _ := strconv.Atoi(m[2])
		if m[1] == "" {
			bits--
		}
		last := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits)), big.NewInt(1))
		return fmt.Sprintf("CAST(%s AS %s)", warehouse.QuoteString(last.String()), full)
	case base == "Float32", base == "Float64":
		return "CAST('inf' AS " + full + ")"
	case decimalRE.MatchString(base):
		m := decimalRE.FindStringSubmatch(base)
		prec, scale := 0, 0
		if m[1] != "" {
			prec = map[string]int{"32": 9, "64": 18, "128": 38, "256": 76}[m[1]]
			scale, _ = strconv.Atoi(m[2])
		} else {
			prec, _ = strconv.Atoi(m[3])
			scale, _ = strconv.Atoi(m[4])
		}
		digits := strings.Repeat("9", max(prec-scale, 1))
		if scale > 0 {
			digits += "." + strings.Repeat("9", scale)
		}
		return fmt.Sprintf("CAST(%s AS %s)", warehouse.QuoteString(digits), full)
	case base == "Date":
		return "toDate('2149-06-06')"
	case base == "Date32":
		return "toDate32('2299-12-31')"
	case strings.HasPrefix(base, "DateTime64"):
		return fmt.Sprintf("CAST(toDateTime64('2299-12-31 23:59:59', 0, 'UTC') AS %s)", full)
	case strings.HasPrefix(base, "DateTime"):
		return fmt.Sprintf("CAST(toDateTime(4294967295) AS %s)", full)
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
