package cli

import (
	"context"
	"flag"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
)

// printProto prints a response as JSON with the proto field names.
func (e *Env) printProto(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.Stdout, string(b))
	return err
}

func pushCommand() *command {
	var dryRun, force, prune bool
	var requestID string
	return &command{
		name:  "push",
		short: "validate, plan and deploy datafiles (files, or folders searched recursively)",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&dryRun, "dry-run", false, "validate and print the plan; change nothing")
			fs.BoolVar(&force, "force", false, "allow changes that recreate a Data Source (its rows are lost)")
			fs.BoolVar(&prune, "prune", false, "delete deployed resources that are not in the push")
			// The hosted CLI's --push-deps pushes the files a pushed file depends on; Sluice
			// validates and plans every pushed file together anyway, so it changes nothing.
			fs.Bool("push-deps", false, "accepted for the hosted CLI's scripts: every pushed file is planned together anyway")
			fs.Bool("only-changes", false, "accepted for the hosted CLI's scripts: unchanged files change nothing anyway")
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) == 0 {
				return usageError("push: give datafiles or folders")
			}
			files, err := collectDatafiles(args)
			if err != nil {
				return err
			}
			client, err := catalogClient(ctx, env)
			if err != nil {
				return err
			}
			req := &catalogv1.PushRequest{
				Workspace: env.Globals.Workspace, Files: files, DryRun: dryRun, Force: force, Prune: prune,
				Variables: referencedVariables(files),
			}
			var resp *catalogv1.PushResponse
			// No per-attempt timeout: a push runs DDL and may take long.
			err = env.once(ctx, &requestID, 0, func(ctx context.Context, id string) (err error) {
				req.RequestId = id
				resp, err = client.Push(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp)
			}
			for _, w := range resp.GetWarnings() {
				fmt.Fprintf(env.Stderr, "warning: %s\n", diagnosticText(w))
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ACTION\tTYPE\tNAME\tREASON")
			changes := 0
			for _, a := range resp.GetActions() {
				if a.GetKind() == catalogv1.PlanAction_KIND_NONE {
					continue
				}
				changes++
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", actionWord(a.GetKind()), resourceWord(a.GetResourceType()), a.GetName(), a.GetReason())
			}
			_ = tw.Flush()
			ws := "workspace " + env.Globals.Workspace
			if env.Globals.Workspace == "" {
				ws = "the token's workspace"
			}
			switch {
			case dryRun:
				fmt.Fprintf(env.Stdout, "dry run: %d change(s) planned, nothing applied\n", changes)
			case resp.GetApplied():
				fmt.Fprintf(env.Stdout, "pushed %d file(s) to %s: %d change(s) applied\n", len(files), ws, changes)
			default:
				fmt.Fprintf(env.Stdout, "nothing to do: %s already has these files\n", ws)
			}
			for _, t := range resp.GetNewTokens() {
				fmt.Fprintf(env.Stdout, "new token %q (%s); its secret, shown once:\n  %s\n", t.GetToken().GetName(), strings.Join(t.GetToken().GetScopes(), ", "), t.GetSecret())
			}
			return nil
		},
	}
}

// collectDatafiles reads the datafiles named by args (folders are searched recursively). Paths
// are sent relative to the arguments' common folder, so INCLUDE paths resolve as on disk.
func collectDatafiles(args []string) ([]*catalogv1.Datafile, error) {
	var paths []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, &ExitError{Code: 2, Err: err}
		}
		if !st.IsDir() {
			paths = append(paths, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch filepath.Ext(p) {
			case ".datasource", ".pipe", ".incl":
				if !d.IsDir() {
					paths = append(paths, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(paths) == 0 {
		return nil, usageError("push: no .datasource, .pipe or .incl files in %s", strings.Join(args, " "))
	}
	root := commonDir(paths)
	sort.Strings(paths)
	out := make([]*catalogv1.Datafile, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(p)
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			rel = filepath.Base(p)
		}
		out = append(out, &catalogv1.Datafile{Path: filepath.ToSlash(rel), Content: string(b)})
	}
	return out, nil
}

func commonDir(paths []string) string {
	var root string
	for i, p := range paths {
		abs, _ := filepath.Abs(p)
		dir := filepath.Dir(abs)
		if i == 0 {
			root = dir
			continue
		}
		for !strings.HasPrefix(dir+string(filepath.Separator), root+string(filepath.Separator)) {
			root = filepath.Dir(root)
		}
	}
	return root
}

var varRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// referencedVariables are the environment variables the files reference as $VAR or ${VAR}.
func referencedVariables(files []*catalogv1.Datafile) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		for _, m := range varRef.FindAllStringSubmatch(f.GetContent(), -1) {
			if v, ok := os.LookupEnv(m[1]); ok {
				out[m[1]] = v
			}
		}
	}
	return out
}

func diagnosticText(d *commonv1.Diagnostic) string {
	if p := d.GetPosition(); p != nil {
		return fmt.Sprintf("%s:%d:%d: %s", p.GetFile(), p.GetLine(), p.GetColumn(), d.GetMessage())
	}
	return d.GetMessage()
}

func actionWord(k catalogv1.PlanAction_Kind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_"))
}

func resourceWord(t catalogv1.ResourceType) string {
	if t == catalogv1.ResourceType_RESOURCE_TYPE_PIPE {
		return "pipe"
	}
	return "datasource"
}

func nodeTypeWord(t catalogv1.NodeType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "NODE_TYPE_"))
}

