package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/datafile"
	"github.com/sluicehq/sluice/services/catalog/template"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
)

// scratchPrefix names the databases a push validates in: __sluice_check_<unix time, hex>_<random>.
// Leftovers of a crash are dropped when a catalog starts, once they are older than
// scratchMaxAge: younger ones may belong to a push another replica is validating now.
const (
	scratchPrefix = "__sluice_check_"
	scratchMaxAge = 15 * time.Minute
)

func scratchName(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%x_%s", scratchPrefix, now.Unix(), hex.EncodeToString(b[:]))
}

// scratchAbandoned reports whether a scratch database is a leftover: older than scratchMaxAge,
// or named before the name carried its time.
func scratchAbandoned(name string, now time.Time) bool {
	stamp, _, ok := strings.Cut(strings.TrimPrefix(name, scratchPrefix), "_")
	secs, err := strconv.ParseInt(stamp, 16, 64)
	if !ok || err != nil {
		return true
	}
	return now.Sub(time.Unix(secs, 0)) > scratchMaxAge
}

// checkInClickHouse asks ClickHouse itself whether the project is valid, before any DDL runs in
// the workspace: every table is created, every materialized view is created and every copy
// node's result is inserted (no rows: LIMIT 0) into its target, in a scratch database that is
// dropped afterwards. order is the project's topological order (nil when the data flow has a
// loop of views); the files in skip already have errors: their Data Sources' DDL is not run
// (a definition Sluice refused never reaches ClickHouse) and their pipes are not checked again.
func (s *Service) checkInClickHouse(ctx context.Context, p *project, order []string, skip map[string]bool) ([]diag, error) {
	db := scratchName(s.deps.Now())
	wh := s.deps.Warehouse
	if _, err := wh.Exec(ctx, "CREATE DATABASE "+warehouse.QuoteIdent(db)); err != nil {
		return nil, fmt.Errorf("create scratch database: %w", err)
	}
	defer func() {
		if _, err := wh.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(db)); err != nil {
			s.log.Warn("drop scratch database", "database", db, "err", err)
		}
	}()
	if order == nil {
		order = append(sortedNames(p.datasources), sortedNames(p.pipes)...)
	}
	var diags []diag
	bad := map[string]bool{}
	for _, name := range order {
		d, ok := p.datasources[name]
		if !ok {
			continue
		}
		if skip[d.rec.Path] {
			// Refused already: its DDL never reaches ClickHouse, not even the scratch database.
			bad[name] = true
			continue
		}
		if base := p.quarantineOf(name); base != "" {
			bad[name] = true
			diags = append(diags, diag{pos: d.ds.Pos, msg: fmt.Sprintf("Data Source %s: the name is taken by the quarantine table of Data Source %s; rename it", name, base)})
			continue
		}
		ddl := d.ds.DDL(warehouse.QualifiedName(db, name))
		// The statement is checked once more, by Sluice and by the engine's parser, before the
		// engine runs it, even in the scratch database.
		err := datafile.CheckStatement(ddl, warehouse.QualifiedName(db, name))
		if err == nil {
			err = s.verifyCreateAST(ctx, ddl, db, name)
		}
		if err != nil {
			bad[name] = true
			diags = append(diags, diag{pos: d.ds.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFUSED, msg: fmt.Sprintf("Data Source %s: refused by the final check of its CREATE TABLE: %v", name, err)})
			continue
		}
		if _, err := wh.Exec(ctx, ddl); err != nil {
			bad[name] = true
			msg := userMessage(chMessage(err), db)
			diags = append(diags, diag{pos: dataSourceErrorPos(d.ds, msg), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_CLICKHOUSE, chCode: chCode(err), msg: fmt.Sprintf("Data Source %s: ClickHouse rejects its table: %s", name, msg)})
			continue
		}
		if _, taken := p.datasources[name+quarantineSuffix]; taken {
			continue // refused above, with its name
		}
		if _, err := wh.Exec(ctx, quarantineDDL(d.ds, warehouse.QualifiedName(db, name+quarantineSuffix))); err != nil {
			diags = append(diags, diag{pos: d.ds.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_CLICKHOUSE, chCode: chCode(err), msg: fmt.Sprintf("Data Source %s: ClickHouse rejects its quarantine table: %s", name, userMessage(chMessage(err), db))})
		}
	}
	for _, name := range order {
		pd, ok := p.pipes[name]
		if !ok || !pd.pushed || skip[pd.rec.Path] {
			continue
		}
		out := pd.outputNode()
		if out == nil || out.tmpl == nil || (out.node.Type != datafile.NodeCopy && out.node.Type != datafile.NodeMaterialized) {
			continue
		}
		target := out.node.TargetDatasource
		if out.node.Type == datafile.NodeMaterialized {
			target = out.node.Datasource
		}
		if p.datasources[target] == nil {
			continue
		}
		if refused := p.readsAny(out, bad); len(refused) > 0 || bad[target] {
			if bad[target] {
				refused = append(refused, target)
			}
			diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("node %s: not checked, it uses Data Source %s, which is refused (see its errors)", out.node.Name, strings.Join(dedupeSorted(refused), ", "))})
			continue
		}
		c := &composer{p: p, db: db, opts: template.RenderOptions{Check: true}}
		sql, err := c.node(out)
		if err == nil {
			err = s.verifyAST(ctx, db, sql)
		}
		if err != nil {
			diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("node %s: %s", out.node.Name, userMessage(err.Error(), db))})
			continue
		}
		if out.node.Type == datafile.NodeMaterialized {
			stmt := fmt.Sprintf("CREATE MATERIALIZED VIEW %s TO %s AS\n%s", warehouse.QualifiedName(db, mvPrefix+name), warehouse.QualifiedName(db, target), sql)
			if _, err := wh.Exec(ctx, stmt); err != nil {
				diags = append(diags, diag{pos: out.node.SQLPos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_CLICKHOUSE, chCode: chCode(err), msg: fmt.Sprintf("materialized node %s: ClickHouse rejects its view: %s", out.node.Name, userMessage(chMessage(err), db))})
			}
			continue
		}
		diags = append(diags, s.checkCopy(ctx, db, out, target, sql, p.datasources[target].ds)...)
	}
	return diags, nil
}

