package executor

// The commit protocol of copies and populates (docs/data-movement.md states it whole):
//
//  1. Before its commit record says "committing", a step has changed nothing visible: any
//     failure leaves every Data Source as it was, and the step may fail its job.
//  2. Once the record says "committing", the commit is finished, however long ClickHouse or
//     NATS is away: finishCommit retries it with backoff (the job shows "committing, waiting
//     for ClickHouse"), never giving up on a retry count or a time budget. Only an executor
//     draining hands it to another executor, which resumes it from the record.
//  3. Every commit statement can be repeated: the moves (`MOVE PARTITION ... TO TABLE`) are
//     planned in the record that says "committing" and decided after a crash from the moved
//     parts' files (moveCommit: a move is not atomic through a crash of the engine), and
//     where the engine cannot tell, the step refuses; an exchange is recognised by its table
//     UUIDs; an attach (servers without MOVE PARTITION) is recorded
//     as an intent before it runs and resolved after a crash (attachCommit), and where the
//     server cannot tell, the step refuses rather than risk attaching twice.
//  4. Every NATS KV call of the path is bounded (kvCallTimeout) and retried: a NATS restart
//     costs seconds.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
)

// kvCallTimeout bounds one NATS KV call of a step's commit path. A call that does not answer
// in time is made again: a NATS server that restarts costs a few seconds, not the step.
const kvCallTimeout = 5 * time.Second

// commitBackoffMax caps the wait between two tries of an interrupted commit.
const commitBackoffMax = 10 * time.Second

// waitingPrefix starts the waiting reason of a job whose commit waits.
const waitingPrefix = "committing, waiting for "

// natsError marks an error of NATS (as opposed to ClickHouse), for the waiting reason.
type natsError struct{ error }

func (e natsError) Unwrap() error { return e.error }

// refusedError ends a commit that cannot go on without risking a duplicate (the one case where
// a recorded commit is not finished): the step fails its job with it, and its staging tables
// are kept for the operator.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// definitiveKV reports whether a KV error is an answer (not a failure to get one); a
// compare-and-set conflict is one, whatever code the bucket's stream reports it with.
func definitiveKV(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || natsx.IsConflict(err) ||
		errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey)
}

// retryNATS makes call, each time bounded by kvCallTimeout, until it answers (success or a
// definitive KV error) or ctx ends.
func retryNATS(ctx context.Context, log *slog.Logger, what string, call func(context.Context) error) error {
	for n := int32(1); ; n++ {
		cctx, cancel := context.WithTimeout(ctx, kvCallTimeout)
		err := call(cctx)
		cancel()
		if err == nil || definitiveKV(err) {
			return err
		}
		if ctx.Err() != nil {
			return natsError{fmt.Errorf("%s: %w", what, err)}
		}
		if log != nil {
			log.Warn("NATS call failed; retrying", "call", what, "try", n, "err", err)
		}
		t := time.NewTimer(min(backoff(n), 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return natsError{fmt.Errorf("%s: %w", what, err)}
		case <-t.C:
		}
	}
}

// finishCommit runs commit until it succeeds; the caller's commit record says "committing".
// A cancel or the job's maximum execution time does not stop it (a commit is never left half
// done); a drain returns, so that another executor resumes the commit from its record; a
// refusal (refusedError) fails the step.
func finishCommit(ctx context.Context, sc *StepContext, commit func(ctx context.Context) error) error {
	cctx, stop := drainOnly(ctx)
	defer stop()
	for n := int32(1); ; n++ {
		err := commit(cctx)
		if err == nil {
			if n > 1 {
				sc.Waiting("")
				sc.Log.Info("commit finished after interruptions", "tries", n)
			}
			return nil
		}
		var refused refusedError
		if errors.As(err, &refused) {
			return Permanent(err)
		}
		if errors.Is(context.Cause(ctx), errDrain) {
			return err
		}
		if errors.Is(err, ErrCommitConflict) && n < 5 {
			continue // another attempt changed the record: the next try reads it
		}
		dep := "ClickHouse"
		var ne natsError
		if errors.As(err, &ne) {
			dep = "NATS"
		}
		sc.Waiting(waitingPrefix + dep + ": " + firstLine(err.Error()))
		wait := min(backoff(n), commitBackoffMax)
		sc.Log.Warn("commit interrupted; it is retried until it is done", "waiting_for", dep, "try", n, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		done := ctx.Done()
	sleep:
		for {
			select {
			case <-t.C:
				break sleep
			case <-done:
				if errors.Is(context.Cause(ctx), errDrain) {
					t.Stop()
					return err
				}
				done = nil // cancelled: the commit goes on
			}
		}
	}
}

// drainOnly returns a context that ends only when ctx ends for a drain (not for a cancel or
// the maximum execution time): what a step that may have recorded its commit runs under.
func drainOnly(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), errDrain) {
			cancel(errDrain)
		}
	})
	return c, func() { stop(); cancel(nil) }
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// attachState is what a step's commit record keeps for the attach fallback.
type attachState struct {
	// Attached lists "table/partition" attached and recorded by earlier versions of Sluice.
	Attached []string `json:"attached,omitempty"`
	// Attach is the last attach recorded before it ran.
	Attach *attachIntent `json:"attach,omitempty"`
}

