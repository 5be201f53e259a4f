package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/datafile"
	"github.com/sluicehq/sluice/services/catalog/template"
)

// scratchPrefix names the databases a push validates in; leftovers of a crash are dropped when
// the catalog starts.
const scratchPrefix = "__sluice_check_"

// checkInClickHouse asks ClickHouse itself whether the project is valid, before any DDL runs in
// the workspace: every table is created, every materialized view is created and every copy
// node's result is described, in a scratch database that is dropped afterwards. A copy node's
// result columns must match its target's schema by name and type.
func (s *Service) checkInClickHouse(ctx context.Context, p *project, order []string) ([]diag, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	db := scratchPrefix + hex.EncodeToString(b[:])
	wh := s.deps.Warehouse
	if _, err := wh.Exec(ctx, "CREATE DATABASE "+warehouse.QuoteIdent(db)); err != nil {
		return nil, fmt.Errorf("create scratch database: %w", err)
	}
	defer func() {
		if _, err := wh.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(db)); err != nil {
			s.log.Warn("drop scratch database", "database", db, "err", err)
		}
	}()
	var diags []diag
	bad := map[string]bool{}
	for _, name := range order {
		d, ok := p.datasources[name]
		if !ok {
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
			diags = append(diags, diag{pos: d.ds.Pos, msg: fmt.Sprintf("Data Source %s: refused by the final check of its CREATE TABLE: %v", name, err)})
			continue
		}
		if _, err := wh.Exec(ctx, ddl); err != nil {
			bad[name] = true
			diags = append(diags, diag{pos: firstPos(d.ds.Engine.Pos, d.ds.Pos), msg: fmt.Sprintf("Data Source %s: ClickHouse rejects its table: %s", name, chMessage(err))})
			continue
		}
		if _, taken := p.datasources[name+quarantineSuffix]; taken {
			continue // refused above, with its name
		}
		if _, err := wh.Exec(ctx, quarantineDDL(d.ds, warehouse.QualifiedName(db, name+quarantineSuffix))); err != nil {
			diags = append(diags, diag{pos: d.ds.Pos, msg: fmt.Sprintf("Data Source %s: ClickHouse rejects its quarantine table: %s", name, chMessage(err))})
		}
	}
	for _, name := range order {
		pd, ok := p.pipes[name]
		if !ok || !pd.pushed {
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
		if bad[target] || p.datasources[target] == nil {
			continue
		}
		c := &composer{p: p, db: db, opts: template.RenderOptions{Check: true}}
		sql, err := c.node(out)
		if err == nil {
			err = s.verifyAST(ctx, db, sql)
		}
		if err != nil {
			diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("node %s: %v", out.node.Name, err)})
			continue
		}
		if out.node.Type == datafile.NodeMaterialized {
			stmt := fmt.Sprintf("CREATE MATERIALIZED VIEW %s TO %s AS\n%s", warehouse.QualifiedName(db, mvPrefix+name), warehouse.QualifiedName(db, target), sql)
			if _, err := wh.Exec(ctx, stmt); err != nil {
				diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("materialized node %s: ClickHouse rejects its view: %s", out.node.Name, chMessage(err))})
			}
			continue
		}
		res, err := wh.Query(ctx, "DESCRIBE TABLE ("+sql+")")
		if err != nil {
			diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("copy node %s: ClickHouse rejects its query: %s", out.node.Name, chMessage(err))})
			continue
		}
		if msg := matchColumns(describedColumns(res), p.datasources[target].ds); msg != "" {
			diags = append(diags, diag{pos: out.node.SQLPos, msg: fmt.Sprintf("copy node %s: its result does not fit TARGET_DATASOURCE %s: %s", out.node.Name, target, msg)})
		}
	}
	return diags, nil
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

// matchColumns checks a query's result against a Data Source: every result column must be a
// column of the same type (LowCardinality aside), and every column the result lacks must have
// a default.
func matchColumns(result []column, ds *datafile.DataSource) string {
	byName := map[string]datafile.Column{}
	for _, c := range ds.Columns {
		byName[c.Name] = c
	}
	var problems []string
	got := map[string]bool{}
	for _, r := range result {
		got[r.name] = true
		c, ok := byName[r.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("column %s is not in the Data Source", r.name))
			continue
		}
		if c.Type != "" && !assignable(r.typ, c.SQLType()) {
			problems = append(problems, fmt.Sprintf("column %s is %s in the result but %s in the Data Source", r.name, r.typ, c.SQLType()))
		}
	}
	for _, c := range ds.Columns {
		if !got[c.Name] && c.DefaultKind == "" {
			problems = append(problems, fmt.Sprintf("column %s of the Data Source is not in the result and has no default", c.Name))
		}
	}
	return strings.Join(problems, "; ")
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
		if _, err := s.deps.Warehouse.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(fmt.Sprint(r[0]))); err != nil {
			return err
		}
	}
	return nil
}
