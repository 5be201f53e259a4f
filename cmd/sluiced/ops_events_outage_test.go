package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// TestCopyEventsOutliveTheOpsStreamRefusingWrites makes the ops stream refuse every write (full,
// discarding new messages) while a copy commits, for longer than a publish retries, then lets it
// take writes again: the step is not reported finished while its events are not stored (the
// job says it waits for NATS), and once they are, the ops log holds exactly one copy event per
// Data Source the copy wrote.
func TestCopyEventsOutliveTheOpsStreamRefusingWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	ns := sluicetest.StartNATS(t, false)
	e := newCopyEnv(t, sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-nats-url", ns.URL}, fastJobs...)...)), "copy_events_outage", copyProject)
	restore := fillOpsStream(t, ns.URL)
	ctx := context.Background()

	out, stderr, code := e.cli("pipe", "copy", "run", "sales_hour", "--job-timestamp", "2024-06-01T06:00:00Z")
	id := strings.TrimSpace(out)
	if code != 0 || id == "" || strings.Contains(id, " ") {
		t.Fatalf("copy run: exit %d %q %s", code, out, stderr)
	}
	// The commit is done (its rows are in the target), the events are not stored: the job waits.
	sluicetest.Eventually(t, 120*time.Second, "job "+id+" to wait for NATS with its events", func() bool {
		j, err := e.sys.Scheduler.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: e.ws, Id: id})
		if err != nil {
			return false
		}
		if st := j.GetJob().GetStatus(); st == schedulerv1.JobStatus_JOB_STATUS_DONE || st == schedulerv1.JobStatus_JOB_STATUS_ERROR {
			t.Fatalf("job %s ended (%s) although its events were refused: %v", id, st, j.GetJob())
		}
		return strings.Contains(j.GetJob().GetWaitingReason(), "waiting for NATS")
	})
	if got, want := e.target(), "2024-06-01T05:00 US 60\n"; got != want {
		t.Fatalf("target while the events wait (the commit is done):\n%swant\n%s", got, want)
	}
	if got, want := e.daily(), "2024-06-01 US 60\n"; got != want {
		t.Fatalf("sales_daily while the events wait:\n%swant\n%s", got, want)
	}
	// Longer than one publish retries (30 s), the events still refused.
	time.Sleep(35 * time.Second)
	j, err := e.sys.Scheduler.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: e.ws, Id: id})
	if err != nil || j.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_WORKING {
		t.Fatalf("job %s after 35 s of refused events: %v %v", id, j.GetJob(), err)
	}
	restore()
	job := waitJob(t, e.sys.Scheduler, e.ws, id, 120*time.Second, schedulerv1.JobStatus_JOB_STATUS_DONE)
	if job.GetProgress().GetStatistics().GetWrittenRows() != 1 || job.GetWaitingReason() != "" {
		t.Errorf("job after its events were stored: %v", job)
	}
	if got, want := e.target(), "2024-06-01T05:00 US 60\n"; got != want {
		t.Fatalf("target after the job:\n%swant\n%s", got, want)
	}
	want := "sales_daily 1\nsales_hour_copy 1\n"
	var got string
	sluicetest.Eventually(t, 60*time.Second, "one copy event per Data Source of job "+id, func() bool {
		got = e.rows("SELECT datasource_name, count() FROM " + e.q("datasources_ops_log") + " WHERE event_type = 'copy' AND job_id = '" + id + "' GROUP BY datasource_name ORDER BY datasource_name")
		return got == want
	})
	// Nothing arrives late: still exactly one each.
	time.Sleep(3 * time.Second)
	if got = e.rows("SELECT datasource_name, count(), any(result) FROM " + e.q("datasources_ops_log") + " WHERE event_type = 'copy' AND job_id = '" + id + "' GROUP BY datasource_name ORDER BY datasource_name"); got != "sales_daily 1 ok\nsales_hour_copy 1 ok\n" {
		t.Fatalf("copy events of job %s:\n%s", id, got)
	}
}

// TestFailedCopyEventsOutliveTheOpsStreamRefusingWrites: a copy that fails while the ops stream
// refuses writes for longer than one report of the job's end may take; once it takes writes
// again, the error event of the job is in the ops log exactly once (its step is delivered again
// until the report is stored).
func TestFailedCopyEventsOutliveTheOpsStreamRefusingWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	ns := sluicetest.StartNATS(t, false)
	e := newCopyEnv(t, sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-nats-url", ns.URL}, fastJobs...)...)), "copy_error_events_outage", copyProject)
	restore := fillOpsStream(t, ns.URL)
	out, stderr, code := e.cli("pipe", "copy", "run", "broken")
	id := strings.TrimSpace(out)
	if code != 0 || id == "" || strings.Contains(id, " ") {
		t.Fatalf("copy run: exit %d %q %s", code, out, stderr)
	}
	time.Sleep(20 * time.Second) // the end of the job is reported and refused, more than once
	// The job is not reported ended before its events are stored.
	j, err := e.sys.Scheduler.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: e.ws, Id: id})
	if err != nil || jobs.Final(j.GetJob().GetStatus()) {
		t.Fatalf("job %s while its events are refused: %v %v", id, j.GetJob(), err)
	}
	restore()
	job := waitJob(t, e.sys.Scheduler, e.ws, id, 120*time.Second, schedulerv1.JobStatus_JOB_STATUS_ERROR)
	if !strings.Contains(job.GetError().GetMessage(), "copy failure injected") {
		t.Fatalf("failed copy's job: %v", job)
	}
	if got := e.target(); got != "" {
		t.Fatalf("target after a failed copy:\n%s", got)
	}
	q := "SELECT datasource_name, count(), any(result) FROM " + e.q("datasources_ops_log") + " WHERE event_type = 'copy' GROUP BY datasource_name ORDER BY datasource_name"
	want := "sales_hour_copy 1 error\n"
	var got string
	sluicetest.Eventually(t, 60*time.Second, "the failed copy's event", func() bool {
		got = e.rows(q)
		return got == want
	})
	time.Sleep(3 * time.Second)
	if got = e.rows(q); got != want {
		t.Fatalf("copy events after the failed copy:\n%swant\n%s", got, want)
	}
}

// fillOpsStream makes the ops stream refuse every new event (full, discarding new messages);
// the returned function (also run at the end of the test) lets it take them again.
func fillOpsStream(t *testing.T, natsURL string) func() {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	setLimit := func(max int64) {
		t.Helper()
		s, err := js.Stream(ctx, opsevents.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.MaxMsgs, cfg.Discard = max, jetstream.DiscardNew
		if max < 0 {
			cfg.MaxMsgs, cfg.Discard = -1, jetstream.DiscardOld
		} else {
			cfg.MaxMsgs = int64(info.State.Msgs)
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	setLimit(0)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			setLimit(-1)
		}
	}
	t.Cleanup(func() { restore(); nc.Close() })
	return restore
}