// checkCopy checks a copy node's result against its target the way the copy will write it:
// by column name, with ClickHouse's own conversions (INSERT INTO target (columns) SELECT ...,
// here with no rows). What ClickHouse refuses is an error; conversions it makes that can change
// values (NULL into a column that is not Nullable, narrower numbers, text parsed as a number or
// a date) are warnings.
func (s *Service) checkCopy(ctx context.Context, db string, out *nodeDef, target, sql string, ds *datafile.DataSource) []diag {
	wh := s.deps.Warehouse
	at := out.node.SQLPos
	res, err := wh.Query(ctx, "DESCRIBE TABLE ("+sql+")")
	if err != nil {
		return []diag{{pos: at, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_CLICKHOUSE, chCode: chCode(err), msg: fmt.Sprintf("copy node %s: ClickHouse rejects its query: %s", out.node.Name, userMessage(chMessage(err), db))}}
	}
	result := describedColumns(res)
	var diags []diag
	if mapped, ok := positionalColumns(result, ds); ok {
		for i, r := range result {
			if r.name != mapped[i].name {
				diags = append(diags, diag{pos: at, warning: true, msg: fmt.Sprintf("copy node %s: result column %s goes into column %s of TARGET_DATASOURCE %s by position (name the column %s to match by name)", out.node.Name, r.name, mapped[i].name, target, mapped[i].name)})
			}
		}
		result = mapped
	}
	byName := map[string]datafile.Column{}
	for _, c := range ds.Columns {
		byName[c.Name] = c
	}
	var problems, cols []string
	got := map[string]bool{}
	for _, r := range result {
		got[r.name] = true
		c, ok := byName[r.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("column %s is not in the Data Source", r.name))
			continue
		}
		cols = append(cols, warehouse.QuoteIdent(r.name))
		if w := valueChange(r.typ, c.SQLType()); w != "" {
			diags = append(diags, diag{pos: at, warning: true, msg: fmt.Sprintf("copy node %s: column %s is %s in the result and %s in TARGET_DATASOURCE %s: %s", out.node.Name, r.name, r.typ, c.SQLType(), target, w)})
		}
	}
	for _, c := range ds.Columns {
		if !got[c.Name] && c.DefaultKind == "" {
			diags = append(diags, diag{pos: at, warning: true, msg: fmt.Sprintf("copy node %s: column %s of TARGET_DATASOURCE %s is not in the result and has no DEFAULT: copied rows get the type's default value", out.node.Name, c.Name, target)})
		}
	}
	if len(problems) > 0 {
		return append(diags, diag{pos: at, msg: fmt.Sprintf("copy node %s: its result does not fit TARGET_DATASOURCE %s: %s", out.node.Name, target, strings.Join(problems, "; "))})
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s)\nSELECT * FROM (%s) LIMIT 0", warehouse.QualifiedName(db, target), strings.Join(cols, ", "), sql)
	if _, err := wh.Exec(ctx, insert); err != nil {
		diags = append(diags, diag{pos: at, msg: fmt.Sprintf("copy node %s: ClickHouse would not insert its result into TARGET_DATASOURCE %s: %s", out.node.Name, target, userMessage(chMessage(err), db))})
	}
	return diags
}

