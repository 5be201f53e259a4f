package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/idempotency"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
)

// jobRequest is what createJob needs; copies and populates fill it in.
type jobRequest struct {
	Workspace        string
	Kind             schedulerv1.JobKind
	Pipe             string
	Node             string
	TargetDatasource string
	Parameters       map[string]string
	// JobTimestamp is the schedule tick, or zero for the time the job is received.
	JobTimestamp  time.Time
	ExecutionType schedulerv1.ExecutionType
	Mode          commonv1.CopyMode
	// MaxExecutionTime is zero for the server's default.
	MaxExecutionTime time.Duration
	Populate         *schedulerv1.PopulateOptions
	// Steps of the job; at least one.
	Steps []*persistencev1.StepSpec
	// Limited jobs count against the workspace's copy concurrency limit and are admitted in
	// FIFO order by the leader; copy jobs always are.
	Limited bool
	// ID, when set, is the job's id instead of a new one: a deterministic id (a schedule tick's)
	// makes creating the same job twice fail with jetstream.ErrKeyExists.
	ID string
	// CopyToken is the token a scheduled copy was rendered with (not stored with the job).
	CopyToken string
}

// InvalidError is a bad request; Field names the request field. With Valid set, Name is an
// unknown name (a parameter) and Valid lists the known ones.
type InvalidError struct {
	Field string
	Msg   string
	Name  string
	Valid []string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

func checkWorkspace(ws string) error {
	if ws == "" {
		return &InvalidError{Field: "workspace", Msg: "required"}
	}
	if !jobs.ValidName(ws) {
		return &InvalidError{Field: "workspace", Msg: fmt.Sprintf("%q is not a workspace name (letters, digits, _ and -)", ws)}
	}
	return nil
}

// checkJob checks a job request before its record is built.
func checkJob(nj jobRequest) error {
	if err := checkWorkspace(nj.Workspace); err != nil {
		return err
	}
	if len(nj.Steps) == 0 {
		return &InvalidError{Field: "steps", Msg: "a job needs at least one step"}
	}
	seen := map[string]bool{}
	for _, st := range nj.Steps {
		if !jobs.ValidName(st.GetId()) || seen[st.GetId()] {
			return &InvalidError{Field: "steps", Msg: fmt.Sprintf("step id %q is empty, repeated or not a name", st.GetId())}
		}
		seen[st.GetId()] = true
	}
	if nj.MaxExecutionTime < 0 {
		return &InvalidError{Field: "max_execution_time", Msg: "must not be negative"}
	}
	return nil
}

// newRecord builds the record of a checked job request with job id id, created at now.
func (s *Service) newRecord(nj jobRequest, id string, now time.Time) *jobs.Record {
	maxExec := cmp.Or(nj.MaxExecutionTime, s.cfg.MaxExecutionTime)
	ts := nj.JobTimestamp
	if ts.IsZero() {
		ts = now
	}
	et := nj.ExecutionType
	if et == schedulerv1.ExecutionType_EXECUTION_TYPE_UNSPECIFIED {
		et = schedulerv1.ExecutionType_EXECUTION_TYPE_MANUAL
	}
	job := &schedulerv1.Job{
		Id:               id,
		Workspace:        nj.Workspace,
		Kind:             nj.Kind,
		Pipe:             nj.Pipe,
		Node:             nj.Node,
		TargetDatasource: nj.TargetDatasource,
		Parameters:       nj.Parameters,
		JobTimestamp:     timestamppb.New(ts),
		ExecutionType:    et,
		Mode:             nj.Mode,
		MaxExecutionTime: durationpb.New(maxExec),
		Populate:         nj.Populate,
	}
	limited := nj.Limited || nj.Kind == schedulerv1.JobKind_JOB_KIND_COPY
	return jobs.Create(jobs.NewJob{Job: job, Steps: nj.Steps, Limited: limited}, now)
}

// createJob records a new job, WAITING, and queues its steps at once unless it is limited (the
// leader then admits it in FIFO order within its workspace's limit). Should queueing fail after
// the record is written, the leader's reconcile queues the steps later; the job is not lost.
func (s *Service) createJob(ctx context.Context, nj jobRequest) (*schedulerv1.Job, error) {
	if err := checkJob(nj); err != nil {
		return nil, err
	}
	now := s.now()
	id := nj.ID
	req, fromRequest := idempotency.FromContext(ctx)
	fromRequest = fromRequest && id == ""
	switch {
	case fromRequest:
		id = jobs.RequestID(req.FirstSeen, nj.Workspace, req.ID)
	case id == "":
		id = jobs.NewID(now)
	case !jobs.ValidName(id):
		return nil, &InvalidError{Field: "id", Msg: fmt.Sprintf("%q is not a job id", id)}
	}
	rec := s.newRecord(nj, id, now)
	job, limited := rec.GetJob(), rec.GetLimited()
	if fromRequest {
		job.RequestId = req.ID
	}
	rev, err := s.store.Create(ctx, rec)
	if fromRequest && errors.Is(err, jetstream.ErrKeyExists) {
		// A retry of a call whose first attempt created the job before its process died.
		prev, _, gerr := s.store.Get(ctx, nj.Workspace, id)
		if gerr != nil {
			return nil, gerr
		}
		return jobs.Public(prev), nil
	}
	if err != nil {
		return nil, err
	}
	s.metrics.created.WithLabelValues(strings.ToLower(strings.TrimPrefix(nj.Kind.String(), "JOB_KIND_"))).Inc()
	if !limited {
		if err := s.jobs.Publish(ctx, rec, rev); err != nil {
			s.log.Warn("queueing steps failed; the leader will queue them", "job", job.GetId(), "err", err)
		}
	}
	return job, nil
}

// noopMaxSteps bounds steps=N of a NOOP job.
const noopMaxSteps = 10000

// runNoopJob starts a NOOP job (see RunNoopJobRequest for its parameters).
func (s *Service) runNoopJob(ctx context.Context, ws string, params map[string]string, maxExec time.Duration) (*schedulerv1.Job, error) {
	n := 1
	limited := false
	for k, v := range params {
		switch k {
		case "steps":
			i, err := strconv.Atoi(v)
			if err != nil || i < 1 || i > noopMaxSteps {
				return nil, &InvalidError{Field: "parameters.steps", Msg: fmt.Sprintf("%q is not a number from 1 to %d", v, noopMaxSteps)}
			}
			n = i
		case "sleep", "sleep_after_commit":
			if d, err := time.ParseDuration(v); err != nil || d < 0 {
				return nil, &InvalidError{Field: "parameters." + k, Msg: fmt.Sprintf("%q is not a duration such as 2s", v)}
			}
		case "fail":
			if v != "permanent" && v != "transient" && v != "" {
				return nil, &InvalidError{Field: "parameters.fail", Msg: fmt.Sprintf("%q is not permanent or transient", v)}
			}
		case "transient_failures":
			if i, err := strconv.Atoi(v); err != nil || i < 0 {
				return nil, &InvalidError{Field: "parameters.transient_failures", Msg: fmt.Sprintf("%q is not a count", v)}
			}
		case "limited", "commit":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, &InvalidError{Field: "parameters." + k, Msg: fmt.Sprintf("%q is not true or false", v)}
			}
			if k == "limited" {
				limited = b
			}
		default:
			return nil, &InvalidError{Field: "parameters", Msg: fmt.Sprintf("unknown NOOP parameter %q (known: steps, sleep, fail, transient_failures, limited, commit, sleep_after_commit)", k),
				Name: k, Valid: []string{"steps", "sleep", "fail", "transient_failures", "limited", "commit", "sleep_after_commit"}}
		}
	}
	steps := make([]*persistencev1.StepSpec, n)
	for i := range steps {
		steps[i] = &persistencev1.StepSpec{Id: strconv.Itoa(i), Work: &persistencev1.StepSpec_Noop{Noop: &persistencev1.NoopStep{}}}
	}
	return s.createJob(ctx, jobRequest{
		Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_NOOP, Parameters: params,
		MaxExecutionTime: maxExec, Steps: steps, Limited: limited,
	})
}

