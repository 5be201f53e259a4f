package ingest

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
)

// eventAgg sums the messages one ops event reports.
type eventAgg struct {
	ws, ds, dsID, kind, id, importID, file string
	at                                     time.Time
	rows, quarantined, inputBytes          uint64
	bytes, quarantineBytes                 uint64
}

// publishEvents records a committed batch in the ops log: one append-hfi event per Data Source
// for the Events API's rows, one append event per file (request) for the others. Event ids
// derive from the batch and the request, so a batch written again after a crash records
// nothing twice.
func (s *Service) publishEvents(ctx context.Context, msgs []*inMsg, complete map[string]bool, targets []*target, failures map[string]string, first, last uint64) {
	if s.deps.Events == nil {
		return
	}
	batchID := fmt.Sprintf("ingest-%d-%d", first, last)
	aggs := map[string]*eventAgg{}
	var order []string
	for _, m := range msgs {
		if !complete[m.req] {
			continue
		}
		key := m.ws + "\x00" + m.ds + "\x00" + m.req
		id, importID := "ingest-"+m.req, m.req
		if m.kind == kindHFI {
			key = m.ws + "\x00" + m.ds
			id, importID = fmt.Sprintf("%s-%s-%s", batchID, m.ws, m.ds), batchID
		}
		a := aggs[key]
		if a == nil {
			a = &eventAgg{ws: m.ws, ds: m.ds, dsID: m.dsID, kind: m.kind, id: id, importID: importID, file: m.file, at: m.at}
			aggs[key] = a
			order = append(order, key)
		}
		if m.at.Before(a.at) {
			a.at = m.at
		}
		a.rows += m.rows
		a.quarantined += m.quarantined
		a.inputBytes += m.inputBytes
		a.bytes += uint64(len(m.data))
		a.quarantineBytes += uint64(len(m.quarantineData))
	}
	tableErr := map[string]string{}
	for _, t := range targets {
		if msg, ok := failures[t.table]; ok {
			tableErr[t.ws+"\x00"+t.ds] = msg
		}
	}
	for _, key := range order {
		a := aggs[key]
		ev := &opslogv1.OpsEvent{
			Id: a.id, Workspace: a.ws, Timestamp: timestamppb.New(a.at), EventType: opslogv1.EventType_EVENT_TYPE_APPEND,
			DatasourceId: a.dsID, DatasourceName: a.ds, Result: opslogv1.Result_RESULT_OK,
			ElapsedTime: durationpb.New(time.Since(a.at)), RequestId: a.importID, ImportId: a.importID, OperationId: a.importID,
			Rows: a.rows, RowsQuarantine: a.quarantined, ReadBytes: a.inputBytes,
			WrittenRows: a.rows, WrittenBytes: a.bytes, WrittenRowsQuarantine: a.quarantined, WrittenBytesQuarantine: a.quarantineBytes,
		}
		if a.kind == kindHFI {
			ev.EventType = opslogv1.EventType_EVENT_TYPE_APPEND_HFI
		}
		if a.file != "" {
			ev.Options = map[string]string{"file_name": a.file}
		}
		if msg, ok := tableErr[a.ws+"\x00"+a.ds]; ok {
			ev.Result, ev.Error = opslogv1.Result_RESULT_ERROR, msg
		}
		if err := s.deps.Events.Publish(ctx, ev); err != nil {
			s.log.Warn("ops event for ingested rows", "datasource", a.ds, "err", err)
		}
	}
}