func datasourceCommand() *command {
	return &command{name: "datasource", short: "list, show, append to, replace and truncate Data Sources", subs: []*command{
		datasourceAppendCommand(false),
		datasourceAppendCommand(true),
		{
			name: "ls", short: "list Data Sources",
			run: func(ctx context.Context, env *Env, _ []string) error {
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp := &catalogv1.ListDataSourcesResponse{}
				if resp.Datasources, err = listAll(ctx, env, func(ctx context.Context, token string) ([]*catalogv1.DataSource, string, error) {
					page, err := client.ListDataSources(ctx, &catalogv1.ListDataSourcesRequest{Workspace: env.Globals.Workspace, PageToken: token})
					return page.GetDatasources(), page.GetNextPageToken(), err
				}); err != nil {
					return err
				}
				return env.printTable(resp, "NAME\tENGINE\tPARTITION KEY\tSORTING KEY\tCOLUMNS\tVERSION", func(tw io.Writer) {
					for _, d := range resp.GetDatasources() {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", d.GetName(), d.GetEngine(), d.GetPartitionKey(), d.GetSortingKey(), len(d.GetColumns()), d.GetFileVersion())
					}
				})
			},
		},
		datasourceTruncateCommand(),
		{
			name: "show", short: "show one Data Source",
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("datasource show NAME")
				}
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp, err := call(ctx, env, client.GetDataSource, &catalogv1.GetDataSourceRequest{Workspace: env.Globals.Workspace, Name: args[0]})
				if err != nil {
					return callError(err)
				}
				if env.Globals.Output == "json" {
					return env.printProto(resp)
				}
				d := resp.GetDatasource()
				fmt.Fprintf(env.Stdout, "Data Source %s (id %s, %s version %d)\n", d.GetName(), d.GetId(), d.GetPath(), d.GetFileVersion())
				if d.GetDescription() != "" {
					fmt.Fprintf(env.Stdout, "%s\n", d.GetDescription())
				}
				fmt.Fprintf(env.Stdout, "\n%s\n", d.GetCreateStatement())
				return nil
			},
		},
	}}
}

