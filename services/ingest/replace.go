package ingest

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// replace writes a converted file into a staging table shaped like the Data Source, then
// exchanges the two tables (EXCHANGE TABLES: a reader sees the old or the new content, never
// an empty or partial table) and drops the old content. Quarantined rows are appended to the
// quarantine table. Data Sources downstream are not recomputed (their views see no insert).
func (s *Service) replace(ctx context.Context, sc *schema, sp *spool, res appendResult) (err error) {
	start := time.Now()
	wh := s.deps.Warehouse
	staging := warehouse.QualifiedName(sc.database, "__sluice_replace_"+res.importID)
	if _, err := wh.Exec(ctx, fmt.Sprintf("CREATE TABLE %s AS %s", staging, sc.table)); err != nil {
		return fmt.Errorf("replace %s: create staging table: %w", sc.datasource, err)
	}
	defer func() {
		if _, derr := wh.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+staging); derr != nil {
			s.log.Warn("drop replace staging table", "table", staging, "err", derr)
		}
		s.replaceEvent(ctx, sc, res, start, err)
	}()
	for i := range sp.parts {
		p, data, err := sp.read(i)
		if err != nil {
			return err
		}
		if p.split > 0 {
			if err := s.insertRows(ctx, &target{db: sc.database, table: staging, columns: sc.columnNames(), data: data[:p.split]}, fmt.Sprintf("sluice-replace-%s-%d", res.importID, i), false); err != nil {
				return fmt.Errorf("replace %s: %w", sc.datasource, err)
			}
		}
		if p.split < len(data) && sc.quarantine != "" {
			if err := s.insertRows(ctx, &target{db: sc.database, table: sc.quarantine, columns: append(sc.columnNames(), colErrorColumn, colError, colImportID), data: data[p.split:]}, fmt.Sprintf("sluice-replace-q-%s-%d", res.importID, i), false); err != nil {
				return fmt.Errorf("replace %s: quarantine: %w", sc.datasource, err)
			}
		}
	}
	if _, err := wh.Exec(ctx, fmt.Sprintf("EXCHANGE TABLES %s AND %s", sc.table, staging)); err != nil {
		return fmt.Errorf("replace %s: exchange tables (ClickHouse 21.8 and later; not on older servers): %w", sc.datasource, err)
	}
	return nil
}

func (s *Service) replaceEvent(ctx context.Context, sc *schema, res appendResult, start time.Time, err error) {
	if s.deps.Events == nil {
		return
	}
	ev := &opslogv1.OpsEvent{
		Id: "ingest-replace-" + res.importID, Workspace: sc.workspace, Timestamp: timestamppb.New(start), EventType: opslogv1.EventType_EVENT_TYPE_REPLACE,
		DatasourceId: sc.id, DatasourceName: sc.datasource, Result: opslogv1.Result_RESULT_OK, ElapsedTime: durationpb.New(time.Since(start)),
		RequestId: res.importID, ImportId: res.importID, OperationId: res.importID, Rows: res.rows, RowsQuarantine: res.quarantined,
		ReadBytes: res.bytes, WrittenRows: res.rows, WrittenRowsQuarantine: res.quarantined,
		Options: map[string]string{"mode": "replace"},
	}
	if err != nil {
		ev.Result, ev.Error = opslogv1.Result_RESULT_ERROR, err.Error()
		ev.WrittenRows, ev.WrittenRowsQuarantine = 0, 0
	}
	if perr := s.deps.Events.Publish(context.WithoutCancel(ctx), ev); perr != nil {
		s.log.Warn("ops event for a replace", "datasource", sc.datasource, "err", perr)
	}
}
