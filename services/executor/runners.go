package executor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/durationpb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/services/executor/copypipe"
	"github.com/sluicehq/sluice/services/executor/delta"
	"github.com/sluicehq/sluice/services/executor/populate"
	"github.com/sluicehq/sluice/services/executor/step"
)

// buildRunners makes the executor's step runners: NOOP always; COPY and POPULATEVIEW when the
// executor has a ClickHouse connection, sharing one Committer (what the server can do is the
// server's, whatever the kind).
func (s *Service) buildRunners() map[schedulerv1.JobKind]step.Runner {
	runners := map[schedulerv1.JobKind]step.Runner{schedulerv1.JobKind_JOB_KIND_NOOP: noopRunner}
	d := s.deps
	if d.Warehouse == nil {
		return runners
	}
	committer := &delta.Committer{Conn: d.Warehouse}
	var written *nats.Conn
	if d.NATS != nil {
		written = d.NATS.NC
	}
	runners[schedulerv1.JobKind_JOB_KIND_COPY] = &copypipe.Runner{
		Conn: d.Warehouse, Committer: committer, Users: d.WorkspaceUsers, Catalog: d.Catalog, Events: d.Events,
		Log: s.log.With("runner", "copy"), Now: d.Now, OpsDatabase: d.OpsDatabase, EventsWait: s.cfg.EventsWait, Written: written,
	}
	runners[schedulerv1.JobKind_JOB_KIND_POPULATEVIEW] = populate.New(populate.Deps{
		Warehouse: d.Warehouse, Committer: committer, Users: d.WorkspaceUsers, Catalog: d.Catalog, Events: d.Events,
		OpsDatabase: d.OpsDatabase, EventsWait: s.cfg.EventsWait, Written: written, MemoryBudget: s.cfg.MemoryBudget,
		Log: s.log.With("runner", "populate"),
	})
	return runners
}

// noopRunner runs the steps of NOOP jobs: the test and benchmark kind, which touches no data.
// Its knobs are the job's parameters (see RunNoopJobRequest in scheduler.proto):
//
//	sleep=DURATION          sleep this long (stopping early when the step is cancelled),
//	                        reporting progress every 100ms
//	fail=permanent          fail with a permanent error
//	fail=transient          fail with a transient error while fewer than transient_failures
//	                        (default 2) earlier attempts failed
//	commit=true             skip everything if a previous attempt committed; else commit
//	                        the attempt number in the step's commit record at the end
//	sleep_after_commit=D    with commit=true, sleep this long after committing, whatever
//	                        happens to the job (a step finishing what it recorded)
//
// A committed step reports read_rows=1 and written_rows=1, so progress totals count steps.
var noopRunner step.Runner = step.RunnerFunc(runNoop)

func runNoop(ctx context.Context, s *step.Context) (step.Result, error) {
	p := s.Job.GetParameters()
	commit := p["commit"] == "true"
	var rev uint64
	if commit {
		c, r, err := s.LoadCommit(ctx)
		if err != nil {
			return step.Result{}, err
		}
		if c != nil {
			s.Log.Debug("noop step committed by an earlier attempt", "attempt", c.GetAttempt())
			return step.Result{Statistics: &commonv1.Statistics{ReadRows: 1, WrittenRows: 1}}, nil
		}
		rev = r
	}
	if d, _ := time.ParseDuration(p["sleep"]); d > 0 {
		start := time.Now()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		end := time.NewTimer(d)
		defer end.Stop()
	sleep:
		for {
			select {
			case <-ctx.Done():
				return step.Result{}, ctx.Err()
			case <-end.C:
				break sleep
			case <-t.C:
				s.Progress(&commonv1.Statistics{Elapsed: durationpb.New(time.Since(start))})
			}
		}
	}
	switch p["fail"] {
	case "permanent":
		return step.Result{}, step.Permanent(errors.New("noop step failed as asked (fail=permanent)"))
	case "transient":
		n := 2
		if v, err := strconv.Atoi(p["transient_failures"]); err == nil {
			n = v
		}
		if int(s.Failures) < n {
			return step.Result{}, step.Transient(fmt.Errorf("noop step failed as asked (fail=transient, failure %d of %d)", s.Failures+1, n))
		}
	}
	if commit {
		if _, err := s.StoreCommit(ctx, &persistencev1.StepCommit{Commit: &persistencev1.StepCommit_Noop{Noop: &persistencev1.NoopCommit{}}}, rev); err != nil && !errors.Is(err, step.ErrCommitConflict) {
			return step.Result{}, err
		}
		if d, _ := time.ParseDuration(p["sleep_after_commit"]); d > 0 {
			time.Sleep(d)
		}
	}
	return step.Result{Statistics: &commonv1.Statistics{ReadRows: 1, WrittenRows: 1}}, nil
}
