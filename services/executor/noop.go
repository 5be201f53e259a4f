package executor

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"strconv"
	"time"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
)

// NoopRunner runs the steps of NOOP jobs: the test and benchmark kind, which touches no data.
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
var NoopRunner StepRunner = StepRunnerFunc(runNoop)

func runNoop(ctx context.Context, s *StepContext) (StepResult, error) {
	p := s.Job.GetParameters()
	commit := p["commit"] == "true"
	var rev uint64
	if commit {
		c, r, err := s.LoadCommit(ctx)
		if err != nil {
			return StepResult{}, err
		}
		if c != nil {
			s.Log.Debug("noop step committed by an earlier attempt", "attempt", c.GetAttempt())
			return StepResult{Statistics: &commonv1.Statistics{ReadRows: 1, WrittenRows: 1}}, nil
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
				return StepResult{}, ctx.Err()
			case <-end.C:
				break sleep
			case <-t.C:
				s.Progress(&commonv1.Statistics{Elapsed: durationpb.New(time.Since(start))})
			}
		}
	}
	switch p["fail"] {
	case "permanent":
		return StepResult{}, Permanent(errors.New("noop step failed as asked (fail=permanent)"))
	case "transient":
		n := 2
		if v, err := strconv.Atoi(p["transient_failures"]); err == nil {
			n = v
		}
		if int(s.Failures) < n {
			return StepResult{}, Transient(fmt.Errorf("noop step failed as asked (fail=transient, failure %d of %d)", s.Failures+1, n))
		}
	}
	if commit {
		if _, err := s.StoreCommit(ctx, []byte(strconv.FormatInt(s.Attempt, 10)), rev); err != nil && !errors.Is(err, ErrCommitConflict) {
			return StepResult{}, err
		}
		if d, _ := time.ParseDuration(p["sleep_after_commit"]); d > 0 {
			time.Sleep(d)
		}
	}
	return StepResult{Statistics: &commonv1.Statistics{ReadRows: 1, WrittenRows: 1}}, nil
}
