package warehouse

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/platform/warehouse/chdb"
	"unsafe"
)

// FormattedInserter is implemented by engines that take an INSERT's rows as text in a
// ClickHouse input format, parsed by the engine itself (the embedded engine). Callers that
// already hold rows in such a format (the ingest service's JSONEachRow) use it instead of
// InsertRows, saving a conversion to Go values and back.
type FormattedInserter interface {
	// InsertFormatted inserts data, rows in format (for example JSONCompactEachRow), into table
	// (SQL quoted with QualifiedName); columns, when given, name the columns the rows hold, in
	// order. The call's settings go into the INSERT's SETTINGS clause.
	InsertFormatted(ctx context.Context, table string, columns []string, format string, data []byte, opts ...Option) (Stats, error)
}

var _ FormattedInserter = (*embeddedConn)(nil)

// InsertFormatted sends the rows inline after `FORMAT <format>`.
func (c *embeddedConn) InsertFormatted(ctx context.Context, table string, columns []string, format string, data []byte, opts ...Option) (Stats, error) {
	o := resolveOptions(opts)
	if !tableRef.MatchString(table) || !settingName.MatchString(format) {
		return Stats{QueryID: o.QueryID}, &Error{Message: fmt.Sprintf("insert: %q is not a table name or %q not a format", table, format), Class: ClassPermanent, QueryID: o.QueryID}
	}
	var r chdb.Result
	err := c.withTurn(ctx, o, shapeClause, func(clause string) error {
		buf := make([]byte, 0, len(table)+len(clause)+len(format)+len(data)+32)
		buf = append(buf, "INSERT INTO "...)
		buf = append(buf, table...)
		buf = append(buf, ' ')
		if len(columns) > 0 {
			buf = append(buf, '(')
			for i, col := range columns {
				if i > 0 {
					buf = append(buf, ", "...)
				}
				buf = append(buf, QuoteIdent(col)...)
			}
			buf = append(buf, ") "...)
		}
		if clause != "" {
			buf = append(buf, clause...)
			buf = append(buf, ' ')
		}
		buf = append(buf, "FORMAT "...)
		buf = append(buf, format...)
		buf = append(buf, '\n')
		buf = append(buf, data...)
		var err error
		r, err = c.e.conn.Query(unsafe.String(unsafe.SliceData(buf), len(buf)), "Null") // buf is not used again
		return err
	})
	return embeddedStats(o.QueryID, r), err
}
