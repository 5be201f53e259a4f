package catalog

import (
	"fmt"
	"sort"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// graph is the data flow of a workspace: Data Sources and Pipes as vertices; a pipe reads Data
// Sources and other pipes, and a materialized or copy pipe writes its target.
type graph struct {
	vertices map[string]*catalogv1.GraphNode
	edges    []*catalogv1.GraphEdge
	out      map[string][]string // downstream neighbours
	in       map[string][]string // upstream neighbours
}

func newGraph() *graph {
	return &graph{vertices: map[string]*catalogv1.GraphNode{}, out: map[string][]string{}, in: map[string][]string{}}
}

func (g *graph) addEdge(from, to string, kind catalogv1.GraphEdge_Kind) {
	for _, e := range g.edges {
		if e.GetUpstream() == from && e.GetDownstream() == to && e.GetKind() == kind {
			return
		}
	}
	g.edges = append(g.edges, &catalogv1.GraphEdge{Upstream: from, Downstream: to, Kind: kind})
	g.out[from] = append(g.out[from], to)
	g.in[to] = append(g.in[to], from)
}

// buildGraph makes the graph of a project whose nodes are analysed.
func (p *project) buildGraph() *graph {
	g := newGraph()
	for _, name := range sortedNames(p.datasources) {
		g.vertices[name] = &catalogv1.GraphNode{Name: name, ResourceType: catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, Id: p.datasources[name].rec.ID}
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		g.vertices[name] = &catalogv1.GraphNode{Name: name, ResourceType: catalogv1.ResourceType_RESOURCE_TYPE_PIPE, NodeType: nodeTypeProto(pd.pipeType()), Id: pd.rec.ID}
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		trig := ""
		if pd.pipeType() == datafile.NodeMaterialized {
			trig, _ = p.trigger(pd)
		}
		if _, ok := g.vertices[trig]; ok && trig != "" {
			// Also when the view reaches its trigger through another pipe.
			g.addEdge(trig, name, catalogv1.GraphEdge_KIND_TRIGGERS)
		}
		for _, n := range pd.nodes {
			for _, r := range n.reads {
				if pd.nodeNamed(r) != nil {
					continue // an earlier node of the same pipe
				}
				if _, ok := g.vertices[r]; !ok {
					continue
				}
				if readsOwnTarget(pd, r) {
					continue // the spec's populate case 2: not a cycle (see selfread.go)
				}
				if r == trig {
					continue
				}
				g.addEdge(r, name, catalogv1.GraphEdge_KIND_READS)
			}
			switch n.node.Type {
			case datafile.NodeMaterialized:
				if _, ok := p.datasources[n.node.Datasource]; ok {
					g.addEdge(name, n.node.Datasource, catalogv1.GraphEdge_KIND_MATERIALIZES)
				}
			case datafile.NodeCopy:
				if _, ok := p.datasources[n.node.TargetDatasource]; ok {
					g.addEdge(name, n.node.TargetDatasource, catalogv1.GraphEdge_KIND_COPIES)
				}
			}
		}
	}
	for _, e := range g.edges {
		sort.Strings(g.out[e.GetUpstream()])
		sort.Strings(g.in[e.GetDownstream()])
	}
	return g
}

// flowsData reports whether an edge carries inserted rows by itself: a Data Source's inserts
// fire the materialized views it triggers, and each view writes its target. Reads (joins,
// endpoint pipes) and copies do not: a copy runs as a batch that nothing fires.
func flowsData(k catalogv1.GraphEdge_Kind) bool {
	return k == catalogv1.GraphEdge_KIND_TRIGGERS || k == catalogv1.GraphEdge_KIND_MATERIALIZES
}

// topoOrder orders the vertices upstream first; among vertices whose inputs are placed, the
// first by name goes first, so the order is deterministic. Only chains of materialized views
// must not loop (see triggerCycles); an incremental copy that reads its own target, or copies
// that feed each other, close loops of reads and copies, which the order breaks at the first
// vertex by name whose triggering inputs are placed. It returns the trigger cycles when there
// are any.
func (g *graph) topoOrder() ([]string, [][]string) {
	if cycles := g.triggerCycles(); len(cycles) > 0 {
		return nil, cycles
	}
	indeg := map[string]int{}  // every edge
	hardIn := map[string]int{} // edges that carry inserted rows
	for name := range g.vertices {
		indeg[name], hardIn[name] = 0, 0
	}
	for _, e := range g.edges {
		indeg[e.GetDownstream()]++
		if flowsData(e.GetKind()) {
			hardIn[e.GetDownstream()]++
		}
	}
	placed := map[string]bool{}
	var order []string
	names := sortedNames(g.vertices)
	for len(order) < len(names) {
		next := ""
		for _, n := range names {
			if !placed[n] && indeg[n] == 0 {
				next = n
				break
			}
		}
		if next == "" { // a loop of reads and copies: break it where the rows' flow allows
			for _, n := range names {
				if !placed[n] && hardIn[n] == 0 {
					next = n
					break
				}
			}
		}
		if next == "" {
			return nil, g.triggerCycles()
		}
		placed[next] = true
		order = append(order, next)
		for _, e := range g.edges {
			if e.GetUpstream() != next || placed[e.GetDownstream()] {
				continue
			}
			indeg[e.GetDownstream()]--
			if flowsData(e.GetKind()) {
				hardIn[e.GetDownstream()]--
			}
		}
	}
	return order, nil
}

// triggerCycles returns every loop of materialized views: Data Sources whose inserts fire views
// that, through their targets, fire the first again. Each loop names only its own members, in
// the order the rows flow, starting and ending with the first member by name.
func (g *graph) triggerCycles() [][]string {
	out := map[string][]string{}
	for _, e := range g.edges {
		if flowsData(e.GetKind()) {
			out[e.GetUpstream()] = append(out[e.GetUpstream()], e.GetDownstream())
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	// Tarjan's strongly connected components over the edges that carry rows.
	index, low := map[string]int{}, map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var comps [][]string
	next := 0
	var visit func(v string)
	visit = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range out[v] {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			comps = append(comps, comp)
		}
	}
	for _, v := range sortedNames(g.vertices) {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	var cycles [][]string
	for _, comp := range comps {
		in := map[string]bool{}
		for _, v := range comp {
			in[v] = true
		}
		sort.Strings(comp)
		selfLoop := false
		for _, w := range out[comp[0]] {
			selfLoop = selfLoop || w == comp[0]
		}
		if len(comp) == 1 && !selfLoop {
			continue
		}
		cycles = append(cycles, loopThrough(comp[0], out, in))
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i][0] < cycles[j][0] })
	return cycles
}

// loopThrough finds a shortest loop from start back to start inside one component.
func loopThrough(start string, out map[string][]string, in map[string]bool) []string {
	prev := map[string]string{}
	queue := []string{start}
	seen := map[string]bool{}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range out[v] {
			if !in[w] {
				continue
			}
			if w == start {
				path := []string{start}
				for u := v; u != start; u = prev[u] {
					path = append(path, u)
				}
				// path is start, then the loop backwards: reverse all but the first.
				for i, j := 1, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return append(path, start)
			}
			if !seen[w] {
				seen[w] = true
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return []string{start, start}
}

// reach returns the vertices reachable from name along dir (out: downstream, in: upstream).
func (g *graph) reach(name string, dir map[string][]string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{name}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, m := range dir[n] {
			if !seen[m] {
				seen[m] = true
				stack = append(stack, m)
			}
		}
	}
	return seen
}

// subgraph keeps name and what is upstream and downstream of it.
func (g *graph) subgraph(name string) *graph {
	keep := map[string]bool{name: true}
	for n := range g.reach(name, g.out) {
		keep[n] = true
	}
	for n := range g.reach(name, g.in) {
		keep[n] = true
	}
	sub := newGraph()
	for n := range keep {
		sub.vertices[n] = g.vertices[n]
	}
	for _, e := range g.edges {
		if keep[e.GetUpstream()] && keep[e.GetDownstream()] {
			sub.addEdge(e.GetUpstream(), e.GetDownstream(), e.GetKind())
		}
	}
	return sub
}

func (g *graph) proto() *catalogv1.GetGraphResponse {
	order, _ := g.topoOrder()
	resp := &catalogv1.GetGraphResponse{Edges: g.edges, TopologicalOrder: order}
	for _, n := range sortedNames(g.vertices) {
		resp.Nodes = append(resp.Nodes, g.vertices[n])
	}
	return resp
}

func cycleMessage(cycle []string) string {
	return fmt.Sprintf("materialized views fire each other in a loop: %s (inserts into each Data Source fire the next view, which writes the next Data Source); copies and reads may loop, materialized views may not", strings.Join(cycle, " -> "))
}

func nodeTypeProto(t datafile.NodeType) catalogv1.NodeType {
	switch t {
	case datafile.NodeEndpoint:
		return catalogv1.NodeType_NODE_TYPE_ENDPOINT
	case datafile.NodeMaterialized:
		return catalogv1.NodeType_NODE_TYPE_MATERIALIZED
	case datafile.NodeCopy:
		return catalogv1.NodeType_NODE_TYPE_COPY
	case datafile.NodeSink:
		return catalogv1.NodeType_NODE_TYPE_SINK
	default:
		return catalogv1.NodeType_NODE_TYPE_STANDARD
	}
}
