package opslog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestJobsLogFollowsJobRecords: every change of a job record reaches jobs_log, and a job reads
// once, in its latest state, through a workspace's view (FINAL), on both engines; deleting an
// expired record leaves the row.
func TestJobsLogFollowsJobRecords(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			ctx := context.Background()
			nc := startNATS(t)
			kv, err := nc.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: jobs.BucketJobs, History: 1})
			if err != nil {
				t.Fatal(err)
			}
			created := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
			job := &schedulerv1.Job{
				Id: "j1", Workspace: "acme", Kind: schedulerv1.JobKind_JOB_KIND_COPY, Status: schedulerv1.JobStatus_JOB_STATUS_WAITING,
				CreateTime: timestamppb.New(created), UpdateTime: timestamppb.New(created), Pipe: "copy_sales", TargetDatasource: "sales",
				Parameters: map[string]string{"country": "ES"}, ExecutionType: schedulerv1.ExecutionType_EXECUTION_TYPE_MANUAL,
			}
			put := func() {
				b, err := proto.Marshal(&persistencev1.JobRecord{Job: job})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Put(ctx, "acme.j1", b); err != nil {
					t.Fatal(err)
				}
			}
			put()
			s := startService(t, testConfig(), nc, wh, db, hooks{})
			job = proto.Clone(job).(*schedulerv1.Job)
			job.Status, job.StartTime, job.UpdateTime = schedulerv1.JobStatus_JOB_STATUS_ERROR, timestamppb.New(created.Add(time.Second)), timestamppb.New(created.Add(3*time.Second))
			job.Error = &schedulerv1.JobError{Message: "boom"}
			job.Progress = &schedulerv1.JobProgress{Statistics: &commonv1.Statistics{WrittenRows: 7}}
			put()
			wsDB := warehousetest.NewDatabase(t, wh)
			if _, err := wh.Exec(ctx, opsevents.JobsLogViewDDL(s.db, wsDB, "acme")); err != nil {
				t.Fatal(err)
			}
			q := "SELECT job_id, job_type, status, error, pipe_name, datasource_name, toString(started_at) != '', position(job_metadata, '\"execution_type\":\"manual\"') > 0, position(job_metadata, 'country') > 0 FROM " + warehouse.QualifiedName(wsDB, opsevents.JobsLogTable)
			want := "j1 copy error boom copy_sales sales 1 1 1"
			wait := func() {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for {
					res, err := wh.Query(ctx, q)
					got := ""
					if err == nil {
						var rows []string
						for _, r := range res.Rows {
							rows = append(rows, strings.TrimSpace(fmt.Sprintln(r...)))
						}
						got = strings.Join(rows, "; ")
					}
					if got == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("jobs_log view: %q (%v), want %q", got, err, want)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			wait()
			// The record expires from the bucket; the row stays for the ops log's retention.
			if err := kv.Delete(ctx, "acme.j1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			wait()
		})
	}
}