// valueChange says how an insert can change values of type from going into a column of type to,
// or "" when they go in as they are.
func valueChange(from, to string) string {
	if assignable(from, to) {
		return ""
	}
	f, t := normType(from), normType(to)
	fInner, fNull := unwrap(f, "Nullable(")
	tInner, tNull := unwrap(t, "Nullable(")
	if fNull && !tNull {
		if assignable(fInner, tInner) {
			return "NULLs become the column's default value"
		}
		return "NULLs become the column's default value, and " + valueChange(fInner, tInner)
	}
	fw, fk := numberWidth(fInner)
	tw, tk := numberWidth(tInner)
	switch {
	case fInner == "String" && tInner != "String":
		return "each value is parsed as " + tInner + "; a value that does not parse fails the copy"
	case fk != 0 && tk != 0 && (tw < fw || fk != tk):
		return "values outside the column's range change (narrowing or sign conversion)"
	case strings.HasPrefix(fInner, "DateTime64") && tInner == "DateTime":
		return "sub-second precision is dropped"
	case strings.HasPrefix(fInner, "DateTime") && tInner == "Date":
		return "the time of day is dropped"
	}
	return ""
}

func unwrap(t, prefix string) (string, bool) {
	if inner, ok := strings.CutPrefix(t, prefix); ok && strings.HasSuffix(inner, ")") {
		return inner[:len(inner)-1], true
	}
	return t, false
}

// readsAny returns the Data Sources of bad that node n reads, directly or through earlier nodes
// and other pipes.
func (p *project) readsAny(n *nodeDef, bad map[string]bool) []string {
	var out []string
	seen := map[*nodeDef]bool{}
	var walk func(n *nodeDef)
	walk = func(n *nodeDef) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		for _, r := range n.reads {
			if bad[r] {
				out = append(out, r)
			}
			if dep := n.pipe.nodeNamed(r); dep != nil {
				walk(dep)
			} else if pd, ok := p.pipes[r]; ok {
				walk(pd.outputNode())
			}
		}
	}
	walk(n)
	return out
}

// userMessage removes the scratch database's name and Sluice's internal prefixes from a
// ClickHouse message: users know their resources by name.
func userMessage(msg, db string) string {
	msg = strings.NewReplacer("`"+db+"`.", "", db+".", "", "'"+db+"'", "the workspace", db, "the workspace").Replace(msg)
	return strings.ReplaceAll(msg, mvPrefix, "")
}

// dataSourceErrorPos places a ClickHouse refusal of a table: at the column or key the message
// names, else at the ENGINE line, else at the file.
func dataSourceErrorPos(ds *datafile.DataSource, msg string) datafile.Pos {
	// Lists of what the table has say nothing about the culprit.
	for _, cut := range []string{"required columns", "available columns", "Available columns"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i]
		}
	}
	best, bestAt := datafile.Pos{}, -1
	for _, c := range ds.Columns {
		for _, form := range []string{"`" + c.Name + "`", "'" + c.Name + "'", "column " + c.Name} {
			i := strings.Index(msg, form)
			if end := i + len(form); i < 0 || end < len(msg) && isIdentByte(msg[end]) {
				continue
			}
			if (bestAt < 0 || i < bestAt) && c.Pos.File != "" {
				best, bestAt = c.Pos, i
			}
		}
	}
	if bestAt >= 0 {
		return best
	}
	return firstPos(ds.Engine.Pos, ds.Pos)
}

type column struct{ name, typ string }

