package auth

import (
	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// Access is the kind of caller a rule admits.
type Access int

const (
	// Open admits every call, with or without a token.
	Open Access = iota + 1
	// Authenticated admits any valid token.
	Authenticated
	// Operator admits the operator token and the service credential only.
	Operator
	// Workspace admits tokens of the workspace the request names (the operator and the service
	// credential act on any workspace), holding one of the rule's scopes when it lists any.
	Workspace
	// Instance admits tokens holding one of the rule's instance scopes (and the operator).
	Instance
)

// Need is a scope a rule asks for; ResourceField names the request field that holds the
// resource of a resource scope (a dotted path of proto field names).
type Need struct {
	Type          ScopeType
	ResourceField string
}

// Rule is what one RPC or HTTP endpoint requires.
type Rule struct {
	Access Access
	// WorkspaceField is the request field naming the workspace (a dotted path of proto field
	// names; default "workspace"). When a workspace token leaves it empty, the interceptor fills
	// in the token's workspace, so clients holding a workspace token need not name it.
	WorkspaceField string
	// AnyOf lists scopes of which the caller needs one (ADMIN always suffices). Empty, with
	// Access Workspace, admits any token of the workspace.
	AnyOf []Need
	// InstanceOK lets the operator leave the workspace empty: the call is about the instance
	// (its tokens).
	InstanceOK bool
	// Handler says what the handler checks itself, by reading the request (documentation; the
	// handler calls Require).
	Handler string
}

func ws(needs ...Need) Rule { return Rule{Access: Workspace, AnyOf: needs} }
func need(t ScopeType) Need { return Need{Type: t} }
func on(t ScopeType, f string) Need {
	return Need{Type: t, ResourceField: f}
}

// Rules is the one table of what every RPC (by full method name) and every HTTP endpoint (by
// "METHOD /path") requires. A server refuses to start with an RPC that is not in it, and
// TestEveryRPCHasARule fails, so a new RPC cannot ship without a decision here. Adding an RPC:
// add its line below, with the narrowest scope that fits, and its row in docs/security.md.
var Rules = map[string]Rule{
	// Health and reflection stay open: load balancers and probes check health without
	// credentials, and reflection describes only the public API (the same as proto/).
	"/grpc.health.v1.Health/Check":                                   {Access: Open},
	"/grpc.health.v1.Health/List":                                    {Access: Open},
	"/grpc.health.v1.Health/Watch":                                   {Access: Open},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Access: Open},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Access: Open},

	catalogv1.CatalogService_CreateWorkspace_FullMethodName: {Access: Operator},
	catalogv1.CatalogService_GetWorkspace_FullMethodName:    {Access: Workspace, WorkspaceField: "name"},
	catalogv1.CatalogService_ListWorkspaces_FullMethodName:  {Access: Operator},
	catalogv1.CatalogService_DeleteWorkspace_FullMethodName: {Access: Operator},
	catalogv1.CatalogService_Push_FullMethodName: {Access: Workspace, AnyOf: []Need{need(DataSourcesCreate), need(PipesCreate)},
		Handler: "DATASOURCES:CREATE for .datasource files, PIPES:CREATE for .pipe files; with prune, DATASOURCES:DROP:<name> / PIPES:DROP:<name> of what it removes; TOKENS when the files carry TOKEN lines"},
	catalogv1.CatalogService_GetDataSource_FullMethodName:   ws(on(DataSourcesRead, "name")),
	catalogv1.CatalogService_ListDataSources_FullMethodName: ws(need(WorkspaceReadAll)),
	catalogv1.CatalogService_DeleteDataSource_FullMethodName: {Access: Workspace, AnyOf: []Need{on(DataSourcesDrop, "name")},
		Handler: "with force, PIPES:DROP:<name> of every pipe it removes"},
	// Truncating removes every row, as recreating with --force does, so it asks the same scope.
	catalogv1.CatalogService_TruncateDataSource_FullMethodName: {Access: Workspace, AnyOf: []Need{on(DataSourcesDrop, "name")},
		Handler: "with cascade, DATASOURCES:DROP:<name> of every Data Source downstream it empties"},
	catalogv1.CatalogService_GetPipe_FullMethodName:    ws(on(PipesRead, "name")),
	catalogv1.CatalogService_ListPipes_FullMethodName:  ws(need(WorkspaceReadAll)),
	catalogv1.CatalogService_DeletePipe_FullMethodName: ws(on(PipesDrop, "name")),
	catalogv1.CatalogService_RenderNode_FullMethodName: ws(on(PipesRead, "pipe")),
	catalogv1.CatalogService_GetGraph_FullMethodName:   ws(need(WorkspaceReadAll)),
	catalogv1.CatalogService_Query_FullMethodName: {Access: Workspace,
		Handler: "DATASOURCES:READ:<name> / PIPES:READ:<name> of every Data Source and Pipe the statement reads (datasources_ops_log and jobs_log: or OPSLOG:READ / JOBS:READ); WORKSPACE:READ_ALL for SHOW TABLES"},
	catalogv1.CatalogService_ListFileVersions_FullMethodName: ws(need(WorkspaceReadAll)),
	// CutOverView changes a deployed view for a populate job: only Sluice's own services (the
	// executor, with the service credential) and the operator call it.
	catalogv1.CatalogService_CutOverView_FullMethodName: {Access: Operator},
	// PlanPopulate is the scheduler asking what a populate it accepts reads and writes (with
	// the service credential; PIPES:RUN was checked on the populate).
	catalogv1.CatalogService_PlanPopulate_FullMethodName: {Access: Operator},

	catalogv1.TokenService_ListTokens_FullMethodName:      {Access: Workspace, AnyOf: []Need{need(Tokens)}, InstanceOK: true},
	catalogv1.TokenService_CreateToken_FullMethodName:     {Access: Workspace, AnyOf: []Need{need(Tokens)}, InstanceOK: true, Handler: "only scopes the caller holds"},
	catalogv1.TokenService_DeleteToken_FullMethodName:     {Access: Workspace, AnyOf: []Need{need(Tokens)}, InstanceOK: true, Handler: "only tokens whose scopes the caller holds"},
	catalogv1.TokenService_RotateToken_FullMethodName:     {Access: Workspace, AnyOf: []Need{need(Tokens)}, InstanceOK: true, Handler: "only tokens whose scopes the caller holds"},
	catalogv1.TokenService_GetCurrentToken_FullMethodName: {Access: Authenticated},

	schedulerv1.SchedulerService_RunCopy_FullMethodName:            ws(on(PipesRun, "pipe")),
	schedulerv1.SchedulerService_PauseCopySchedule_FullMethodName:  ws(on(PipesRun, "pipe")),
	schedulerv1.SchedulerService_ResumeCopySchedule_FullMethodName: ws(on(PipesRun, "pipe")),
	schedulerv1.SchedulerService_ListCopySchedules_FullMethodName:  ws(need(WorkspaceReadAll)),
	schedulerv1.SchedulerService_Populate_FullMethodName:           ws(on(PipesRun, "pipe")),
	schedulerv1.SchedulerService_GetJob_FullMethodName:             ws(need(JobsRead)),
	schedulerv1.SchedulerService_ListJobs_FullMethodName:           ws(need(JobsRead)),
	schedulerv1.SchedulerService_CancelJob_FullMethodName:          ws(need(JobsCancel)),
	schedulerv1.SchedulerService_WatchJob_FullMethodName:           ws(need(JobsRead)),
	schedulerv1.SchedulerService_GetWorkspaceLimits_FullMethodName: ws(need(WorkspaceReadAll)),
	schedulerv1.SchedulerService_SetWorkspaceLimits_FullMethodName: {Access: Operator},
	schedulerv1.SchedulerService_RunNoopJob_FullMethodName:         ws(need(Admin)),

	executorv1.ExecutorService_GetStatus_FullMethodName: {Access: Operator},

	opslogv1.OpsLogService_QueryEvents_FullMethodName: {Access: Workspace, WorkspaceField: "filter.workspace", AnyOf: []Need{need(OpsLogRead)}},
	opslogv1.OpsLogService_TailEvents_FullMethodName:  {Access: Workspace, WorkspaceField: "filter.workspace", AnyOf: []Need{need(OpsLogRead)}},

	ingestv1.IngestService_Append_FullMethodName: ws(on(DataSourcesAppend, "datasource")),
	// A client stream's later messages carry only chunks: the handler checks the first one.
	ingestv1.IngestService_AppendStream_FullMethodName: {Access: Authenticated,
		Handler: "DATASOURCES:APPEND:<datasource> of the start message's workspace (a workspace token's own when it names none); a replace also DATASOURCES:DROP:<datasource>"},
	// The Events API, on the ingest service's own port (-events-addr): the Data Source is the
	// name parameter, the workspace the workspace parameter or the token's.
	"POST /v0/events": {Access: Workspace, AnyOf: []Need{on(DataSourcesAppend, "name")}},

	// The HTTP port: liveness and readiness stay open for probes (they say only up/ready);
	// metrics need METRICS:READ (an instance token, or the operator token).
	"GET /live":    {Access: Open},
	"GET /ready":   {Access: Open},
	"GET /metrics": {Access: Instance, AnyOf: []Need{need(MetricsRead)}},
}
