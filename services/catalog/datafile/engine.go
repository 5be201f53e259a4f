package datafile

import (
	"fmt"
	"strings"
)

// engineNames are the supported engines (CLI5 ch_utils/engine.py).
var engineNames = []string{
	"MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree",
	"CollapsingMergeTree", "VersionedCollapsingMergeTree", "Join", "Null",
}

func canonicalEngine(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", false
	}
	// "MergeTree()" is accepted as MergeTree.
	v = strings.TrimSuffix(v, "()")
	for _, n := range engineNames {
		if strings.EqualFold(n, v) {
			return n, true
		}
	}
	return "", false
}

// EngineName is the engine's name, MergeTree when none was given.
func (e Engine) EngineName() string {
	if e.Name == "" {
		return "MergeTree"
	}
	return e.Name
}

func isTupleKey(k string) bool {
	k = strings.ReplaceAll(strings.TrimSpace(k), " ", "")
	return k == "tuple()" || k == "()"
}

// check applies the per-engine rules of spec §2.1 that one file can decide.
func (e Engine) check() error {
	at := e.Pos
	switch e.EngineName() {
	case "ReplacingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree":
		if strings.TrimSpace(e.SortingKey) == "" || isTupleKey(e.SortingKey) {
			return errAt(at, "%s needs ENGINE_SORTING_KEY with at least one column (tuple() is not allowed)", e.EngineName())
		}
	}
	switch e.EngineName() {
	case "CollapsingMergeTree":
		if e.Sign == "" {
			return errAt(at, "CollapsingMergeTree needs ENGINE_SIGN (the sign column)")
		}
	case "VersionedCollapsingMergeTree":
		if e.Sign == "" || e.Version == "" {
			return errAt(at, "VersionedCollapsingMergeTree needs ENGINE_SIGN and ENGINE_VERSION")
		}
	case "Join":
		if e.JoinStrictness == "" || e.JoinType == "" || len(e.KeyColumns) == 0 {
			return errAt(at, "Join engine needs ENGINE_JOIN_STRICTNESS (ANY|ALL|SEMI|ANTI), ENGINE_JOIN_TYPE (LEFT|INNER|RIGHT|FULL) and ENGINE_KEY_COLUMNS")
		}
	}
	return nil
}

func wrapKey(k string) string {
	k = strings.TrimSpace(k)
	if isTupleKey(k) {
		return "tuple()"
	}
	return "(" + k + ")"
}

// quoteNames back-quotes column names and joins them with commas.
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// SettingsSQL is the ENGINE_SETTINGS list as emitted: "name = value, ...".
func (e Engine) SettingsSQL() string {
	parts := make([]string, len(e.Settings))
	for i, s := range e.Settings {
		parts[i] = s.Name + " = " + s.Value
	}
	return strings.Join(parts, ", ")
}

// HasSetting reports whether ENGINE_SETTINGS sets name.
func (e Engine) HasSetting(name string) bool {
	for _, s := range e.Settings {
		if s.Name == name {
			return true
		}
	}
	return false
}

// Clause renders the engine part of CREATE TABLE, in the CLI's order:
// ENGINE = Name(args) PARTITION BY (..) ORDER BY (..) PRIMARY KEY (..)
// SAMPLE BY (..) TTL .. SETTINGS ..
// Every part is what the parser produced from its tokens (see ddlparts.go).
func (e Engine) Clause() string {
	name := e.EngineName()
	var args []string
	switch name {
	case "ReplacingMergeTree":
		if e.Ver != "" {
			args = append(args, QuoteIdent(e.Ver))
			if e.IsDeleted != "" {
				args = append(args, QuoteIdent(e.IsDeleted))
			}
		}
	case "SummingMergeTree":
		if len(e.Columns) > 0 {
			args = append(args, "("+quoteNames(e.Columns)+")")
		}
	case "CollapsingMergeTree":
		args = append(args, QuoteIdent(e.Sign))
	case "VersionedCollapsingMergeTree":
		args = append(args, QuoteIdent(e.Sign), QuoteIdent(e.Version))
	case "Join":
		args = append(args, e.JoinStrictness, e.JoinType, quoteNames(e.KeyColumns))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ENGINE = %s(%s)", name, strings.Join(args, ", "))
	if name == "Join" || name == "Null" {
		if s := e.SettingsSQL(); s != "" {
			b.WriteString("\nSETTINGS " + s)
		}
		return b.String()
	}
	if k := strings.TrimSpace(e.PartitionKey); k != "" {
		b.WriteString("\nPARTITION BY " + wrapKey(k))
	}
	sk := strings.TrimSpace(e.SortingKey)
	if sk == "" {
		sk = "tuple()"
	}
	b.WriteString("\nORDER BY " + wrapKey(sk))
	if k := strings.TrimSpace(e.PrimaryKey); k != "" {
		b.WriteString("\nPRIMARY KEY " + wrapKey(k))
	}
	if k := strings.TrimSpace(e.SamplingKey); k != "" {
		b.WriteString("\nSAMPLE BY " + wrapKey(k))
	}
	if k := strings.TrimSpace(e.TTL); k != "" {
		b.WriteString("\nTTL " + k)
	}
	if s := e.SettingsSQL(); s != "" {
		b.WriteString("\nSETTINGS " + s)
	}
	return b.String()
}

// QuoteIdent back-quotes a ClickHouse identifier.
func QuoteIdent(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "`", "\\`")
	return "`" + r.Replace(s) + "`"
}