func describedColumns(res *warehouse.Result) []column {
	var out []column
	for _, r := range res.Rows {
		if len(r) >= 2 {
			out = append(out, column{name: fmt.Sprint(r[0]), typ: fmt.Sprint(r[1])})
		}
	}
	return out
}

// assignable reports whether values of type from go into a column of type to without loss: the
// same type (LowCardinality is only storage), a Nullable of it, or a wider number of the same
// kind (UInt32 into UInt64, Int16 into Int64, Float32 into Float64, unsigned into a wider
// signed integer).
func assignable(from, to string) bool {
	from, to = normType(from), normType(to)
	if from == to {
		return true
	}
	if inner, ok := strings.CutPrefix(to, "Nullable("); ok && strings.HasSuffix(inner, ")") {
		return assignable(from, inner[:len(inner)-1])
	}
	fw, fk := numberWidth(from)
	tw, tk := numberWidth(to)
	switch {
	case fk == 0 || tk == 0:
		return false
	case fk == tk:
		return tw >= fw
	case fk == 'U' && tk == 'I':
		return tw > fw
	}
	return false
}

// numberWidth returns the bit width and kind ('U', 'I' or 'F') of a number type.
func numberWidth(t string) (int, byte) {
	for _, k := range []struct {
		prefix string
		kind   byte
	}{{"UInt", 'U'}, {"Int", 'I'}, {"Float", 'F'}} {
		if rest, ok := strings.CutPrefix(t, k.prefix); ok {
			var w int
			if _, err := fmt.Sscanf(rest, "%d", &w); err == nil && fmt.Sprint(w) == rest {
				return w, k.kind
			}
		}
	}
	return 0, 0
}

// normType compares types the way an insert would accept them: LowCardinality is storage.
func normType(t string) string {
	t = strings.ReplaceAll(t, " ", "")
	for {
		i := strings.Index(t, "LowCardinality(")
		if i < 0 {
			return t
		}
		depth, j := 0, i+len("LowCardinality(")
		for ; j < len(t); j++ {
			if t[j] == '(' {
				depth++
			} else if t[j] == ')' {
				if depth == 0 {
					break
				}
				depth--
			}
		}
		if j >= len(t) {
			return t
		}
		t = t[:i] + t[i+len("LowCardinality("):j] + t[j+1:]
	}
}

func firstPos(ps ...datafile.Pos) datafile.Pos {
	for _, p := range ps {
		if p.File != "" {
			return p
		}
	}
	return datafile.Pos{}
}

// chMessage is a ClickHouse error's message without the query id noise.
func chMessage(err error) string {
	var we *warehouse.Error
	if errors.As(err, &we) && we.Message != "" {
		if we.Name != "" {
			return fmt.Sprintf("%s (code %d %s)", we.Message, we.Code, we.Name)
		}
		return we.Message
	}
	return err.Error()
}

// dropScratchDatabases removes validation databases a crashed push left behind.
func (s *Service) dropScratchDatabases(ctx context.Context) error {
	res, err := s.deps.Warehouse.Query(ctx, "SELECT name FROM system.databases WHERE startsWith(name, "+warehouse.QuoteString(scratchPrefix)+")")
	if err != nil {
		return err
	}
	for _, r := range res.Rows {
		name := fmt.Sprint(r[0])
		if !scratchAbandoned(name, s.deps.Now()) {
			continue
		}
		if _, err := s.deps.Warehouse.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(name)); err != nil {
			return err
		}
	}
	return nil
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// positionalColumns gives a copy's result columns the target's names by position, as
// ClickHouse's INSERT INTO target SELECT does, when the result names columns the target does
// not have (an unnamed expression such as toStartOfHour(...)) and has exactly the target's
// number of columns. Otherwise the copy writes by name and ok is false.
func positionalColumns(result []column, ds *datafile.DataSource) ([]column, bool) {
	names := map[string]bool{}
	for _, c := range ds.Columns {
		names[c.Name] = true
	}
	byName := true
	for _, r := range result {
		byName = byName && names[r.name]
	}
	if byName || len(result) != len(ds.Columns) {
		return nil, false
	}
	out := make([]column, len(result))
	for i, r := range result {
		out[i] = column{name: ds.Columns[i].Name, typ: r.typ}
	}
	return out, true
}

// chCode is ClickHouse's code of an error, 0 when it has none.
func chCode(err error) int32 {
	var we *warehouse.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}
