package catalog

import (
	"context"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/template"
)

// serviceDataSourceScopes are the scopes that read a service Data Source's rows through the
// API (OpsLogService, the job RPCs); `sluice sql` accepts them for it besides
// DATASOURCES:READ:<name>. Each view holds only its workspace's rows.
var serviceDataSourceScopes = map[string]auth.ScopeType{"datasources_ops_log": auth.OpsLogRead, "jobs_log": auth.JobsRead}

// readOnlyKinds are the statements `sluice sql` runs.
var readOnlyKinds = map[chsql.StatementKind]bool{
	chsql.KindSelect: true, chsql.KindWith: true, chsql.KindDescribe: true, chsql.KindExplain: true, chsql.KindShow: true,
}

// defaultQueryMaxBytes caps a result when the configuration leaves it unset.
const defaultQueryMaxBytes = 64 << 20

// query runs one read-only statement inside a workspace. Its table references are qualified
// with the workspace's database by Sluice (never by USE: in embedded mode the current database
// is shared by the whole process); other databases, other workspaces, system tables, table
// functions outside the allow-list, functions that read files, SETTINGS, FORMAT and INTO
// OUTFILE clauses are refused before ClickHouse sees the query, and ClickHouse runs it with
// readonly=1, row and byte caps on the result and a time limit as a second line of defence.
// See docs/security.md.
func (s *Service) query(ctx context.Context, req *catalogv1.QueryRequest) (*catalogv1.QueryResponse, error) {
	p, err := s.projectOf(ctx, req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	// ClickHouse runs the normalized text (comments removed): exactly what is analysed here.
	sql, err := chsql.Normalize(req.GetSql())
	if err != nil {
		return nil, invalidArg("sql", "cannot read the query: %v", err)
	}
	an, err := chsql.Analyze(sql, nil)
	if err != nil {
		return nil, invalidArg("sql", "cannot read the query: %v", err)
	}
	if an.Statements != 1 {
		return nil, invalidArg("sql", "one statement at a time (found %d)", an.Statements)
	}
	// job_timestamp is the time of the request, as for an endpoint of the hosted platform.
	c := &composer{p: p, db: p.ws.Database, opts: template.RenderOptions{JobTimestamp: s.deps.Now().UTC().Truncate(time.Second)}}
	// References are checked first, so that a refusal names what the statement reaches for.
	// The statement reads with the caller's scopes: every Data Source and Pipe it names
	// (reading a Pipe reads what the Pipe reads, as its token allows on the hosted platform),
	// checked before anything is resolved, so that a refusal tells nothing of what it names.
	var denied error
	rewritten, err := an.Rewrite(func(ref chsql.TableRef) (string, error) {
		if ref.Kind == chsql.RefNode {
			ref.Kind = chsql.RefTable
		}
		if ref.Kind == chsql.RefTable || ref.Kind == chsql.RefJoinGet || ref.Kind == chsql.RefDictionary {
			if name, nerr := p.checkTableRef(ref); nerr == nil {
				sc := auth.Scope{Type: auth.DataSourcesRead, Resource: name}
				if _, isPipe := p.pipes[name]; isPipe {
					sc.Type = auth.PipesRead
				}
				// A service Data Source is also readable with the scope that reads the same
				// rows through the API: the ops log with OPSLOG:READ, the jobs with JOBS:READ.
				if alt, ok := serviceDataSourceScopes[name]; ok && p.datasources[name] == nil && auth.Allowed(ctx, p.ws.Name, auth.Scope{Type: alt}) {
					return c.resolve(nil, ref)
				}
				if err := auth.Require(ctx, p.ws.Name, sc); err != nil {
					denied = err
					return "", err
				}
			}
		}
		return c.resolve(nil, ref)
	})
	if denied != nil {
		return nil, denied
	}
	if err != nil {
		return nil, invalidArg("sql", "%v", err)
	}
	// SHOW TABLES lists every Data Source.
	if an.Kind == chsql.KindShow {
		if err := auth.Require(ctx, p.ws.Name, auth.Scope{Type: auth.WorkspaceReadAll}); err != nil {
			return nil, err
		}
	}
	if !readOnlyKinds[an.Kind] {
		return nil, invalidArg("sql", "%s is refused: sluice sql runs read-only statements (SELECT, WITH, SHOW TABLES, DESCRIBE, EXPLAIN)", strings.ToUpper(string(an.Kind)))
	}
	if probs := checkStatement(an, false); len(probs) > 0 {
		return nil, invalidArg("sql", "%s", probs[0].msg)
	}
	sql = rewritten
	if an.Kind == chsql.KindShow {
		if sql, err = showTables(p.ws, an); err != nil {
			return nil, err
		}
	} else if err := s.verifyAST(ctx, p.ws.Database, sql); err != nil {
		return nil, invalidArg("sql", "%v", err)
	}
	maxRows := s.cfg.QueryMaxRows
	if n := req.GetMaxRows(); n > 0 && n < maxRows {
		maxRows = n
	}
	timeout := s.cfg.QueryTimeout
	if req.GetTimeout() != nil {
		if err := req.GetTimeout().CheckValid(); err != nil || req.GetTimeout().AsDuration() < 0 {
			return nil, invalidArg("timeout", "must be a positive duration")
		}
		if t := req.GetTimeout().AsDuration(); t > 0 && t < timeout {
			timeout = t
		}
	}
	maxBytes := s.cfg.QueryMaxBytes
	if maxBytes <= 0 {
		maxBytes = defaultQueryMaxBytes
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	settings := warehouse.Settings{
		"readonly":             1,
		"max_result_rows":      maxRows + 1,
		"max_result_bytes":     maxBytes,
		"result_overflow_mode": "break",
		"max_execution_time":   int64(math.Ceil(timeout.Seconds())),
	}
	if s.caps.intSettings {
		// The statement holds no SETTINGS clause (refused above), so one can be added. readonly
		// comes last in it: once applied, the server refuses any further setting. Other
		// statements (DESCRIBE, EXPLAIN) fail rather than cut their result at the caps.
		// 18.16 reads the result limits of the clause only, so they move there too.
		delete(settings, "result_overflow_mode")
		if an.Kind == chsql.KindSelect || an.Kind == chsql.KindWith || an.Kind == chsql.KindShow {
			sql += fmt.Sprintf("\nSETTINGS max_result_rows = %d, max_result_bytes = %d, result_overflow_mode = 'break', readonly = 1", maxRows+1, maxBytes)
			for _, k := range []string{"readonly", "max_result_rows", "max_result_bytes"} {
				delete(settings, k)
			}
		}
	}
	// Users' SQL runs as the workspace's ClickHouse user when there is one; SHOW TABLES is
	// Sluice's own read of system.tables.
	conn := s.deps.Warehouse
	if an.Kind != chsql.KindShow {
		if conn, err = s.deps.WorkspaceUsers.For(ctx, p.ws.Name, p.ws.Database, s.deps.Warehouse); err != nil {
			return nil, err
		}
	}
	res, err := conn.Query(ctx, sql, warehouse.WithSettings(settings))
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.QueryResponse{Statistics: statsProto(res.Stats)}
	for _, c := range res.Columns {
		resp.Columns = append(resp.Columns, &commonv1.Column{Name: c.Name, Type: c.Type})
	}
	for i, row := range res.Rows {
		if int64(i) >= maxRows {
			resp.Truncated = true
			break
		}
		lv := &structpb.ListValue{}
		for j, v := range row {
			lv.Values = append(lv.Values, queryValue(v, res.Columns[j].Type, s.caps.timezone))
		}
		resp.Rows = append(resp.Rows, lv)
	}
	return resp, nil
}

// probeQueryCaps finds whether the server takes only integer settings over the native protocol
// (ClickHouse before 19.11), and says what Sluice does about it.
func (s *Service) probeQueryCaps(ctx context.Context) error {
	if _, err := s.deps.Warehouse.Query(ctx, "EXPLAIN AST SELECT 1"); err == nil {
		s.caps.explainAST = true
	} else {
		s.log.Warn("this ClickHouse has no EXPLAIN AST: users' SQL is checked by Sluice's own analysis only, not also by the server's parser", "err", chMessage(err))
	}
	s.caps.timezone = time.UTC
	if res, err := s.deps.Warehouse.Query(ctx, "SELECT timezone()"); err == nil && len(res.Rows) == 1 {
		if loc, lerr := time.LoadLocation(fmt.Sprint(res.Rows[0][0])); lerr == nil {
			s.caps.timezone = loc
		}
	}
	if s.deps.Warehouse.Engine() != warehouse.EngineNative {
		return nil
	}
	res, err := s.deps.Warehouse.Query(ctx, "SELECT version()")
	if err != nil {
		return fmt.Errorf("probe ClickHouse version: %w", err)
	}
	var major, minor int
	if len(res.Rows) == 1 {
		_, _ = fmt.Sscanf(fmt.Sprint(res.Rows[0][0]), "%d.%d", &major, &minor)
	}
	if major > 0 && (major < 19 || major == 19 && minor < 11) {
		s.caps.intSettings = true
		s.log.Info("this ClickHouse takes only integer settings over the native protocol: sluice sql sets result_overflow_mode in the query's SETTINGS clause", "version", res.Rows[0][0])
	}
	return nil
}

// showTables answers SHOW TABLES for the workspace; other SHOW statements could name other
// databases and are refused.
func showTables(ws workspaceRecord, an *chsql.Analysis) (string, error) {
	toks, err := chsql.Lex(an.SQL)
	if err != nil {
		return "", invalidArg("sql", "cannot read the query: %v", err)
	}
	toks = chsql.Significant(toks)
	if len(toks) != 2 || toks[1].Upper() != "TABLES" || len(an.Refs) > 0 {
		return "", invalidArg("sql", "only SHOW TABLES is supported (it lists this workspace's Data Sources); SHOW with FROM, LIKE or other objects is refused")
	}
	return "SELECT name FROM system.tables WHERE database = " + warehouse.QuoteString(ws.Database) +
		" AND NOT startsWith(name, '__sluice') ORDER BY name", nil
}

func statsProto(s warehouse.Stats) *commonv1.Statistics {
	return &commonv1.Statistics{
		ReadRows: s.ReadRows, ReadBytes: s.ReadBytes, WrittenRows: s.WrittenRows, WrittenBytes: s.WrittenBytes,
		Elapsed: durationpb.New(s.Elapsed), MemoryUsage: s.MemoryUsage,
	}
}

// Query runs a read-only statement.
func (s *Service) Query(ctx context.Context, req *catalogv1.QueryRequest) (*catalogv1.QueryResponse, error) {
	resp, err := s.query(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}
