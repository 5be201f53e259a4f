package main_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// TestPagesSeeEachItemOnce pages through 1,000 jobs and 10,000 ops-log events seven at a time,
// while more of both arrive, and finds each of the first ones exactly once, in order. The
// events share a handful of timestamps (many in the same microsecond), which whole-second
// paging by time alone would skip.
func TestPagesSeeEachItemOnce(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("pages")
	if _, err := sys.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatal(err)
	}
	jobIDs := map[string]bool{}
	for i := range 1000 {
		resp, err := sys.Scheduler.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{Workspace: ws})
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		jobIDs[resp.GetJob().GetId()] = true
	}

	nc, err := natsx.Connect(ctx, natsx.Config{URL: sys.App.NATSURL()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub := opsevents.NewPublisher(nc, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	eventIDs := map[string]bool{}
	for i := range 10000 {
		ev := &opslogv1.OpsEvent{
			Id: fmt.Sprintf("ev-%05d", i), Workspace: ws, EventType: opslogv1.EventType_EVENT_TYPE_COPY,
			DatasourceName: "d", Result: opslogv1.Result_RESULT_OK,
			Timestamp: timestamppb.New(base.Add(time.Duration(i%13) * time.Microsecond)),
		}
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		eventIDs[ev.GetId()] = true
	}
	sluicetest.Eventually(t, 2*time.Minute, "10000 events written", func() bool {
		resp, err := sys.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws}, PageSize: 10000})
		return err == nil && len(resp.GetEvents()) == 10000
	})

	// Jobs, seven a page; a new job arrives after every page (newer: before the cursor).
	seen := map[string]int{}
	var prev *schedulerv1.Job
	token := ""
	for pages := 0; ; pages++ {
		resp, err := sys.Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws, PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatalf("jobs page %d: %v", pages, err)
		}
		for _, j := range resp.GetJobs() {
			seen[j.GetId()]++
			if prev != nil && j.GetCreateTime().AsTime().After(prev.GetCreateTime().AsTime()) {
				t.Fatalf("job %s is newer than %s before it", j.GetId(), prev.GetId())
			}
			prev = j
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if _, err := sys.Scheduler.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{Workspace: ws}); err != nil {
			t.Fatal(err)
		}
	}
	for id := range jobIDs {
		if seen[id] != 1 {
			t.Fatalf("job %s seen %d times", id, seen[id])
		}
	}
	if len(seen) != 1000 {
		t.Fatalf("paged %d jobs, want the 1000 that existed", len(seen))
	}

	// Events, seven a page; new events arrive while paging.
	seen = map[string]int{}
	token = ""
	var prevNS int64
	for pages := 0; ; pages++ {
		resp, err := sys.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws}, PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatalf("events page %d: %v", pages, err)
		}
		for _, ev := range resp.GetEvents() {
			seen[ev.GetId()]++
			ns := ev.GetTimestamp().AsTime().UnixNano()
			if prevNS != 0 && ns > prevNS {
				t.Fatalf("event %s is newer than the one before it", ev.GetId())
			}
			prevNS = ns
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages%100 == 0 {
			late := &opslogv1.OpsEvent{Id: fmt.Sprintf("late-%d", pages), Workspace: ws, EventType: opslogv1.EventType_EVENT_TYPE_COPY,
				DatasourceName: "d", Result: opslogv1.Result_RESULT_OK, Timestamp: timestamppb.Now()}
			if err := pub.Publish(ctx, late); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id := range eventIDs {
		if seen[id] != 1 {
			t.Fatalf("event %s seen %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 || !eventIDs[id] && id[:5] != "late-" {
			t.Fatalf("event %s seen %d times", id, n)
		}
	}
	// A token used with another filter is refused, not silently applied.
	resp, err := sys.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws}, PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws, Datasource: "x"}, PageSize: 7, PageToken: resp.GetNextPageToken()})
	if err == nil {
		t.Fatal("a page token with another filter was accepted")
	}
}