// GetJob returns a job.
func (s *Service) getJob(ctx context.Context, ws, id string) (*schedulerv1.Job, error) {
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, &InvalidError{Field: "id", Msg: "required"}
	}
	rec, _, err := s.store.Get(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	return jobs.Public(rec), nil
}

// ListFilter selects jobs.
type ListFilter struct {
	Statuses []schedulerv1.JobStatus
	Kinds    []schedulerv1.JobKind
	Pipe     string
	Since    time.Time
}

func (f ListFilter) match(j *schedulerv1.Job) bool {
	if len(f.Statuses) > 0 && !contains(f.Statuses, j.GetStatus()) {
		return false
	}
	if len(f.Kinds) > 0 && !contains(f.Kinds, j.GetKind()) {
		return false
	}
	if f.Pipe != "" && j.GetPipe() != f.Pipe {
		return false
	}
	if !f.Since.IsZero() && j.GetCreateTime().AsTime().Before(f.Since) {
		return false
	}
	return true
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// listJobs returns a workspace's retained jobs, newest first.
func (s *Service) listJobs(ctx context.Context, ws string, f ListFilter) ([]*schedulerv1.Job, error) {
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	w, err := s.store.Watch(ctx, ws+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []*schedulerv1.Job
	for e := range w.Updates() {
		if e == nil {
			break
		}
		rec, err := jobs.Decode(e.Value())
		if err != nil {
			s.log.Warn("skipping unreadable job record", "key", e.Key(), "err", err)
			continue
		}
		if f.match(rec.GetJob()) {
			out = append(out, jobs.Public(rec))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].GetCreateTime().AsTime(), out[j].GetCreateTime().AsTime()
		if !a.Equal(b) {
			return a.After(b)
		}
		return out[i].GetId() > out[j].GetId()
	})
	return out, nil
}

// cancelJob cancels a waiting or working job. A waiting job (or a working one with no step
// running at this moment) ends CANCELLED at once and its queued steps are removed; a working
// one becomes CANCELLING: the executors running its steps are told (and notice at their next
// heartbeat in any case), stop their statements, and the last one ends the job CANCELLED.
func (s *Service) cancelJob(ctx context.Context, ws, id string) (*schedulerv1.Job, error) {
	if _, err := s.getJob(ctx, ws, id); err != nil {
		return nil, err
	}
	return s.requestCancel(ctx, ws, id, nil, true)
}

// requestCancel moves a job towards CANCELLED (or ERROR when jobErr is set: the maximum
// execution time); see jobs.RequestCancel. strict refuses jobs that are not waiting or working.
func (s *Service) requestCancel(ctx context.Context, ws, id string, jobErr *schedulerv1.JobError, strict bool) (*schedulerv1.Job, error) {
	a, err := s.store.Apply(ctx, ws, id, func(rec *jobs.Record) (jobs.Effects, error) {
		return jobs.RequestCancel(jobErr, strict, s.now(), s.jobs.OpenCommits(ctx, rec, s.log))(rec)
	})
	if err != nil {
		return nil, err
	}
	s.jobs.Carry(ctx, a.Record, a.Effects, s.log)
	return jobs.Public(a.Record), nil
}

// watchJob calls send with the job's state now and after each change, until a final state.
func (s *Service) watchJob(ctx context.Context, ws, id string, send func(*schedulerv1.Job) error) error {
	if _, err := s.getJob(ctx, ws, id); err != nil {
		return err
	}
	w, err := s.store.Watch(ctx, jobs.Key(ws, id))
	if err != nil {
		return fmt.Errorf("watch job %s: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				return jobs.ErrNotFound
			}
			rec, err := jobs.Decode(e.Value())
			if err != nil {
				return err
			}
			if err := send(jobs.Public(rec)); err != nil {
				return err
			}
			if jobs.Final(rec.GetJob().GetStatus()) {
				return nil
			}
		}
	}
}