// ColumnSQL renders one column definition for CREATE TABLE.
func (c Column) ColumnSQL() string {
	var b strings.Builder
	b.WriteString(QuoteIdent(c.Name))
	if t := c.SQLType(); t != "" {
		b.WriteString(" " + t)
	}
	if c.DefaultKind != "" {
		b.WriteString(" " + c.DefaultKind)
		if c.DefaultExpr != "" {
			b.WriteString(" " + c.DefaultExpr)
		}
	}
	if c.Codec != "" {
		b.WriteString(" CODEC(" + c.Codec + ")")
	}
	return b.String()
}

// IndexSQL renders one skip index for CREATE TABLE.
func (i Index) IndexSQL() string {
	s := "INDEX " + QuoteIdent(i.Name) + " " + i.Expr + " TYPE " + i.Type
	if i.Granularity != "" {
		s += " GRANULARITY " + i.Granularity
	}
	return s
}

// DDL renders CREATE TABLE for the Data Source under the given (already
// qualified and quoted) table name, e.g. "`ws_db`.`events`".
func (ds *DataSource) DDL(qualifiedName string) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE " + qualifiedName + "\n(\n")
	n := len(ds.Columns) + len(ds.Indexes)
	k := 0
	for _, c := range ds.Columns {
		k++
		b.WriteString("    " + c.ColumnSQL())
		if k < n {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	for _, i := range ds.Indexes {
		k++
		b.WriteString("    " + i.IndexSQL())
		if k < n {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(")\n")
	b.WriteString(ds.Engine.Clause())
	return b.String()
}

// dimensionsSetting lets an AggregatingMergeTree keep plain columns outside
// its sorting key. ClickHouse 26+ refuses such tables by default; the
// hosted platform's datafiles rely on them (CORPUS crowd.dev
// cdp_member_segment_aggregates_ds). Older servers do not know the setting,
// so whoever deploys decides (the catalog adds it when the server has it).
const DimensionsSetting = "allow_dimensions_outside_sorting_key"

// NeedsDimensionsSetting reports whether the Data Source is an
// AggregatingMergeTree with a plain column in none of its keys, and does not
// set DimensionsSetting itself.
func (ds *DataSource) NeedsDimensionsSetting() bool {
	if ds.Engine.EngineName() != "AggregatingMergeTree" || ds.Engine.HasSetting(DimensionsSetting) {
		return false
	}
	inKey := map[string]bool{}
	for _, k := range []string{ds.Engine.SortingKey, ds.Engine.PartitionKey, ds.Engine.PrimaryKey} {
		for _, id := range keyIdentifiers(k) {
			inKey[id] = true
		}
	}
	for _, c := range ds.Columns {
		if c.DefaultKind == "ALIAS" || c.DefaultKind == "EPHEMERAL" {
			continue
		}
		if strings.HasPrefix(c.Type, "AggregateFunction(") || strings.HasPrefix(c.Type, "SimpleAggregateFunction(") {
			continue
		}
		if !inKey[c.Name] {
			return true
		}
	}
	return false
}

// keyIdentifiers returns the identifiers (bare or back-quoted) of a key
// expression.
func keyIdentifiers(expr string) []string {
	var out []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '`':
			j := strings.IndexByte(expr[i+1:], '`')
			if j < 0 {
				return out
			}
			out = append(out, expr[i+1:i+1+j])
			i += j + 2
		case c == '\'':
			j := strings.IndexByte(expr[i+1:], '\'')
			if j < 0 {
				return out
			}
			i += j + 2
		case isIdentByte(c):
			j := i
			for j < len(expr) && (isIdentByte(expr[j]) || expr[j] >= '0' && expr[j] <= '9' || expr[j] == '.') {
				j++
			}
			out = append(out, expr[i:j])
			i = j
		default:
			i++
		}
	}
	return out
}
