package executor

import (
	"context"
	"encoding/json"

	"github.com/sluicehq/sluice/services/executor/dataflow"
)

// commitByAttach is the commit of a step's staged partitions on servers without `MOVE
// PARTITION ... TO TABLE` (before 19.17), shared by copies and populates: each partition is
// attached to its Data Source, added to *attached ("table/partition") and the step's commit
// record (record, JSON, holding attached) stored again, and only then dropped from staging, so a
// redelivery skips what the record lists. The one window left is a crash between an attach and
// its record, after which the redelivery attaches that partition again; servers with MOVE
// PARTITION have no such window.
func commitByAttach(ctx context.Context, s *StepContext, d *dataflow.Delta, attached *[]string, record any) error {
	done := map[string]bool{}
	for _, a := range *attached {
		done[a] = true
	}
	_, err := d.CommitByAttach(ctx, func(m dataflow.Move) bool { return done[m.Table+"/"+m.PartitionID] },
		func(m dataflow.Move) error {
			done[m.Table+"/"+m.PartitionID] = true
			*attached = append(*attached, m.Table+"/"+m.PartitionID)
			_, rev, err := s.LoadCommit(ctx)
			if err != nil {
				return err
			}
			data, _ := json.Marshal(record)
			_, err = s.StoreCommit(ctx, data, rev)
			return err
		})
	return err
}
