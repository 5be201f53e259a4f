package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/services/catalog/datafile"
	"github.com/sluicehq/sluice/services/catalog/template"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
)

// analyze parses every node's template, finds what each node reads, and checks the rules of
// pipes and Data Sources. Problems outside Sluice's scope are warnings, not errors.
func (p *project) analyze() []diag {
	var diags []diag
	for _, name := range sortedNames(p.datasources) {
		d := p.datasources[name]
		if !d.pushed {
			continue
		}
		for _, o := range d.ds.OutOfScope {
			diags = append(diags, diag{pos: o.Pos, warning: true, msg: fmt.Sprintf(
				"%s: %s connectors are outside Sluice's scope; the Data Source is created and must be loaded another way (INSERT)", o.Keyword, o.Feature)})
		}
		if d.ds.ForwardQuery != "" {
			diags = append(diags, diag{pos: d.ds.ForwardQueryPos, warning: true, msg: "FORWARD_QUERY is ignored: Sluice changes tables with ALTER, or recreates them with --force"})
		}
		if len(d.ds.SharedWith) > 0 {
			diags = append(diags, diag{pos: d.ds.Pos, warning: true, msg: "SHARED_WITH is ignored: workspaces do not share Data Sources in Sluice"})
		}
		diags = append(diags, tokenDiags(kindDataSource, d.ds.Tokens)...)
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		pd.nodes = nil
		for i := range pd.pipe.Nodes {
			n := &pd.pipe.Nodes[i]
			nd := &nodeDef{pipe: pd, node: n}
			tmpl, err := template.Parse(n.SQL)
			if err != nil {
				diags = append(diags, templateDiag(n, err))
				tmpl = nil
			}
			nd.tmpl = tmpl
			pd.nodes = append(pd.nodes, nd)
		}
		diags = append(diags, p.checkPipe(pd)...)
	}
	// References need every pipe's nodes, so they come after all templates are parsed.
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		for _, nd := range pd.nodes {
			if nd.tmpl == nil {
				continue
			}
			res, err := nd.tmpl.Execute(nil, template.RenderOptions{Check: true})
			if err != nil {
				if pd.pushed {
					diags = append(diags, templateDiag(nd.node, err))
				}
				continue
			}
			an, err := chsql.Analyze(res.SQL, earlierNodes(nd))
			if err == nil {
				_, err = chsql.Normalize(res.SQL)
			}
			if err != nil {
				pos, msg := nd.node.SQLPos, err.Error()
				var ce *chsql.Error
				if errors.As(err, &ce) {
					pos, msg = refPos(nd.node, res, ce.Offset), ce.Msg
				}
				diags = append(diags, diag{pos: pos, msg: fmt.Sprintf("node %s: cannot read its SQL: %s", nd.node.Name, msg)})
				continue
			}
			if pd.pushed {
				for _, pr := range checkStatement(an, true) {
					diags = append(diags, diag{pos: refPos(nd.node, res, pr.off), msg: fmt.Sprintf("node %s: %s", nd.node.Name, pr.msg)})
				}
			}
			seen := map[string]bool{}
			for _, ref := range an.Refs {
				var rerr error
				name := ref.Name
				switch ref.Kind {
				case chsql.RefNode:
				case chsql.RefTableFunction:
					rerr = checkTableFunction(ref)
					name = ""
				default:
					name, rerr = p.checkTableRef(ref)
				}
				if rerr != nil {
					if pd.pushed || !errors.As(rerr, new(*refError)) {
						diags = append(diags, diag{pos: refPos(nd.node, res, ref.Start), msg: fmt.Sprintf("node %s: %v", nd.node.Name, rerr)})
					} else {
						// A deployed pipe lost something it reads: this push removes it.
						diags = append(diags, diag{pos: datafile.Pos{File: pd.rec.Path, Line: 1, Column: 1}, msg: fmt.Sprintf("deployed pipe %s, node %s: %v", pd.pipe.Name, nd.node.Name, rerr)})
					}
					continue
				}
				if name != "" && !seen[name] {
					seen[name] = true
					nd.reads = append(nd.reads, name)
				}
			}
			for _, t := range res.Tables {
				if !seen[t] {
					seen[t] = true
					nd.reads = append(nd.reads, t)
				}
			}
			sort.Strings(nd.reads)
		}
	}
	return diags
}

