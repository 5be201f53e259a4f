package opsevents

import (
	"cmp"
	"context"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
)

// Options keys the job events carry (DATAFILES-SPEC §5.2).
const (
	OptionJob                 = "job"
	OptionMode                = "mode"
	OptionExecutionType       = "execution_type"
	OptionTriggerDataSourceID = "trigger_datasource_id"
)

// Execution types of a copy.
const (
	ExecutionManual    = "manual"
	ExecutionScheduled = "scheduled"
)

// JobResult is what a copy or populate reports about one Data Source it wrote (the target,
// and each Data Source a cascade of materialized views wrote).
type JobResult struct {
	Workspace string
	// EventType is EventCopy, EventPopulateView or EventPopulateViewQueued.
	EventType string
	JobID     string
	// CreatedAt is the job's create time: the event's timestamp.
	CreatedAt time.Time
	// FinishedAt ends elapsed_time (now when zero); unused for populateview-queued.
	FinishedAt     time.Time
	DataSourceID   string
	DataSourceName string
	PipeID         string
	PipeName       string
	// Result is ResultOK, ResultError or ResultCancelled; Error the error text.
	Result string
	Error  string
	// RequestID falls back to the job id.
	RequestID string
	// Stats are the figures of the statements that wrote this Data Source; written rows are
	// the rows that landed (for a copy: after it committed).
	Stats *commonv1.Statistics
	// Mode is append or replace (copies); ExecutionType manual or scheduled.
	Mode          string
	ExecutionType string
	// Options are further Options.Names/Values (e.g. OptionTriggerDataSourceID).
	Options map[string]string
	Release string
}

// JobEvent builds the event of a job result as the spec describes it: timestamp is the job's
// create time, elapsed_time runs from it to the end, job_id = import_id = operation_id = the
// job id, request_id falls back to the job id, rows are the written rows.
//
// The id is derived from (workspace, job, event type, Data Source), so an executor that
// reports a result twice (say, it died after publishing and the step was redelivered) writes
// one row.
func JobEvent(r JobResult) *opslogv1.OpsEvent {
	finished := r.FinishedAt
	if finished.IsZero() {
		finished = time.Now()
	}
	st := r.Stats
	if st == nil {
		st = &commonv1.Statistics{}
	}
	ev := &opslogv1.OpsEvent{
		Id:             JobEventID(r.Workspace, r.JobID, r.EventType, dataSourceKey(r)),
		Workspace:      r.Workspace,
		Timestamp:      timestamppb.New(r.CreatedAt),
		EventType:      EventTypeOf(r.EventType),
		DatasourceId:   cmp.Or(r.DataSourceID, r.DataSourceName),
		DatasourceName: r.DataSourceName,
		Result:         ResultOf(r.Result),
		Error:          r.Error,
		RequestId:      r.RequestID,
		ImportId:       r.JobID,
		JobId:          r.JobID,
		OperationId:    r.JobID,
		Rows:           st.GetWrittenRows(),
		ReadRows:       st.GetReadRows(),
		ReadBytes:      st.GetReadBytes(),
		WrittenRows:    st.GetWrittenRows(),
		WrittenBytes:   st.GetWrittenBytes(),
		PipeId:         cmp.Or(r.PipeID, r.PipeName),
		PipeName:       r.PipeName,
		Release:        r.Release,
		Options:        map[string]string{},
	}
	if r.Stats != nil && r.Stats.GetMemoryUsage() > 0 {
		ev.MemoryUsage = proto.Uint64(r.Stats.GetMemoryUsage())
	}
	if r.Stats != nil && r.Stats.GetCpuTime().AsDuration() > 0 {
		ev.CpuTime = r.Stats.GetCpuTime()
	}
	if ev.RequestId == "" {
		ev.RequestId = r.JobID
	}
	if r.EventType != EventPopulateViewQueued && !r.CreatedAt.IsZero() {
		ev.ElapsedTime = durationpb.New(max(finished.Sub(r.CreatedAt), 0))
	}
	if r.CreatedAt.IsZero() {
		ev.Timestamp = timestamppb.New(finished)
	}
	for k, v := range r.Options {
		ev.Options[k] = v
	}
	if r.JobID != "" {
		ev.Options[OptionJob] = r.JobID
	}
	if r.Mode != "" {
		ev.Options[OptionMode] = r.Mode
	}
	if r.ExecutionType != "" {
		ev.Options[OptionExecutionType] = r.ExecutionType
	}
	return ev
}

// dataSourceKey names the Data Source in the event id: its name, which every report of the same
// job knows (its id comes from a catalog look-up that may fail on one attempt and not another).
func dataSourceKey(r JobResult) string {
	if r.DataSourceName != "" {
		return r.DataSourceName
	}
	return r.DataSourceID
}

// GraphSource is what ResourceIDs needs from the catalog; its generated client has it.
type GraphSource interface {
	GetGraph(ctx context.Context, in *catalogv1.GetGraphRequest, opts ...grpc.CallOption) (*catalogv1.GetGraphResponse, error)
}

// ResourceIDs returns the ids of the resources around one (the Data Sources and pipes upstream
// and downstream of it), by name, for the datasource_id and pipe_id of job events. It is best
// effort: on a failure the map is empty and events carry names.
func ResourceIDs(ctx context.Context, cat GraphSource, workspace, resource string) map[string]string {
	out := map[string]string{}
	if cat == nil {
		return out
	}
	g, err := cat.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: workspace, Resource: resource})
	if err != nil {
		return out
	}
	for _, n := range g.GetNodes() {
		if n.GetId() != "" {
			out[n.GetName()] = n.GetId()
		}
	}
	return out
}

// eventNamespace scopes the derived event ids.
var eventNamespace = uuid.MustParse("5b0c5d7e-3f0a-4c1e-9a57-0d5e1f0c0a11")

// JobEventID is the stable id of the event of a job about one Data Source.
func JobEventID(workspace, jobID, eventType, dataSource string) string {
	return uuid.NewSHA1(eventNamespace, []byte(workspace+"\x00"+jobID+"\x00"+eventType+"\x00"+dataSource)).String()
}