// workspaceLimits returns the limits in force for a workspace, and the stored record's
// revision (0: none stored).
func (s *Service) workspaceLimits(ctx context.Context, ws string) (*schedulerv1.WorkspaceLimits, uint64, error) {
	def := &schedulerv1.WorkspaceLimits{CopyConcurrency: int32(s.cfg.CopyConcurrency)}
	l, rev, err := s.jobs.WorkspaceLimits(ctx, ws)
	if err != nil || l == nil {
		return def, 0, err
	}
	if l.GetCopyConcurrency() <= 0 {
		l.CopyConcurrency = def.GetCopyConcurrency()
	}
	return l, rev, nil
}

// maxCopyConcurrency bounds a workspace's copy concurrency limit.
const maxCopyConcurrency = 1000

func (s *Service) setWorkspaceLimits(ctx context.Context, ws string, in *schedulerv1.WorkspaceLimits) (*schedulerv1.WorkspaceLimits, error) {
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	if c := in.GetCopyConcurrency(); c < 0 || c > maxCopyConcurrency {
		return nil, &InvalidError{Field: "limits.copy_concurrency", Msg: fmt.Sprintf("%d is not from 1 to %d (0 keeps the value)", c, maxCopyConcurrency)}
	}
	for {
		cur, rev, err := s.workspaceLimits(ctx, ws)
		if err != nil {
			return nil, err
		}
		next := proto.Clone(cur).(*schedulerv1.WorkspaceLimits)
		if c := in.GetCopyConcurrency(); c > 0 {
			next.CopyConcurrency = c
		}
		b, err := proto.Marshal(next)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			_, err = s.jobs.Limits.Create(ctx, ws, b)
		} else {
			_, err = s.jobs.Limits.Update(ctx, ws, b, rev)
		}
		if natsx.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write limits of %s: %w", ws, err)
		}
		return next, nil
	}
}
