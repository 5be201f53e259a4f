package delta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// foreignIntentGrace is how long an attempt watches an attach intent that another attempt
// recorded, and the server does not know of, before deciding that it never ran: the attempt
// that recorded it sends the statement right after, so if it is alive its statement shows up
// in system.processes or the query log within that time.
const foreignIntentGrace = 5 * time.Second

// intentSendWindow is how long after it began to record an attach intent an attempt may still
// send the attach: well inside foreignIntentGrace, so that the statement reaches the server
// before any other attempt can judge the intent "never ran". An intent whose write took longer
// (NATS slow or cut off, the write applied but its answer late) may already be watched by
// another attempt: its attach is not sent, and the next try decides the intent again from the
// record, as any other attempt would.
const intentSendWindow = 2 * time.Second

// attachCommit is the commit of a step's staged partitions on servers without `MOVE PARTITION
// ... TO TABLE` (before 19.17). For each staged partition, upstream first:
//
//  1. record the intent (an AttachIntent: the statement's query id, the server's start time, the
//     Data Source partition's parts and highest block) in the commit record, compare-and-set;
//  2. `ALTER TABLE ds ATTACH PARTITION ID p FROM staging` under that query id, logged;
//  3. `ALTER TABLE staging DROP PARTITION ID p`: the staging tables say what is left.
//
// A partition still staged with an intent recorded for it was maybe attached already (a crash
// between 2 and 3). It is resolved before anything else: running → wait; the query log says
// finished → attached (drop it from staging); failed, or never seen by a server that did not
// restart since → not attached (attach again, with a new intent); otherwise (the server
// restarted and lost the log, and this attempt did not see the statement succeed) the
// partition's parts decide: unchanged since the intent, fewer new rows than the attach would
// have added, or no copy of the staged parts among the new ones while none of them has been
// merged → not attached; a copy of every staged part among them (same sizes, level and rows)
// → attached; else the step refuses (step.RefusedError) rather than risk a duplicate.
type attachCommit struct {
	sc     *step.Context
	d      *dataflow.Delta
	conn   warehouse.Conn
	record *persistencev1.DeltaCommit // the step's commit record, written with each intent
	rev    uint64                     // the commit record's revision as this attempt knows it
	me     string                     // this attempt
	mem    *attachMemory
	start  int64 // server start time, read once per run
}

// attachMemory is what an attempt knows of attaches across its tries: those it saw succeed
// (whatever the server remembers after a restart), and when it first saw another attempt's
// intent.
type attachMemory struct {
	attached map[string]bool
	seen     map[string]time.Time
}

func newAttachMemory() *attachMemory {
	return &attachMemory{attached: map[string]bool{}, seen: map[string]time.Time{}}
}

// newAttempt names an attempt of a step for its attach intents.
func newAttempt(sc *step.Context) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d-%s", sc.Attempt, hex.EncodeToString(b[:]))
}

