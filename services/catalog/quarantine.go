package catalog

import (
	"strings"

	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// quarantineSuffix names a Data Source's quarantine table, `<datasource>_quarantine`: rows the
// ingest service could not convert to the Data Source's types, kept with their errors. Pipes
// and copies read it like a Data Source (the "recover quarantined rows" pattern).
const quarantineSuffix = "_quarantine"

// quarantineOf returns the Data Source whose quarantine table name is, or "".
func (p *project) quarantineOf(name string) string {
	base, ok := strings.CutSuffix(name, quarantineSuffix)
	if !ok {
		return ""
	}
	if _, exists := p.datasources[base]; exists {
		return base
	}
	return ""
}

// quarantineDDL is the CREATE TABLE of a Data Source's quarantine table, built like any Data
// Source's: every column of the Data Source as Nullable(String), then, as on the hosted
// platform, c__error_column and c__error (the columns that failed and why), c__import_id
// (the request) and insertion_date.
func quarantineDDL(ds *datafile.DataSource, qualifiedName string) string {
	q := &datafile.DataSource{Name: ds.Name + quarantineSuffix, Engine: datafile.Engine{
		Name: "MergeTree", PartitionKey: "toYYYYMM(insertion_date)", SortingKey: "insertion_date",
	}}
	for _, c := range ds.Columns {
		q.Columns = append(q.Columns, datafile.Column{Name: c.Name, Type: "String", Nullable: true})
	}
	q.Columns = append(q.Columns,
		datafile.Column{Name: "c__error_column", Type: "Array(String)"},
		datafile.Column{Name: "c__error", Type: "Array(String)"},
		datafile.Column{Name: "c__import_id", Type: "String", Nullable: true},
		datafile.Column{Name: "insertion_date", Type: "DateTime", DefaultKind: "DEFAULT", DefaultExpr: "now()"},
	)
	return q.DDL(qualifiedName)
}

// quarantineAlters adds to the quarantine table the columns a Data Source gains (at the end:
// old servers have neither FIRST nor IF NOT EXISTS), with their undo.
func quarantineAlters(qualifiedName string, prev, next *datafile.DataSource) (stmts, undo []string) {
	had := map[string]bool{}
	for _, c := range prev.Columns {
		had[c.Name] = true
	}
	for _, c := range next.Columns {
		if !had[c.Name] {
			stmts = append(stmts, "ALTER TABLE "+qualifiedName+" ADD COLUMN "+datafile.Column{Name: c.Name, Type: "String", Nullable: true}.ColumnSQL())
			undo = append(undo, "ALTER TABLE "+qualifiedName+" DROP COLUMN "+datafile.QuoteIdent(c.Name))
		}
	}
	return stmts, undo
}