// checkPipe applies the rules of a pipe's node types.
func (p *project) checkPipe(pd *pipeDef) []diag {
	if !pd.pushed {
		return nil
	}
	var diags []diag
	var special []*datafile.Node
	for _, nd := range pd.nodes {
		if nd.node.Type != datafile.NodeStandard {
			special = append(special, nd.node)
		}
	}
	if len(special) > 1 {
		diags = append(diags, diag{pos: special[1].Pos, msg: fmt.Sprintf(
			"pipe %s has %d output nodes (%s and %s): a pipe has at most one materialized, copy, endpoint or sink node", pd.pipe.Name, len(special), special[0].Name, special[1].Name)})
	}
	diags = append(diags, tokenDiags(kindPipe, pd.pipe.Tokens)...)
	for _, nd := range pd.nodes {
		n := nd.node
		switch n.Type {
		case datafile.NodeMaterialized:
			if n.Datasource == "" {
				diags = append(diags, diag{pos: n.Pos, msg: fmt.Sprintf("materialized node %s needs DATASOURCE <target Data Source>", n.Name)})
			} else if _, ok := p.datasources[n.Datasource]; !ok {
				diags = append(diags, diag{pos: keyPos(n, "DATASOURCE"), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFERENCE, msg: fmt.Sprintf("missing resource: DATASOURCE %s of materialized node %s is neither in this push nor deployed in workspace %s", n.Datasource, n.Name, p.ws.Name)})
			}
			if n.Engine.Set {
				diags = append(diags, diag{pos: n.Engine.Pos, warning: true, msg: "ENGINE options on a materialized node are ignored: define the target in its own .datasource file"})
			}
		case datafile.NodeCopy:
			if n.TargetDatasource == "" {
				diags = append(diags, diag{pos: n.Pos, msg: fmt.Sprintf("copy node %s needs TARGET_DATASOURCE <target Data Source>", n.Name)})
			} else if _, ok := p.datasources[n.TargetDatasource]; !ok {
				diags = append(diags, diag{pos: keyPos(n, "TARGET_DATASOURCE"), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_REFERENCE, msg: fmt.Sprintf("missing resource: TARGET_DATASOURCE %s of copy node %s is neither in this push nor deployed in workspace %s", n.TargetDatasource, n.Name, p.ws.Name)})
			}
			if s := n.CopySchedule; s != "" && s != datafile.OnDemand && nd.tmpl != nil {
				var missing []string
				for _, prm := range nd.tmpl.Parameters() {
					if !prm.Implicit && !prm.HasDefault && prm.Type != "" {
						missing = append(missing, prm.Name)
					}
				}
				if len(missing) > 0 {
					diags = append(diags, diag{pos: keyPos(n, "COPY_SCHEDULE"), msg: fmt.Sprintf(
						"scheduled copy node %s: parameters %s have no default; scheduled runs use defaults, so give each one (or use COPY_SCHEDULE @on-demand)", n.Name, strings.Join(missing, ", "))})
				}
			}
		case datafile.NodeSink:
			diags = append(diags, diag{pos: n.Pos, warning: true, msg: fmt.Sprintf("sink node %s is stored but not run: exports are outside Sluice's scope", n.Name)})
		}
	}
	return diags
}

func keyPos(n *datafile.Node, key string) datafile.Pos {
	if p, ok := n.KeyPos[key]; ok {
		return p
	}
	return n.Pos
}

// templateDiag places a template error in the datafile.
func templateDiag(n *datafile.Node, err error) diag {
	var te *template.Error
	if errors.As(err, &te) {
		return diag{pos: n.SQLPosition(te.Line, te.Column), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_TEMPLATE, msg: fmt.Sprintf("node %s: %s", n.Name, te.Msg)}
	}
	var ue *template.UserError
	if errors.As(err, &ue) {
		return diag{pos: n.SQLPosition(ue.Line, ue.Column), code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_TEMPLATE, msg: fmt.Sprintf("node %s: %s", n.Name, ue.Message)}
	}
	return diag{pos: n.SQLPos, code: commonv1.DiagnosticCode_DIAGNOSTIC_CODE_TEMPLATE, msg: fmt.Sprintf("node %s: %v", n.Name, err)}
}

// trigger is the Data Source whose inserts fire a materialized pipe: the left-most table of
// its query, following earlier nodes and, as the hosted platform does, other pipes it reads
// (FROM some_endpoint_pipe fires on inserts into that pipe's own left-most Data Source).
func (p *project) trigger(pd *pipeDef) (string, bool) {
	nd := pd.outputNode()
	for depth := 0; nd != nil && nd.tmpl != nil && depth < 32; depth++ {
		res, err := nd.tmpl.Execute(nil, template.RenderOptions{Check: true})
		if err != nil {
			return "", false
		}
		an, err := chsql.Analyze(res.SQL, earlierNodes(nd))
		if err != nil {
			return "", false
		}
		left, ok := an.LeftTable()
		if !ok {
			return "", false
		}
		if left.Kind == chsql.RefNode {
			nd = nd.pipe.nodeNamed(left.Name)
			continue
		}
		if left.Database != "" && left.Database != p.ws.Database {
			return "", false
		}
		if _, ok := p.datasources[left.Name]; ok {
			return left.Name, true
		}
		if other, ok := p.pipes[left.Name]; ok && left.Kind == chsql.RefTable {
			nd = other.outputNode()
			continue
		}
		return "", false
	}
	return "", false
}

// refPos places a byte offset of a node's rendered SQL in the datafile: the render's source
// map gives the template's line and column (exact inside SQL text, the {{ }} inside a value),
// which SQLPosition turns into the file's (it accounts for the dedent).
func refPos(n *datafile.Node, res *template.Result, off int) datafile.Pos {
	if off < 0 || off > len(res.SQL) {
		return n.SQLPos
	}
	line, col, ok := res.SourcePos(off)
	if !ok {
		return n.SQLPos
	}
	return n.SQLPosition(line, col)
}
