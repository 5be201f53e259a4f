package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	sluice "github.com/sluicehq/sluice/sdk/go"
)

// TestWholeFlow runs what a program does with the SDK against a real sluiced: push a folder,
// copy with progress (retried with the same request id: one job, one write), populate, page
// through the ops log, and read the diagnostics of a refused push.
func TestWholeFlow(t *testing.T) {
	addr := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := sluice.Dial(addr, sluice.WithWorkspace("sdk_go"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.CreateWorkspace(ctx, "sdk_go"); err != nil {
		t.Fatal(err)
	}

	push, err := c.PushDir(ctx, "../testdata/project", sluice.PushOptions{})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if !push.GetApplied() || len(push.GetActions()) != 4 {
		t.Fatalf("push applied=%v actions=%v", push.GetApplied(), push.GetActions())
	}

	// The copy, then the same request again as a client retrying after a timeout would.
	req := &schedulerv1.RunCopyRequest{Pipe: "seed", Parameters: map[string]string{"rows": "100"}, RequestId: sluice.NewRequestID()}
	job, err := c.RunCopy(ctx, req)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	again, err := c.RunCopy(ctx, req)
	if err != nil || again.GetId() != job.GetId() {
		t.Fatalf("retried copy: job %s (%v), want the first job %s", again.GetId(), err, job.GetId())
	}
	var states []schedulerv1.JobStatus
	done, err := c.Wait(ctx, job, func(j *schedulerv1.Job) { states = append(states, j.GetStatus()) })
	if err != nil {
		t.Fatalf("copy job: %v", err)
	}
	if len(states) == 0 || states[len(states)-1] != schedulerv1.JobStatus_JOB_STATUS_DONE || done.GetProgress().GetStepsDone() != 1 {
		t.Fatalf("copy progress %v, final %v", states, done)
	}
	n := 0
	for j, err := range c.Jobs(ctx, &schedulerv1.ListJobsRequest{Kinds: []schedulerv1.JobKind{schedulerv1.JobKind_JOB_KIND_COPY}, PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if j.GetRequestId() != req.GetRequestId() {
			t.Errorf("copy job %s has request id %q, want %q", j.GetId(), j.GetRequestId(), req.GetRequestId())
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d copy jobs, want 1", n)
	}
	if got := scalar(t, c, ctx, "SELECT count(), sum(id) FROM events"); got != "100|4950" {
		t.Fatalf("events after one copy retried once = %s, want 100|4950 (one write)", got)
	}
	if got := scalar(t, c, ctx, "SELECT sum(n) FROM by_kind"); got != "100" {
		t.Fatalf("by_kind after the copy = %s, want 100", got)
	}

	// A populate with truncate recomputes the view's target from the source.
	pop, err := c.Populate(ctx, &schedulerv1.PopulateRequest{Pipe: "by_kind_mv", Options: &schedulerv1.PopulateOptions{Truncate: true}})
	if err != nil {
		t.Fatalf("populate: %v", err)
	}
	if _, err := c.Wait(ctx, pop, nil); err != nil {
		t.Fatalf("populate job: %v", err)
	}
	if got := scalar(t, c, ctx, "SELECT kind, sum(n) FROM by_kind GROUP BY kind ORDER BY kind"); got != "a|50" {
		t.Fatalf("by_kind after populate = %s", got)
	}

	// The ops log, two events a page: every event once, newest first.
	var events []*opslogv1.OpsEvent
	deadline := time.Now().Add(time.Minute)
	for {
		events = events[:0]
		all := &opslogv1.QueryEventsRequest{PageSize: 1000}
		for ev, err := range c.Events(ctx, all) {
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		if hasEvent(events, opslogv1.EventType_EVENT_TYPE_COPY) && hasEvent(events, opslogv1.EventType_EVENT_TYPE_POPULATEVIEW) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]bool{}
	var prev time.Time
	for ev, err := range c.Events(ctx, &opslogv1.QueryEventsRequest{PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[ev.GetId()] {
			t.Fatalf("event %s twice", ev.GetId())
		}
		ts := ev.GetTimestamp().AsTime()
		if !prev.IsZero() && ts.After(prev) {
			t.Fatalf("event %s at %s after a newer one", ev.GetId(), ts)
		}
		seen[ev.GetId()], prev = true, ts
	}
	if len(seen) != len(events) || len(events) < 3 {
		t.Fatalf("paged %d events, one page held %d", len(seen), len(events))
	}

	// A refused push: each problem with its place and code, nothing changed.
	_, err = c.PushDir(ctx, "../testdata/invalid", sluice.PushOptions{})
	var e *sluice.Error
	if !errors.As(err, &e) || e.Reason != "INVALID_DATAFILE" || len(e.Diagnostics) == 0 {
		t.Fatalf("invalid push: %v", err)
	}
	d := e.Diagnostics[0]
	if d.GetPosition().GetFile() != "broken.pipe" || d.GetPosition().GetLine() < 1 || d.GetPosition().GetColumn() < 1 ||
		d.GetCode() == commonv1.DiagnosticCode_DIAGNOSTIC_CODE_UNSPECIFIED {
		t.Fatalf("diagnostic %v", d)
	}
	if _, err := c.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: "sdk_go", Name: "broken"}); sluice.AsError(err).Reason != "NOT_FOUND" {
		t.Fatalf("the refused pipe: %v", err)
	}
	// An undefined enum value is refused with the valid ones.
	_, err = c.RunCopy(ctx, &schedulerv1.RunCopyRequest{Pipe: "seed", Mode: commonv1.CopyMode(99)})
	if e := sluice.AsError(err); e == nil || e.Reason != "INVALID_ARGUMENT" || len(e.Fields) != 1 || e.Fields[0].GetField() != "mode" {
		t.Fatalf("mode 99: %v", err)
	}
}

func hasEvent(evs []*opslogv1.OpsEvent, t opslogv1.EventType) bool {
	for _, ev := range evs {
		if ev.GetEventType() == t {
			return true
		}
	}
	return false
}

// scalar runs a query and joins its first row's values with "|".
func scalar(t *testing.T, c *sluice.Client, ctx context.Context, sql string) string {
	t.Helper()
	resp, err := c.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(resp.GetRows()) == 0 {
		return ""
	}
	out := ""
	for i, v := range resp.GetRows()[0].GetValues() {
		if i > 0 {
			out += "|"
		}
		out += fmt.Sprint(v.AsInterface())
	}
	return out
}