func pipeCommand() *command {
	return &command{name: "pipe", short: "list, show, copy and populate Pipes", subs: []*command{
		pipeCopyCommand(),
		{
			name: "ls", short: "list Pipes",
			run: func(ctx context.Context, env *Env, _ []string) error {
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp := &catalogv1.ListPipesResponse{}
				if resp.Pipes, err = listAll(ctx, env, func(ctx context.Context, token string) ([]*catalogv1.Pipe, string, error) {
					page, err := client.ListPipes(ctx, &catalogv1.ListPipesRequest{Workspace: env.Globals.Workspace, PageToken: token})
					return page.GetPipes(), page.GetNextPageToken(), err
				}); err != nil {
					return err
				}
				return env.printTable(resp, "NAME\tTYPE\tNODES\tTARGET\tSCHEDULE", func(tw io.Writer) {
					for _, p := range resp.GetPipes() {
						target, schedule := "", ""
						for _, n := range p.GetNodes() {
							if n.GetTargetDatasource() != "" {
								target, schedule = n.GetTargetDatasource(), n.GetCopySchedule()
							}
						}
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", p.GetName(), nodeTypeWord(p.GetType()), len(p.GetNodes()), target, schedule)
					}
				})
			},
		},
		{
			name: "show", short: "show one Pipe and its nodes",
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("pipe show NAME")
				}
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp, err := call(ctx, env, client.GetPipe, &catalogv1.GetPipeRequest{Workspace: env.Globals.Workspace, Name: args[0]})
				if err != nil {
					return callError(err)
				}
				if env.Globals.Output == "json" {
					return env.printProto(resp)
				}
				p := resp.GetPipe()
				fmt.Fprintf(env.Stdout, "Pipe %s (%s, id %s, %s version %d)\n", p.GetName(), nodeTypeWord(p.GetType()), p.GetId(), p.GetPath(), p.GetFileVersion())
				for _, n := range p.GetNodes() {
					fmt.Fprintf(env.Stdout, "\nNODE %s (%s) reads: %s\n", n.GetName(), nodeTypeWord(n.GetType()), strings.Join(n.GetDependencies(), ", "))
					if n.GetTargetDatasource() != "" {
						fmt.Fprintf(env.Stdout, "  target: %s\n", n.GetTargetDatasource())
					}
					if n.GetCopySchedule() != "" {
						fmt.Fprintf(env.Stdout, "  schedule: %s, mode: %s\n", n.GetCopySchedule(), strings.ToLower(strings.TrimPrefix(n.GetCopyMode().String(), "COPY_MODE_")))
					}
					for _, prm := range n.GetParameters() {
						def := "no default"
						if prm.GetHasDefault() {
							def = "default " + prm.GetDefaultValue()
						}
						fmt.Fprintf(env.Stdout, "  parameter %s %s (%s)\n", prm.GetName(), prm.GetType(), def)
					}
					fmt.Fprintf(env.Stdout, "%s\n", indent(n.GetSql(), "    "))
				}
				return nil
			},
		},
		pipePopulateCommand(),
	}}
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+by)
}

func graphCommand() *command {
	var format string
	return &command{
		name:  "graph",
		short: "show the data flow (text, mermaid or dot), whole or around one resource",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&format, "format", "text", "text, mermaid or dot")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 1 {
				return usageError("graph [NAME]")
			}
			if format != "text" && format != "mermaid" && format != "dot" {
				return usageError("--format: %q is not text, mermaid or dot", format)
			}
			client, err := catalogClient(ctx, env)
			if err != nil {
				return err
			}
			req := &catalogv1.GetGraphRequest{Workspace: env.Globals.Workspace}
			if len(args) == 1 {
				req.Resource = args[0]
			}
			resp, err := call(ctx, env, client.GetGraph, req)
			if err != nil {
				return callError(err)
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp)
			}
			fmt.Fprint(env.Stdout, renderGraph(resp, format))
			return nil
		},
	}
}

func edgeWord(k catalogv1.GraphEdge_Kind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_"))
}

func renderGraph(g *catalogv1.GetGraphResponse, format string) string {
	var b strings.Builder
	kind := map[string]*catalogv1.GraphNode{}
	for _, n := range g.GetNodes() {
		kind[n.GetName()] = n
	}
	id := func(s string) string { return "n_" + regexp.MustCompile(`[^A-Za-z0-9_]`).ReplaceAllString(s, "_") }
	switch format {
	case "mermaid":
		b.WriteString("flowchart LR\n")
		for _, n := range g.GetNodes() {
			if n.GetResourceType() == catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE {
				fmt.Fprintf(&b, "    %s[(%s)]\n", id(n.GetName()), n.GetName())
			} else {
				fmt.Fprintf(&b, "    %s[%s: %s]\n", id(n.GetName()), n.GetName(), nodeTypeWord(n.GetNodeType()))
			}
		}
		for _, e := range g.GetEdges() {
			fmt.Fprintf(&b, "    %s -->|%s| %s\n", id(e.GetUpstream()), edgeWord(e.GetKind()), id(e.GetDownstream()))
		}
	case "dot":
		b.WriteString("digraph sluice {\n    rankdir=LR;\n")
		for _, n := range g.GetNodes() {
			shape := "box"
			if n.GetResourceType() == catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE {
				shape = "cylinder"
			}
			fmt.Fprintf(&b, "    %q [shape=%s];\n", n.GetName(), shape)
		}
		for _, e := range g.GetEdges() {
			fmt.Fprintf(&b, "    %q -> %q [label=%q];\n", e.GetUpstream(), e.GetDownstream(), edgeWord(e.GetKind()))
		}
		b.WriteString("}\n")
	default:
		for _, name := range g.GetTopologicalOrder() {
			n := kind[name]
			what := "datasource"
			if n.GetResourceType() == catalogv1.ResourceType_RESOURCE_TYPE_PIPE {
				what = "pipe (" + nodeTypeWord(n.GetNodeType()) + ")"
			}
			fmt.Fprintf(&b, "%s %s\n", name, what)
			for _, e := range g.GetEdges() {
				if e.GetUpstream() == name {
					fmt.Fprintf(&b, "  -> %s (%s)\n", e.GetDownstream(), edgeWord(e.GetKind()))
				}
			}
		}
	}
	return b.String()
}

