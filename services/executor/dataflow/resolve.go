package dataflow

import (
	"context"
	"fmt"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// Catalog is what Resolve needs from the catalog service (its generated client satisfies it).
type Catalog interface {
	GetWorkspace(ctx context.Context, in *catalogv1.GetWorkspaceRequest, opts ...grpcCallOption) (*catalogv1.GetWorkspaceResponse, error)
	GetGraph(ctx context.Context, in *catalogv1.GetGraphRequest, opts ...grpcCallOption) (*catalogv1.GetGraphResponse, error)
	RenderNode(ctx context.Context, in *catalogv1.RenderNodeRequest, opts ...grpcCallOption) (*catalogv1.RenderNodeResponse, error)
}

// Resolve asks the catalog for the flow downstream of a Data Source: the materialized views
// that inserts into target fire, then those that their targets fire, and so on, in the
// catalog's topological order (ties by name). With onlyTarget the flow has no views: the delta
// lands in target only (a populate of one view without propagating downstream).
func Resolve(ctx context.Context, cat Catalog, workspace, target string, onlyTarget bool) (Flow, error) {
	ws, err := cat.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: workspace})
	if err != nil {
		return Flow{}, fmt.Errorf("workspace %s: %w", workspace, err)
	}
	flow := Flow{Database: ws.GetWorkspace().GetDatabase(), Target: target}
	if onlyTarget {
		return flow, nil
	}
	g, err := cat.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: workspace, Resource: target})
	if err != nil {
		return Flow{}, fmt.Errorf("data flow of %s: %w", target, err)
	}
	triggers := map[string]string{} // materialized pipe → the Data Source that fires it
	writes := map[string]string{}   // materialized pipe → its target
	for _, e := range g.GetEdges() {
		switch e.GetKind() {
		case catalogv1.GraphEdge_KIND_TRIGGERS:
			triggers[e.GetDownstream()] = e.GetUpstream()
		case catalogv1.GraphEdge_KIND_MATERIALIZES:
			writes[e.GetUpstream()] = e.GetDownstream()
		}
	}
	written := map[string]bool{target: true}
	for _, name := range g.GetTopologicalOrder() {
		trig, isView := triggers[name]
		if !isView || !written[trig] || writes[name] == "" {
			continue
		}
		r, err := cat.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: workspace, Pipe: name})
		if err != nil {
			return Flow{}, fmt.Errorf("query of materialized pipe %s: %w", name, err)
		}
		flow.Views = append(flow.Views, View{Pipe: name, Trigger: trig, Target: writes[name], SQL: r.GetSql()})
		written[writes[name]] = true
	}
	return flow, flow.Validate()
}
