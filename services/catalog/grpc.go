package catalog

import (
	"context"
	"sort"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// The handlers decode a request, call one domain method and map its errors (grpcError).

func (s *Service) CreateWorkspace(ctx context.Context, req *catalogv1.CreateWorkspaceRequest) (*catalogv1.CreateWorkspaceResponse, error) {
	w, token, created, err := s.createWorkspace(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.CreateWorkspaceResponse{Workspace: workspaceProto(w), AdminToken: token, Created: created}, nil
}

func (s *Service) GetWorkspace(ctx context.Context, req *catalogv1.GetWorkspaceRequest) (*catalogv1.GetWorkspaceResponse, error) {
	w, err := s.workspace(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.GetWorkspaceResponse{Workspace: workspaceProto(w)}, nil
}

// maxPage bounds the page size of the catalog's lists.
const maxPage = 1000

func (s *Service) ListWorkspaces(ctx context.Context, req *catalogv1.ListWorkspacesRequest) (*catalogv1.ListWorkspacesResponse, error) {
	ws, err := s.store.workspaces(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	page, next, err := paging.ByName(req, req.GetPageSize(), req.GetPageToken(), maxPage, ws, func(w workspaceRecord) string { return w.Name })
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListWorkspacesResponse{NextPageToken: next}
	for _, w := range page {
		resp.Workspaces = append(resp.Workspaces, workspaceProto(w))
	}
	return resp, nil
}

func (s *Service) DeleteWorkspace(ctx context.Context, req *catalogv1.DeleteWorkspaceRequest) (*catalogv1.DeleteWorkspaceResponse, error) {
	if err := s.deleteWorkspace(ctx, req.GetName()); err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.DeleteWorkspaceResponse{}, nil
}

func (s *Service) Push(ctx context.Context, req *catalogv1.PushRequest) (*catalogv1.PushResponse, error) {
	resp, err := s.push(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *Service) GetDataSource(ctx context.Context, req *catalogv1.GetDataSourceRequest) (*catalogv1.GetDataSourceResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	d, ok := p.datasources[req.GetName()]
	if !ok {
		return nil, grpcError(notFound("Data Source %q does not exist in workspace %s", req.GetName(), p.ws.Name))
	}
	return &catalogv1.GetDataSourceResponse{Datasource: dataSourceProto(p.ws, d)}, nil
}

func (s *Service) ListDataSources(ctx context.Context, req *catalogv1.ListDataSourcesRequest) (*catalogv1.ListDataSourcesResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	names, next, err := paging.ByName(req, req.GetPageSize(), req.GetPageToken(), maxPage, sortedNames(p.datasources), func(n string) string { return n })
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListDataSourcesResponse{NextPageToken: next}
	for _, name := range names {
		resp.Datasources = append(resp.Datasources, dataSourceProto(p.ws, p.datasources[name]))
	}
	return resp, nil
}

func (s *Service) GetPipe(ctx context.Context, req *catalogv1.GetPipeRequest) (*catalogv1.GetPipeResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	pd, err := p.deployedPipe(req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.GetPipeResponse{Pipe: pipeProto(p.ws, pd)}, nil
}

func (s *Service) ListPipes(ctx context.Context, req *catalogv1.ListPipesRequest) (*catalogv1.ListPipesResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	names, next, err := paging.ByName(req, req.GetPageSize(), req.GetPageToken(), maxPage, sortedNames(p.pipes), func(n string) string { return n })
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListPipesResponse{NextPageToken: next}
	for _, name := range names {
		resp.Pipes = append(resp.Pipes, pipeProto(p.ws, p.pipes[name]))
	}
	return resp, nil
}

func (s *Service) RenderNode(ctx context.Context, req *catalogv1.RenderNodeRequest) (*catalogv1.RenderNodeResponse, error) {
	resp, err := s.renderNode(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *Service) GetGraph(ctx context.Context, req *catalogv1.GetGraphRequest) (*catalogv1.GetGraphResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	g := p.buildGraph()
	if r := req.GetResource(); r != "" {
		if _, ok := g.vertices[r]; !ok {
			return nil, grpcError(notFound("no Data Source or Pipe %q in workspace %s", r, p.ws.Name))
		}
		g = g.subgraph(r)
	}
	return g.proto(), nil
}

func (s *Service) ListFileVersions(ctx context.Context, req *catalogv1.ListFileVersionsRequest) (*catalogv1.ListFileVersionsResponse, error) {
	if _, err := s.workspace(ctx, req.GetWorkspace()); err != nil {
		return nil, grpcError(err)
	}
	vs, err := s.store.fileVersions(ctx, req.GetWorkspace(), req.GetPath())
	if err != nil {
		return nil, grpcError(err)
	}
	if len(vs) == 0 {
		return nil, grpcError(notFound("no file %q was pushed to workspace %s", req.GetPath(), req.GetWorkspace()))
	}
	// Newest first: a page starts after the last version of the previous one.
	sort.Slice(vs, func(i, j int) bool { return vs[i].Version > vs[j].Version })
	vs, next, err := paging.Page(req, req.GetPageSize(), req.GetPageToken(), maxPage, vs,
		func(v fileRecord) []string { return []string{strconv.FormatInt(v.Version, 10)} },
		func(v fileRecord, k []string) bool { n, _ := strconv.ParseInt(k[0], 10, 64); return v.Version < n })
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListFileVersionsResponse{NextPageToken: next}
	for _, v := range vs {
		resp.Versions = append(resp.Versions, &catalogv1.FileVersion{Version: v.Version, Content: v.Content, CreateTime: timestamppb.New(v.CreateTime), Deleted: v.Deleted})
	}
	return resp, nil
}

func (s *Service) projectOf(ctx context.Context, workspace string) (*project, error) {
	ws, err := s.workspace(ctx, workspace)
	if err != nil {
		return nil, err
	}
	return s.loadProject(ctx, ws)
}

func workspaceProto(w workspaceRecord) *catalogv1.Workspace {
	return &catalogv1.Workspace{Name: w.Name, Database: w.Database, CreateTime: timestamppb.New(w.CreateTime)}
}

func columnProto(c column) *commonv1.Column { return &commonv1.Column{Name: c.name, Type: c.typ} }

func dataSourceProto(ws workspaceRecord, d *dsDef) *catalogv1.DataSource {
	e := d.ds.Engine
	out := &catalogv1.DataSource{
		Name: d.ds.Name, Workspace: ws.Name, Id: d.rec.ID, Description: d.ds.Description,
		Engine: e.EngineName(), PartitionKey: e.PartitionKey, SortingKey: e.SortingKey, PrimaryKey: e.PrimaryKey,
		Ttl: e.TTL, Settings: e.SettingsSQL(), CreateStatement: d.ds.DDL(tableName(ws, d.ds.Name)),
		Path: d.rec.Path, FileVersion: d.rec.FileVersion, Tags: tagsOf(d.ds.Tags), UpdateTime: timestamppb.New(d.rec.UpdateTime),
	}
	for _, c := range d.ds.Columns {
		out.Columns = append(out.Columns, &commonv1.Column{
			Name: c.Name, Type: c.SQLType(), DefaultKind: c.DefaultKind, DefaultExpression: c.DefaultExpr, Codec: c.Codec, JsonPath: c.JSONPath,
		})
	}
	return out
}

func pipeProto(ws workspaceRecord, pd *pipeDef) *catalogv1.Pipe {
	out := &catalogv1.Pipe{
		Name: pd.pipe.Name, Workspace: ws.Name, Id: pd.rec.ID, Description: pd.pipe.Description,
		Type: nodeTypeProto(pd.pipeType()), Path: pd.rec.Path, FileVersion: pd.rec.FileVersion,
		Tags: tagsOf(pd.pipe.Tags), UpdateTime: timestamppb.New(pd.rec.UpdateTime),
	}
	for _, nd := range pd.nodes {
		n := nd.node
		pn := &catalogv1.Node{Name: n.Name, Description: n.Description, Sql: n.SQL, Type: nodeTypeProto(n.Type), Dependencies: nd.reads}
		switch n.Type {
		case datafile.NodeMaterialized:
			pn.TargetDatasource = n.Datasource
		case datafile.NodeCopy:
			pn.TargetDatasource = n.TargetDatasource
			pn.CopyToken, _ = copyToken(pd)
			pn.CopySchedule = n.CopySchedule
			if pn.CopySchedule == "" {
				pn.CopySchedule = datafile.OnDemand
			}
			pn.CopyMode = commonv1.CopyMode_COPY_MODE_APPEND
			if n.CopyMode == datafile.CopyReplace {
				pn.CopyMode = commonv1.CopyMode_COPY_MODE_REPLACE
			}
		}
		if nd.tmpl != nil {
			for _, prm := range nd.tmpl.Parameters() {
				if prm.Implicit && prm.Name == "job_timestamp" && prm.Type == "" {
					continue
				}
				pn.Parameters = append(pn.Parameters, &catalogv1.Parameter{
					Name: prm.Name, Type: prm.Type, DefaultValue: prm.Default, HasDefault: prm.HasDefault, Required: prm.Required, Description: prm.Description,
				})
			}
		}
		out.Nodes = append(out.Nodes, pn)
	}
	return out
}

func tagsOf(t datafile.Tags) []string {
	out := append([]string(nil), t.Filtering...)
	for _, k := range sortedNames(t.Operational) {
		out = append(out, k+"="+t.Operational[k])
	}
	return out
}