func sqlCommand() *command {
	var maxRows int64
	return &command{
		name:  "sql",
		short: `run a read-only query in the workspace: sluice sql "SELECT count() FROM events"`,
		flags: func(fs *flag.FlagSet) {
			fs.Int64Var(&maxRows, "max-rows", 0, "most rows to return (0: the server's limit)")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError(`sql "SELECT ..."`)
			}
			client, err := catalogClient(ctx, env)
			if err != nil {
				return err
			}
			resp, err := call(ctx, env, client.Query, &catalogv1.QueryRequest{Workspace: env.Globals.Workspace, Sql: args[0], MaxRows: maxRows, Timeout: durationpb.New(env.Globals.Timeout)})
			if err != nil {
				return callError(err)
			}
			if env.Globals.Output == "json" {
				return printQueryJSON(env, resp)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			var head []string
			for _, c := range resp.GetColumns() {
				head = append(head, c.GetName())
			}
			fmt.Fprintln(tw, strings.Join(head, "\t"))
			for _, r := range resp.GetRows() {
				var cells []string
				for _, v := range r.GetValues() {
					cells = append(cells, valueText(v.AsInterface()))
				}
				fmt.Fprintln(tw, strings.Join(cells, "\t"))
			}
			_ = tw.Flush()
			if resp.GetTruncated() {
				fmt.Fprintf(env.Stderr, "(result cut at %d rows)\n", len(resp.GetRows()))
			}
			return nil
		},
	}
}

func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprint(x)
	default:
		return fmt.Sprint(x)
	}
}

// printQueryJSON prints {"columns": [...], "rows": [{col: value}...], "statistics": {...}}.
func printQueryJSON(env *Env, resp *catalogv1.QueryResponse) error {
	type col struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	out := struct {
		Columns    []col            `json:"columns"`
		Rows       []map[string]any `json:"rows"`
		Truncated  bool             `json:"truncated"`
		Statistics map[string]any   `json:"statistics"`
	}{Rows: []map[string]any{}, Truncated: resp.GetTruncated()}
	for _, c := range resp.GetColumns() {
		out.Columns = append(out.Columns, col{c.GetName(), c.GetType()})
	}
	for _, r := range resp.GetRows() {
		m := map[string]any{}
		for i, v := range r.GetValues() {
			if i < len(out.Columns) {
				m[out.Columns[i].Name] = v.AsInterface()
			}
		}
		out.Rows = append(out.Rows, m)
	}
	st := resp.GetStatistics()
	out.Statistics = map[string]any{"read_rows": st.GetReadRows(), "read_bytes": st.GetReadBytes(), "elapsed_seconds": st.GetElapsed().AsDuration().Seconds()}
	return env.printJSON(out)
}

func datasourceTruncateCommand() *command {
	var cascade bool
	var requestID string
	return &command{
		name: "truncate", short: "remove every row of a Data Source: NAME [--cascade] [--yes]",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&cascade, "cascade", false, "also empty the Data Sources its materialized views write, downstream")
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("datasource truncate NAME [--cascade] [--yes]")
			}
			client, err := catalogClient(ctx, env)
			if err != nil {
				return err
			}
			// A retried truncate must not empty the rows written since the first one ran.
			resp, err := change(ctx, env, &requestID, 0, func(ctx context.Context, id string) (*catalogv1.TruncateDataSourceResponse, error) {
				return client.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: env.Globals.Workspace, Name: args[0], Cascade: cascade, RequestId: id})
			})
			if err != nil {
				return err
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp)
			}
			for _, t := range resp.GetTruncated() {
				fmt.Fprintf(env.Stdout, "Data Source %s truncated (%d rows removed)\n", t.GetName(), t.GetRows())
			}
			return nil
		},
	}
}