// attachIntent is recorded in the commit record before an `ATTACH PARTITION ... FROM`: what a
// later attempt needs to tell whether that attach happened.
type attachIntent struct {
	Table     string `json:"table"`
	Partition string `json:"partition"`
	// QueryID is the attach statement's query id (system.processes, system.query_log).
	QueryID string `json:"query_id"`
	// By is the attempt that recorded the intent.
	By string `json:"by"`
	// At is when it was recorded (Unix seconds, the executor's clock).
	At int64 `json:"at"`
	// ServerStart is when the server had started (Unix seconds): if it differs later, the
	// server restarted and may have lost the query log of the attach.
	ServerStart int64 `json:"server_start"`
	// Parts and MaxBlock are the state of the Data Source's partition before the attach.
	Parts    []string `json:"parts"`
	MaxBlock int64    `json:"max_block"`
	// Rows is the number of staged rows of the partition.
	Rows uint64 `json:"rows"`
}

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
//  1. record the intent (attachIntent: the statement's query id, the server's start time, the
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
// → attached; else the step refuses (refusedError) rather than risk a duplicate.
type attachCommit struct {
	sc     *StepContext
	d      *dataflow.Delta
	conn   warehouse.Conn
	record any          // the step's whole commit record, written with each intent
	state  *attachState // inside record
	rev    uint64       // the commit record's revision as this attempt knows it
	me     string       // this attempt
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
func newAttempt(sc *StepContext) string {
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
		if slices.Contains(a.state.Attached, m.Table+"/"+m.PartitionID) {
			if err := a.d.DropStaged(ctx, m); err != nil {
				return err
			}
			continue
		}
		if in := a.state.Attach; in != nil && in.Table == m.Table && in.Partition == m.PartitionID {
			attached, err := a.resolve(ctx, *in, m)
			if err != nil {
				return err
			}
			if attached {
				a.sc.Log.Info("an earlier attempt attached this partition; dropping it from staging", "table", m.Table, "partition", m.PartitionID, "query_id", in.QueryID)
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
	in := &attachIntent{
		Table: m.Table, Partition: m.PartitionID, QueryID: "sluice-attach-" + hex.EncodeToString(b[:]),
		By: a.me, At: time.Now().Unix(), ServerStart: a.start, Parts: st.Parts, MaxBlock: st.MaxBlock, Rows: m.Rows,
	}
	a.state.Attach = in
	data, err := json.Marshal(a.record)
	if err != nil {
		return Permanent(err)
	}
	began := time.Now()
	rev, err := a.sc.StoreCommit(ctx, data, a.rev)
	if err != nil {
		return err // a conflict: another attempt changed the record; the next try reads it again
	}
	a.rev = rev
	a.sc.fault("attach.before")
	if took := time.Since(began); took > intentSendWindow {
		return fmt.Errorf("the attach intent of partition %s into %s (query %s) took %s to record: another attempt may be deciding it, so the attach is not sent; the next try decides it from the record",
			m.PartitionID, m.Table, in.QueryID, took.Round(time.Millisecond))
	}
	if err := a.d.AttachPartition(ctx, m, in.QueryID); err != nil {
		return err
	}
	a.mem.attached[in.QueryID] = true
	a.sc.fault("attach.after")
	return a.d.DropStaged(ctx, m)
}

// resolve tells whether the attach of an intent happened; see attachCommit.
func (a *attachCommit) resolve(ctx context.Context, in attachIntent, m dataflow.Move) (bool, error) {
	if a.mem.attached[in.QueryID] {
		return true, nil // this attempt saw it succeed
	}
	out, err := dataflow.Outcome(ctx, a.conn, in.QueryID, time.Unix(in.At, 0))
	if err != nil {
		return false, err
	}
	switch out {
	case dataflow.QueryRunning:
		return false, fmt.Errorf("the attach of partition %s into %s (query %s) is still running", m.PartitionID, m.Table, in.QueryID)
	case dataflow.QueryFinished:
		return true, nil
	case dataflow.QueryFailed:
		return false, nil
	}
	if in.By != a.me {
		first, ok := a.mem.seen[in.QueryID]
		if !ok {
			first = time.Now()
			a.mem.seen[in.QueryID] = first
		}
		if time.Since(first) < foreignIntentGrace {
			return false, fmt.Errorf("watching the attach of partition %s into %s that attempt %s recorded (query %s)", m.PartitionID, m.Table, in.By, in.QueryID)
		}
	}
	start, err := dataflow.ServerStart(ctx, a.conn)
	if err != nil {
		return false, err
	}
	if out == dataflow.QueryNotLogged && absDiff(start, in.ServerStart) <= 2 {
		return false, nil // the server has run ever since, logging, and never saw the statement
	}
	st, err := a.d.PartitionState(ctx, m.Table, m.PartitionID)
	if err != nil {
		return false, err
	}
	if dataflow.SameParts(st.Parts, in.Parts) {
		return false, nil
	}
	rows, err := a.d.RowsAbove(ctx, m.Table, m.PartitionID, in.MaxBlock)
	if err != nil {
		return false, err
	}
	if rows < in.Rows {
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
	above, err := a.d.PartsAbove(ctx, m.Table, m.PartitionID, in.MaxBlock)
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
	return false, refusedError{fmt.Errorf("cannot tell whether partition %s of %s was attached before the ClickHouse server restarted (query %s: not in the server's query log; the partition has changed since): "+
		"its %d staged rows are kept in %s, not attached a second time; compare and attach them by hand (ALTER TABLE ... ATTACH PARTITION ID '%s' FROM ...), or run a server with MOVE PARTITION ... TO TABLE (19.17 or newer)",
		m.PartitionID, m.Table, in.QueryID, in.Rows, a.d.Staging(m.Table), m.PartitionID)}
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// moveState is what a step's commit record keeps for its moves (servers with MOVE PARTITION
// ... TO TABLE, and chDB).
type moveState struct {
	// Plan is recorded before the moves: what an attempt needs to decide them after the
	// engine was killed inside one (absent from records of earlier versions).
	Plan *dataflow.MovePlan `json:"move_plan,omitempty"`
}

// moveCommit is the commit of a step's staged partitions by moves. A move is atomic for the
// engine's readers but not for a crash of the engine (see dataflow.MovePlan), so:
//
//  1. the plan (the staged parts, each Data Source's highest block) is in the commit record
//     before the first move: the record that says "committing" carries it, at no extra write;
//  2. the attempt that recorded it moves the partitions in the plan's order;
//  3. any later try (another attempt, or this one after an error) first waits for a move of
//     the step still running (a server whose executor died), then resolves what a killed
//     move left (dataflow.ResolveMoves: moved → dropped from staging; partly moved → the
//     moved parts dropped from staging; undecidable → refusedError); it records a new plan
//     for what is left before moving it (a restarted engine numbers blocks anew).
type moveCommit struct {
	sc     *StepContext
	d      *dataflow.Delta
	conn   warehouse.Conn
	record any        // the step's whole commit record, written with a new plan
	state  *moveState // inside record
	rev    uint64     // the commit record's revision as this attempt knows it
	// fresh: the plan was made by this attempt, and no move has run since.
	fresh bool
}

func (c *moveCommit) run(ctx context.Context) error {
	plan := c.state.Plan
	if plan == nil {
		_, err := c.d.Commit(ctx) // a record of an earlier version
		return err
	}
	if c.fresh {
		c.fresh = false
		return c.move(ctx, plan)
	}
	running, err := c.d.MoveRunning(ctx, plan)
	if err != nil {
		return err
	}
	if running {
		return fmt.Errorf("a move of this step that an earlier attempt started is still running")
	}
	left, found, err := c.d.ResolveMoves(ctx, plan)
	var undecidable *dataflow.UndecidableMoveError
	if errors.As(err, &undecidable) {
		return refusedError{err}
	}
	c.sc.Log.Info("commit resumed: decided what earlier moves did", "left", len(left), "found_moved", len(found))
	for _, f := range found {
		if f.Moved {
			c.sc.Log.Info("an interrupted move had moved this partition already; dropped it from staging", "table", f.Move.Table, "partition", f.Move.PartitionID, "rows", f.Move.Rows)
		} else {
			c.sc.Log.Info("an interrupted move had moved some parts of this partition; moving the rest", "table", f.Move.Table, "partition", f.Move.PartitionID, "parts", f.Parts)
		}
	}
	if err != nil || len(left) == 0 {
		return err
	}
	next, err := c.d.Plan(ctx)
	if err != nil || next == nil {
		return errors.Join(err, errors.New("no plan for the moves left"))
	}
	c.state.Plan = next
	data, err := json.Marshal(c.record)
	if err != nil {
		return Permanent(err)
	}
	rev, err := c.sc.StoreCommit(ctx, data, c.rev)
	if err != nil {
		return err // a conflict: another attempt changed the record; the next try reads it again
	}
	c.rev = rev
	return c.move(ctx, next)
}

// move runs the plan's moves (the fault points "move.inside" and "move.after" around them).
func (c *moveCommit) move(ctx context.Context, plan *dataflow.MovePlan) error {
	if r := c.sc.faultArmed("move.inside"); r != nil && r.kill {
		stop, err := c.d.WatchMoved(ctx, plan, func() {
			c.sc.Log.Warn("fault point reached", "point", "move.inside", "kill", true)
			killNow()
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	err := c.d.MovePlanned(ctx, plan, nil)
	c.sc.fault("move.after")
	return err
}
