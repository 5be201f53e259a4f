package main_test

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// The case of every RPC in TestEveryEndpointRefusesWrongTokens: the scopes that admit it, the
// scopes that do not, and the call.

func recvFirst[T any](stream interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func authCases(f *authFixture) map[string]authCase {
	ws := f.ws
	pick := func(good bool, real, spare string) string {
		if good {
			return spare
		}
		return real
	}
	return map[string]authCase{
		catalogv1.CatalogService_CreateWorkspace_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: f.newcomer})
			return err
		}},
		catalogv1.CatalogService_GetWorkspace_FullMethodName: {[]string{"JOBS:READ"}, []string{"instance"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws})
			return err
		}},
		catalogv1.CatalogService_ListWorkspaces_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.ListWorkspaces(ctx, &catalogv1.ListWorkspacesRequest{})
			return err
		}},
		catalogv1.CatalogService_DeleteWorkspace_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.DeleteWorkspace(ctx, &catalogv1.DeleteWorkspaceRequest{Name: pick(good, ws, f.scratch), Force: true})
			return err
		}},
		catalogv1.CatalogService_Push_FullMethodName: {[]string{"DATASOURCES:CREATE"}, []string{"PIPES:CREATE"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: []*catalogv1.Datafile{{Path: "datasources/intruder.datasource", Content: "SCHEMA >\n    x Int64\n"}}})
			return err
		}},
		catalogv1.CatalogService_GetDataSource_FullMethodName: {[]string{"DATASOURCES:READ:events"}, []string{"DATASOURCES:READ:totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Workspace: ws, Name: "events"})
			return err
		}},
		catalogv1.CatalogService_ListDataSources_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"DATASOURCES:READ:events"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.ListDataSources(ctx, &catalogv1.ListDataSourcesRequest{Workspace: ws})
			return err
		}},
		catalogv1.CatalogService_DeleteDataSource_FullMethodName: {[]string{"DATASOURCES:DROP:spare"}, []string{"DATASOURCES:DROP:spare"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.DeleteDataSource(ctx, &catalogv1.DeleteDataSourceRequest{Workspace: ws, Name: pick(good, "events", "spare"), Force: !good})
			return err
		}},
		// The refused calls try to empty events and, through mv, agg: a token that may drop
		// events alone is refused too, before anything is emptied. The good call empties agg.
		catalogv1.CatalogService_TruncateDataSource_FullMethodName: {[]string{"DATASOURCES:DROP:agg"}, []string{"DATASOURCES:DROP:events"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			resp, err := c.Catalog.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: ws, Name: pick(good, "events", "agg"), Cascade: true})
			if good && err == nil {
				// Checked here: the good Populate call, later, fills agg again.
				if tr := resp.GetTruncated(); len(tr) != 1 || tr[0].GetName() != "agg" || tr[0].GetRows() == 0 {
					return fmt.Errorf("truncated %v, want agg and its rows", tr)
				}
				if got := queryTextIn(f.t, f.op.Catalog, ws, "SELECT count() FROM agg"); got != "0\n" {
					return fmt.Errorf("agg holds %q rows after the truncate, want 0", got)
				}
			}
			return err
		}},
		catalogv1.CatalogService_GetPipe_FullMethodName: {[]string{"PIPES:READ:copy_totals"}, []string{"PIPES:READ:mv"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: ws, Name: "copy_totals"})
			return err
		}},
		catalogv1.CatalogService_ListPipes_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"PIPES:READ:mv"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.ListPipes(ctx, &catalogv1.ListPipesRequest{Workspace: ws})
			return err
		}},
		catalogv1.CatalogService_DeletePipe_FullMethodName: {[]string{"PIPES:DROP:spare_pipe"}, []string{"PIPES:DROP:spare_pipe"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.DeletePipe(ctx, &catalogv1.DeletePipeRequest{Workspace: ws, Name: pick(good, "mv", "spare_pipe")})
			return err
		}},
		catalogv1.CatalogService_RenderNode_FullMethodName: {[]string{"PIPES:READ:copy_totals"}, []string{"PIPES:RUN:copy_totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: ws, Pipe: "copy_totals"})
			return err
		}},
		catalogv1.CatalogService_GetGraph_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"PIPES:READ:mv"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: ws})
			return err
		}},
		catalogv1.CatalogService_Query_FullMethodName: {[]string{"DATASOURCES:READ:events"}, []string{"DATASOURCES:READ:totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: ws, Sql: "SELECT count() FROM events"})
			return err
		}},
		catalogv1.CatalogService_ListFileVersions_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"DATASOURCES:READ:events"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.ListFileVersions(ctx, &catalogv1.ListFileVersionsRequest{Workspace: ws, Path: "datasources/events.datasource"})
			return err
		}},
		catalogv1.CatalogService_CutOverView_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{Workspace: ws, Pipe: "mv", Column: "ts", Value: "2100-01-01 00:00:00", JobId: "auth-case", Tables: []string{"agg"}})
			return err
		}},
		catalogv1.CatalogService_PlanPopulate_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Catalog.PlanPopulate(ctx, &catalogv1.PlanPopulateRequest{Workspace: ws, Pipe: "mv"})
			return err
		}},

		catalogv1.TokenService_ListTokens_FullMethodName: {[]string{"TOKENS"}, []string{"WORKSPACE:READ_ALL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Tokens.ListTokens(ctx, &catalogv1.ListTokensRequest{Workspace: ws})
			return err
		}},
		catalogv1.TokenService_CreateToken_FullMethodName: {[]string{"TOKENS", "JOBS:READ"}, []string{"WORKSPACE:READ_ALL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			scopes := []string{"ADMIN"}
			if good {
				scopes = []string{"JOBS:READ"}
			}
			_, err := c.Tokens.CreateToken(ctx, &catalogv1.CreateTokenRequest{Workspace: ws, Name: pick(good, "intruder", "made"), Scopes: scopes})
			return err
		}},
		catalogv1.TokenService_DeleteToken_FullMethodName: {[]string{"TOKENS", "JOBS:READ"}, []string{"WORKSPACE:READ_ALL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Tokens.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Workspace: ws, Name: pick(good, "victim", "spare_token")})
			return err
		}},
		catalogv1.TokenService_RotateToken_FullMethodName: {[]string{"TOKENS", "JOBS:READ"}, []string{"WORKSPACE:READ_ALL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Tokens.RotateToken(ctx, &catalogv1.RotateTokenRequest{Workspace: ws, Name: pick(good, "victim", "spare_token2")})
			return err
		}},
		// Any valid token may describe itself: no token is short of it.
		catalogv1.TokenService_GetCurrentToken_FullMethodName: {[]string{"JOBS:READ"}, nil, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
			return err
		}},

		schedulerv1.SchedulerService_RunCopy_FullMethodName: {[]string{"PIPES:RUN:copy_totals"}, []string{"PIPES:READ:copy_totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.RunCopy(ctx, &schedulerv1.RunCopyRequest{Workspace: ws, Pipe: "copy_totals"})
			return err
		}},
		schedulerv1.SchedulerService_PauseCopySchedule_FullMethodName: {[]string{"PIPES:RUN:hourly"}, []string{"PIPES:READ:hourly"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.PauseCopySchedule(ctx, &schedulerv1.PauseCopyScheduleRequest{Workspace: ws, Pipe: "hourly"})
			return err
		}},
		schedulerv1.SchedulerService_ResumeCopySchedule_FullMethodName: {[]string{"PIPES:RUN:hourly"}, []string{"PIPES:READ:hourly"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.ResumeCopySchedule(ctx, &schedulerv1.ResumeCopyScheduleRequest{Workspace: ws, Pipe: "hourly"})
			return err
		}},
		schedulerv1.SchedulerService_ListCopySchedules_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"PIPES:READ:hourly"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws})
			return err
		}},
		schedulerv1.SchedulerService_Populate_FullMethodName: {[]string{"PIPES:RUN:mv"}, []string{"PIPES:READ:mv"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "mv"})
			return err
		}},
		schedulerv1.SchedulerService_GetJob_FullMethodName: {[]string{"JOBS:READ"}, []string{"JOBS:CANCEL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: ws, Id: f.jobID})
			return err
		}},
		schedulerv1.SchedulerService_ListJobs_FullMethodName: {[]string{"JOBS:READ"}, []string{"JOBS:CANCEL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws})
			return err
		}},
		schedulerv1.SchedulerService_CancelJob_FullMethodName: {[]string{"JOBS:CANCEL"}, []string{"JOBS:READ"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: ws, Id: pick(good, f.longJob, f.spareJob)})
			return err
		}},
		schedulerv1.SchedulerService_WatchJob_FullMethodName: {[]string{"JOBS:READ"}, []string{"JOBS:CANCEL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			return recvFirst(c.Scheduler.WatchJob(ctx, &schedulerv1.WatchJobRequest{Workspace: ws, Id: f.jobID}))
		}},
		schedulerv1.SchedulerService_GetWorkspaceLimits_FullMethodName: {[]string{"WORKSPACE:READ_ALL"}, []string{"JOBS:READ"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.GetWorkspaceLimits(ctx, &schedulerv1.GetWorkspaceLimitsRequest{Workspace: ws})
			return err
		}},
		schedulerv1.SchedulerService_SetWorkspaceLimits_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.SetWorkspaceLimits(ctx, &schedulerv1.SetWorkspaceLimitsRequest{Workspace: ws, Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: 7}})
			return err
		}},
		schedulerv1.SchedulerService_RunNoopJob_FullMethodName: {[]string{"ADMIN"}, []string{"WORKSPACE:READ_ALL"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Scheduler.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{Workspace: ws})
			return err
		}},

		executorv1.ExecutorService_GetStatus_FullMethodName: {[]string{"operator"}, []string{"ADMIN"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Executor.GetStatus(ctx, &executorv1.GetStatusRequest{})
			return err
		}},

		ingestv1.IngestService_Append_FullMethodName: {[]string{"DATASOURCES:APPEND:events"}, []string{"DATASOURCES:APPEND:totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.Ingest.Append(ctx, &ingestv1.AppendRequest{Workspace: ws, Datasource: "events", Wait: true, Data: []byte(`{"ts":"2024-02-01 00:00:00","action":"buy","amount":1}` + "\n")})
			return err
		}},
		ingestv1.IngestService_AppendStream_FullMethodName: {[]string{"DATASOURCES:APPEND:events"}, []string{"DATASOURCES:APPEND:totals"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			stream, err := c.Ingest.AppendStream(ctx)
			if err != nil {
				return err
			}
			start := &ingestv1.AppendStart{Workspace: ws, Datasource: "events", Format: ingestv1.Format_FORMAT_NDJSON, Wait: true}
			if err := stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Start{Start: start}}); err == nil {
				_ = stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Chunk{Chunk: []byte(`{"ts":"2024-02-01 00:00:00","action":"buy","amount":2}` + "\n")}})
			}
			_, err = stream.CloseAndRecv()
			return err
		}},

		opslogv1.OpsLogService_QueryEvents_FullMethodName: {[]string{"OPSLOG:READ"}, []string{"JOBS:READ"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			_, err := c.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws}})
			return err
		}},
		opslogv1.OpsLogService_TailEvents_FullMethodName: {[]string{"OPSLOG:READ"}, []string{"JOBS:READ"}, func(ctx context.Context, c *sluicetest.Clients, good bool) error {
			return recvFirst(c.OpsLog.TailEvents(ctx, &opslogv1.TailEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws}, Backlog: durationpb.New(time.Hour)}))
		}},
	}
}
