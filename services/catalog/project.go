package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/services/catalog/datafile"
	"github.com/sluicehq/sluice/services/catalog/template"
)

// project is a workspace's resources as a push would leave them: what is deployed, with the
// pushed files over it. Validation, the graph and the plan all work on it.
type project struct {
	ws          workspaceRecord
	datasources map[string]*dsDef
	pipes       map[string]*pipeDef
	// replacedBroken are deployed resources whose stored definition no longer parses (the
	// parser became stricter) and that the pushed files replace, with why they do not parse.
	replacedBroken map[string]string
	// broken are the resources of pushed files that do not parse, by name: what reads them
	// says so rather than calling them unknown.
	broken map[string]string
}

type dsDef struct {
	rec    resourceRecord
	ds     *datafile.DataSource
	pushed bool
}

type pipeDef struct {
	rec    resourceRecord
	pipe   *datafile.Pipe
	nodes  []*nodeDef
	pushed bool
}

// nodeDef is a node with what the analysis found in it.
type nodeDef struct {
	pipe *pipeDef
	node *datafile.Node
	tmpl *template.Template
	// reads are the names the node's query reads: Data Sources, pipes, or earlier nodes.
	reads []string
}

// diag is a problem found in the files, with where it stands.
type diag struct {
	pos     datafile.Pos
	msg     string
	warning bool
	// code is the kind of problem; unset is INVALID for errors and UNSUPPORTED for warnings.
	code commonv1.DiagnosticCode
	// chCode is ClickHouse's error code when ClickHouse refused the definition.
	chCode int32
}

func (d diag) String() string {
	if d.pos.File == "" {
		return d.msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.pos.File, max(d.pos.Line, 1), max(d.pos.Column, 1), d.msg)
}

func (d diag) proto() *commonv1.Diagnostic {
	sev := commonv1.Diagnostic_SEVERITY_ERROR
	if d.warning {
		sev = commonv1.Diagnostic_SEVERITY_WARNING
	}
	code := d.code
	if code == commonv1.DiagnosticCode_DIAGNOSTIC_CODE_UNSPECIFIED {
		code = commonv1.DiagnosticCode_DIAGNOSTIC_CODE_INVALID
		if d.warning {
			code = commonv1.DiagnosticCode_DIAGNOSTIC_CODE_UNSUPPORTED
		}
	}
	out := &commonv1.Diagnostic{Message: d.msg, Severity: sev, Code: code, ClickhouseCode: d.chCode}
	if d.pos.File != "" {
		out.Position = &commonv1.SourcePosition{File: d.pos.File, Line: int32(max(d.pos.Line, 1)), Column: int32(max(d.pos.Column, 1))}
	}
	return out
}

// diagErrors is the error of a push refused for its files: every problem, each with its place.
type diagErrors []diag

func (e diagErrors) Error() string {
	parts := make([]string, len(e))
	for i, d := range e {
		parts[i] = d.String()
	}
	return strings.Join(parts, "\n")
}

func errorsOf(ds []diag) diagErrors {
	var out diagErrors
	for _, d := range ds {
		if !d.warning {
			out = append(out, d)
		}
	}
	return out
}

func warningsOf(ds []diag) []diag {
	var out []diag
	for _, d := range ds {
		if d.warning {
			out = append(out, d)
		}
	}
	return out
}

// parseResource parses one datafile with its includes taken from includes (path → content).
func parseResource(p, content string, includes map[string]string, vars map[string]string) (*datafile.File, map[string]string, error) {
	used := map[string]string{}
	f, err := datafile.Parse(p, []byte(content), datafile.Options{
		Env: vars,
		ReadFile: func(incl string) ([]byte, error) {
			c, ok := includes[path.Clean(incl)]
			if !ok {
				return nil, fmt.Errorf("%s is not in the push (include files are pushed with the files that use them)", incl)
			}
			used[path.Clean(incl)] = c
			return []byte(c), nil
		},
	})
	return f, used, err
}

