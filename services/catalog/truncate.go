package catalog

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/auth"
)

// truncate empties a Data Source (or a Data Source's quarantine table), and with cascade every Data Source its materialized views
// write downstream (the populate spec tells users to empty them before a populate), upstream
// first. Each emptied Data Source gets a `truncate` event with the rows it held. Tables stay;
// a failure stops at the Data Source that failed, which gets an error event.
func (s *Service) truncate(ctx context.Context, req *catalogv1.TruncateDataSourceRequest) (*catalogv1.TruncateDataSourceResponse, error) {
	ctx, ws, unlock, err := s.lockWorkspace(ctx, req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := s.loadProject(ctx, ws)
	if err != nil {
		return nil, err
	}
	_, isDataSource := p.datasources[req.GetName()]
	if base := p.quarantineOf(req.GetName()); base != "" {
		// A quarantine table is emptied like a Data Source once its rows are recovered, as
		// on the hosted platform; Data Sources deployed before quarantine tables have none.
		if _, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM "+tableName(ws, req.GetName())); err != nil {
			return nil, notFound("Data Source %s has no quarantine table (it was deployed before quarantine tables existed; pushing it with --force recreates it with one)", base)
		}
	} else if !isDataSource {
		return nil, notFound("Data Source %q does not exist in workspace %s", req.GetName(), ws.Name)
	}
	names := []string{req.GetName()}
	if req.GetCascade() {
		g := p.buildGraph()
		down := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			for _, e := range g.edges {
				if e.GetUpstream() == n && e.GetKind() == catalogv1.GraphEdge_KIND_TRIGGERS {
					for _, w := range g.edges {
						if w.GetUpstream() == e.GetDownstream() && w.GetKind() == catalogv1.GraphEdge_KIND_MATERIALIZES && !down[w.GetDownstream()] {
							down[w.GetDownstream()] = true
							walk(w.GetDownstream())
						}
					}
				}
			}
		}
		walk(req.GetName())
		order, _ := g.topoOrder()
		for _, n := range order {
			if down[n] && n != req.GetName() {
				names = append(names, n)
			}
		}
	}
	// Every Data Source a cascade empties needs the caller's DATASOURCES:DROP, checked before
	// the first is emptied, so that a refused cascade changes nothing.
	var drops []auth.Scope
	for _, name := range names[1:] {
		drops = append(drops, auth.Scope{Type: auth.DataSourcesDrop, Resource: name})
	}
	if err := auth.Require(ctx, ws.Name, drops...); err != nil {
		return nil, err
	}
	resp := &catalogv1.TruncateDataSourceResponse{}
	for _, name := range names {
		start := s.deps.Now()
		table := tableName(ws, name)
		var rows uint64
		if res, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM "+table); err == nil && len(res.Rows) == 1 {
			rows, _ = res.Rows[0][0].(uint64)
		}
		ev := &opslogv1.OpsEvent{
			Workspace: ws.Name, Timestamp: timestamppb.New(start), EventType: opslogv1.EventType_EVENT_TYPE_TRUNCATE,
			DatasourceName: name, DatasourceId: name, Result: opslogv1.Result_RESULT_OK, Rows: rows,
		}
		if d, ok := p.datasources[name]; ok {
			ev.DatasourceId = d.rec.ID
		}
		_, err := s.deps.Warehouse.Exec(ctx, "TRUNCATE TABLE "+table)
		ev.ElapsedTime = durationpb.New(s.deps.Now().Sub(start))
		if err != nil {
			ev.Result, ev.Error = opslogv1.Result_RESULT_ERROR, chMessage(err)
			s.publish(ctx, []*opslogv1.OpsEvent{ev})
			return nil, fmt.Errorf("truncate %s: %w", name, err)
		}
		s.publish(ctx, []*opslogv1.OpsEvent{ev})
		resp.Truncated = append(resp.Truncated, &catalogv1.TruncatedDataSource{Name: name, Rows: rows})
		s.log.Info("Data Source truncated", "workspace", ws.Name, "datasource", name, "rows", rows)
	}
	return resp, nil
}

// TruncateDataSource empties a Data Source (and, with cascade, those downstream).
func (s *Service) TruncateDataSource(ctx context.Context, req *catalogv1.TruncateDataSourceRequest) (*catalogv1.TruncateDataSourceResponse, error) {
	resp, err := s.truncate(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}
