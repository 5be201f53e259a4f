package dataflow

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// MoveListed moves the given staged partitions (from Pending, with nothing staged since) into
// their Data Sources, upstream first: Commit without listing them again. After a crash, use
// Commit, which lists what is left.
func (d *Delta) MoveListed(ctx context.Context, moves []Move) error {
	for _, m := range moves {
		stmt := fmt.Sprintf("ALTER TABLE %s MOVE PARTITION ID %s TO TABLE %s", d.Staging(m.Table), warehouse.QuoteString(m.PartitionID), d.table(m.Table))
		if _, err := d.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("move partition %s into %s: %w", m.PartitionID, m.Table, err)
		}
	}
	return nil
}