// buildProject lays the pushed files over the deployed resources. Parse errors of every file
// are collected, not just the first.
func assembleProject(ws workspaceRecord, deployed map[resourceKind]map[string]resourceRecord, files []*catalogv1.Datafile, vars map[string]string, prune bool) (*project, []diag) {
	p := &project{ws: ws, datasources: map[string]*dsDef{}, pipes: map[string]*pipeDef{}, replacedBroken: map[string]string{}, broken: map[string]string{}}
	var diags []diag
	// A deployed resource that no longer parses (the parser got stricter) is a problem only if
	// this push does not replace it.
	broken := map[string]diag{}
	if !prune {
		for name, rec := range deployed[kindDataSource] {
			f, _, err := parseResource(rec.Path, rec.Content, rec.Includes, nil)
			if err != nil || f.DataSource == nil {
				broken[name] = diag{msg: fmt.Sprintf("deployed Data Source %s no longer parses: %v", name, err)}
				continue
			}
			p.datasources[name] = &dsDef{rec: rec, ds: f.DataSource}
		}
		for name, rec := range deployed[kindPipe] {
			f, _, err := parseResource(rec.Path, rec.Content, rec.Includes, nil)
			if err != nil || f.Pipe == nil {
				broken[name] = diag{msg: fmt.Sprintf("deployed Pipe %s no longer parses: %v", name, err)}
				continue
			}
			p.pipes[name] = &pipeDef{rec: rec, pipe: f.Pipe}
		}
	}

	includes := map[string]string{}
	for _, f := range files {
		if datafile.KindOf(f.GetPath()) == datafile.KindInclude {
			includes[path.Clean(f.GetPath())] = f.GetContent()
		}
	}
	seen := map[string]string{}
	// Files in path order, so that errors come out in a stable order.
	sorted := append([]*catalogv1.Datafile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetPath() < sorted[j].GetPath() })
	for _, file := range sorted {
		fp := path.Clean(file.GetPath())
		kind := datafile.KindOf(fp)
		if kind == datafile.KindInclude {
			if _, err := datafile.ParseInclude(fp, []byte(file.GetContent()), datafile.Options{}); err != nil {
				diags = append(diags, diagOf(err, fp))
			}
			continue
		}
		f, used, err := parseResource(fp, file.GetContent(), includes, vars)
		if err != nil {
			diags = append(diags, diagOf(err, fp))
			base := path.Base(fp)
			p.broken[strings.TrimSuffix(base, path.Ext(base))] = fp
			continue
		}
		rec := resourceRecord{Path: fp, Content: file.GetContent(), Includes: used}
		var name string
		switch {
		case f.DataSource != nil:
			name = f.DataSource.Name
			rec.Kind, rec.Name = kindDataSource, name
		case f.Pipe != nil:
			name = f.Pipe.Name
			rec.Kind, rec.Name = kindPipe, name
		}
		if !validName(name) {
			diags = append(diags, diag{pos: datafile.Pos{File: fp, Line: 1, Column: 1},
				msg: fmt.Sprintf("resource name %q (from the file name) must be letters, digits and underscores, not starting with a digit or __sluice", name)})
			continue
		}
		if serviceDataSources[name] {
			diags = append(diags, diag{pos: datafile.Pos{File: fp, Line: 1, Column: 1},
				msg: fmt.Sprintf("resource name %s is the workspace's service Data Source (tinybird.%s): rename the file", name, name)})
			continue
		}
		if other, dup := seen[name]; dup {
			diags = append(diags, diag{pos: datafile.Pos{File: fp, Line: 1, Column: 1},
				msg: fmt.Sprintf("resource %s is defined twice in this push (also by %s); Data Sources and Pipes share one namespace", name, other)})
			continue
		}
		seen[name] = fp
		if f.DataSource != nil {
			delete(p.pipes, name) // a name changes kind only by replacing the resource
			p.datasources[name] = &dsDef{rec: rec, ds: f.DataSource, pushed: true}
		} else {
			delete(p.datasources, name)
			p.pipes[name] = &pipeDef{rec: rec, pipe: f.Pipe, pushed: true}
		}
	}
	for _, name := range sortedNames(broken) {
		if _, replaced := seen[name]; replaced {
			p.replacedBroken[name] = broken[name].msg
		} else {
			diags = append(diags, broken[name])
		}
	}
	for name, d := range p.datasources {
		d.rec.Fingerprint = fingerprint(d.rec)
		if _, clash := p.pipes[name]; clash {
			diags = append(diags, diag{pos: d.ds.Pos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFERENCE, msg: fmt.Sprintf("%s is both a Data Source and a Pipe; names are shared", name)})
		}
	}
	for _, pd := range p.pipes {
		pd.rec.Fingerprint = fingerprint(pd.rec)
	}
	return p, diags
}

// diagOf turns a parse error into a diagnostic, keeping its position.
func diagOf(err error, file string) diag {
	var de *datafile.Error
	if errors.As(err, &de) {
		return diag{pos: de.Pos(), msg: de.Msg, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_SYNTAX}
	}
	return diag{pos: datafile.Pos{File: file, Line: 1, Column: 1}, msg: err.Error(), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_SYNTAX}
}

// fingerprint identifies a resource's definition: its file and the files it includes.
func fingerprint(r resourceRecord) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", r.Kind, r.Path, r.Content)
	keys := make([]string, 0, len(r.Includes))
	for k := range r.Includes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, r.Includes[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// sortedNames returns a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// outputNode is the node whose result a pipe exposes: its copy/materialized/endpoint/sink
// node, else its last node.
func (pd *pipeDef) outputNode() *nodeDef {
	for _, n := range pd.nodes {
		if n.node.Type != datafile.NodeStandard {
			return n
		}
	}
	if len(pd.nodes) == 0 {
		return nil
	}
	return pd.nodes[len(pd.nodes)-1]
}

// nodeNamed returns the pipe's node with that name.
func (pd *pipeDef) nodeNamed(name string) *nodeDef {
	for _, n := range pd.nodes {
		if n.node.Name == name {
			return n
		}
	}
	return nil
}

// pipeType is the type of the pipe's one non-standard node, or standard.
func (pd *pipeDef) pipeType() datafile.NodeType {
	for _, n := range pd.pipe.Nodes {
		if n.Type != datafile.NodeStandard {
			return n.Type
		}
	}
	return datafile.NodeStandard
}

// deployedPipe is the workspace's pipe named name, or NOT_FOUND.
func (p *project) deployedPipe(name string) (*pipeDef, error) {
	pd, ok := p.pipes[name]
	if !ok {
		return nil, notFound("pipe %q does not exist in workspace %s", name, p.ws.Name)
	}
	return pd, nil
}
