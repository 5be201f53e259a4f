package catalog

import (
	"context"
	"google.golang.org/protobuf/types/known/durationpb"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// pushEvents are the ops-log events of an applied (or failed) push: one per Data Source
// created, altered or deleted. Pipes have no Data Source events of their own.
func pushEvents(ws workspaceRecord, next, old *project, pl *plan, start time.Time, elapsed time.Duration, failed string, failure error, rowsBefore map[string]uint64) []*opslogv1.OpsEvent {
	var out []*opslogv1.OpsEvent
	for _, st := range pl.steps {
		a := st.action
		if a.GetResourceType() != catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE || a.GetKind() == catalogv1.PlanAction_KIND_NONE {
			continue
		}
		ev := &opslogv1.OpsEvent{
			Workspace: ws.Name, Timestamp: timestamppb.New(start), DatasourceName: a.GetName(),
			Result: opslogv1.Result_RESULT_OK, ElapsedTime: durationpb.New(elapsed), Options: map[string]string{},
		}
		if d, ok := next.datasources[a.GetName()]; ok {
			ev.DatasourceId = d.rec.ID
		} else if d, ok := old.datasources[a.GetName()]; ok {
			ev.DatasourceId = d.rec.ID
		}
		switch a.GetKind() {
		case catalogv1.PlanAction_KIND_CREATE:
			ev.EventType = opslogv1.EventType_EVENT_TYPE_CREATE
		case catalogv1.PlanAction_KIND_DELETE:
			ev.EventType = opslogv1.EventType_EVENT_TYPE_DELETE
			ev.Rows = rowsBefore[a.GetName()]
		case catalogv1.PlanAction_KIND_RECREATE:
			ev.EventType = opslogv1.EventType_EVENT_TYPE_ALTER
			ev.Options["operations"] = "recreate"
			ev.Rows = rowsBefore[a.GetName()]
		default:
			ev.EventType = opslogv1.EventType_EVENT_TYPE_ALTER
			ev.Options["operations"] = a.GetReason()
		}
		if failure != nil {
			if a.GetName() != failed {
				continue
			}
			ev.Result, ev.Error = opslogv1.Result_RESULT_ERROR, failure.Error()
		}
		out = append(out, ev)
	}
	return out
}

// publish records events; a failure to record is logged, not returned: the push itself
// succeeded or failed already.
func (s *Service) publish(ctx context.Context, evs []*opslogv1.OpsEvent) {
	if s.deps.Events == nil {
		return
	}
	for _, ev := range evs {
		if ev.GetDatasourceId() == "" {
			ev.DatasourceId = ev.GetDatasourceName()
		}
		if err := s.deps.Events.Publish(ctx, ev); err != nil {
			s.log.Error("ops event not recorded", "event_type", ev.GetEventType(), "datasource", ev.GetDatasourceName(), "err", err)
		}
	}
}

// announce tells subscribers (the scheduler's copy schedules) that a workspace changed.
func (s *Service) announce(ws string) {
	if s.deps.NATS == nil {
		return
	}
	if err := s.deps.NATS.NC.Publish(catalogclient.ChangedSubject(ws), nil); err != nil {
		s.log.Warn("announce catalog change", "workspace", ws, "err", err)
	}
}