func (a *attachCommit) run(ctx context.Context) error {
	// No merges in the staging tables while their partitions are attached and dropped: a
	// server before 19.17 keeps the parts a merge replaced on disk for minutes, and after a
	// crash it loads them again as if they were never dropped, so a dropped partition would
	// come back into staging and be attached twice. (Stopped again at every try: a restart
	// of the server lifts it.)
	a.d.StopStagingMerges(ctx)
	moves, err := a.d.Pending(ctx)
	if err != nil {
		return err
	}
	for _, m := range moves {
		if in := a.record.GetAttach(); in != nil && in.GetTable() == m.Table && in.GetPartition() == m.PartitionID {
			attached, err := a.resolve(ctx, in, m)
			if err != nil {
				return err
			}
			if attached {
				a.sc.Log.Info("an earlier attempt attached this partition; dropping it from staging", "table", m.Table, "partition", m.PartitionID, "query_id", in.GetQueryId())
				if err := a.d.DropStaged(ctx, m); err != nil {
					return err
				}
				continue
			}
		}
		if err := a.attach(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// attach records the intent, attaches and drops the partition from staging.
func (a *attachCommit) attach(ctx context.Context, m dataflow.Move) error {
	st, err := a.d.PartitionState(ctx, m.Table, m.PartitionID)
	if err != nil {
		return err
	}
	if a.start == 0 {
		if a.start, err = dataflow.ServerStart(ctx, a.conn); err != nil {
			return err
		}
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	in := &persistencev1.AttachIntent{
		Table: m.Table, Partition: m.PartitionID, QueryId: "sluice-attach-" + hex.EncodeToString(b[:]),
		By: a.me, At: timestamppb.New(time.Now().Truncate(time.Second)), ServerStart: a.start, Parts: st.Parts, MaxBlock: st.MaxBlock, Rows: m.Rows,
	}
	a.record.Attach = in
	began := time.Now()
	rev, err := a.sc.StoreCommit(ctx, &persistencev1.StepCommit{Commit: &persistencev1.StepCommit_Delta{Delta: a.record}}, a.rev)
	if err != nil {
		return err // a conflict: another attempt changed the record; the next try reads it again
	}
	a.rev = rev
	a.sc.Fault("attach.before")
	if took := time.Since(began); took > intentSendWindow {
		return fmt.Errorf("the attach intent of partition %s into %s (query %s) took %s to record: another attempt may be deciding it, so the attach is not sent; the next try decides it from the record",
			m.PartitionID, m.Table, in.GetQueryId(), took.Round(time.Millisecond))
	}
	if err := a.d.AttachPartition(ctx, m, in.GetQueryId()); err != nil {
		return err
	}
	a.mem.attached[in.GetQueryId()] = true
	a.sc.Fault("attach.after")
	return a.d.DropStaged(ctx, m)
}

// resolve tells whether the attach of an intent happened; see attachCommit.
func (a *attachCommit) resolve(ctx context.Context, in *persistencev1.AttachIntent, m dataflow.Move) (bool, error) {
	if a.mem.attached[in.GetQueryId()] {
		return true, nil // this attempt saw it succeed
	}
	out, err := dataflow.Outcome(ctx, a.conn, in.GetQueryId(), in.GetAt().AsTime())
	if err != nil {
		return false, err
	}
	switch out {
	case dataflow.QueryRunning:
		return false, fmt.Errorf("the attach of partition %s into %s (query %s) is still running", m.PartitionID, m.Table, in.GetQueryId())
	case dataflow.QueryFinished:
		return true, nil
	case dataflow.QueryFailed:
		return false, nil
	}
	if in.GetBy() != a.me {
		first, ok := a.mem.seen[in.GetQueryId()]
		if !ok {
			first = time.Now()
			a.mem.seen[in.GetQueryId()] = first
		}
		if time.Since(first) < foreignIntentGrace {
			return false, fmt.Errorf("watching the attach of partition %s into %s that attempt %s recorded (query %s)", m.PartitionID, m.Table, in.GetBy(), in.GetQueryId())
		}
	}
	start, err := dataflow.ServerStart(ctx, a.conn)
	if err != nil {
		return false, err
	}
	if out == dataflow.QueryNotLogged && absDiff(start, in.GetServerStart()) <= 2 {
		return false, nil // the server has run ever since, logging, and never saw the statement
	}
	st, err := a.d.PartitionState(ctx, m.Table, m.PartitionID)
	if err != nil {
		return false, err
	}
	if dataflow.SameParts(st.Parts, in.GetParts()) {
		return false, nil
	}
	rows, err := a.d.RowsAbove(ctx, m.Table, m.PartitionID, in.GetMaxBlock())
	if err != nil {
		return false, err
	}
	if rows < in.GetRows() {
		return false, nil
	}
	// The parts written into the partition since the intent: an attached copy of each staged
	// part (same files: same sizes and level, one new block; and the same rows) says the
	// attach happened; none, while no new part has been merged yet (every one a single
	// block), says it did not.
	staged, err := a.d.StagedParts(ctx, m)
	if err != nil {
		return false, err
	}
	above, err := a.d.PartsAbove(ctx, m.Table, m.PartitionID, in.GetMaxBlock())
	if err != nil {
		return false, err
	}
	matched, unmerged := 0, true
	used := map[string]bool{}
	for _, p := range above {
		unmerged = unmerged && p.MinBlock == p.MaxBlock
	}
	for _, sp := range staged {
		want, err := a.d.PartContent(ctx, m.Table, true, sp.Name)
		if err != nil {
			return false, err
		}
		for _, p := range above {
			if used[p.Name] || !p.SameFiles(sp) {
				continue
			}
			// Same sizes is not enough (small parts of other writers can have them): the
			// same rows.
			got, err := a.d.PartContent(ctx, m.Table, false, p.Name)
			if err != nil {
				return false, err
			}
			if got == want {
				used[p.Name] = true
				matched++
				break
			}
		}
	}
	switch {
	case len(staged) > 0 && matched == len(staged):
		return true, nil
	case matched == 0 && unmerged:
		return false, nil
	}
	return false, step.RefusedError{Err: fmt.Errorf("cannot tell whether partition %s of %s was attached before the ClickHouse server restarted (query %s: not in the server's query log; the partition has changed since): "+
		"its %d staged rows are kept in %s, not attached a second time; compare and attach them by hand (ALTER TABLE ... ATTACH PARTITION ID '%s' FROM ...), or run a server with MOVE PARTITION ... TO TABLE (19.17 or newer)",
		m.PartitionID, m.Table, in.GetQueryId(), in.GetRows(), a.d.Staging(m.Table), m.PartitionID)}
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
