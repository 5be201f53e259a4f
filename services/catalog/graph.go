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
		if e.GetFrom() == from && e.GetTo() == to && e.GetKind() == kind {
			return
		}
	}
	g.edges = append(g.edges, &catalogv1.GraphEdge{From: from, To: to, Kind: kind})
	g.out[from] = append(g.out[from], to)
	g.in[to] = append(g.in[to], from)
}

// buildGraph makes the graph of a project whose nodes are analysed.
func (p *project) buildGraph() *graph {
	g := newGraph()
	for _, name := range sortedNames(p.datasources) {
		g.vertices[name] = &catalogv1.GraphNode{Name: name, ResourceType: catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE}
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		g.vertices[name] = &catalogv1.GraphNode{Name: name, ResourceType: catalogv1.ResourceType_RESOURCE_TYPE_PIPE, NodeType: nodeTypeProto(pd.pipeType())}
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		trig := ""
		if pd.pipeType() == datafile.NodeMaterialized {
			trig, _ = p.trigger(pd)
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
				kind := catalogv1.GraphEdge_KIND_READS
				if r == trig {
					kind = catalogv1.GraphEdge_KIND_TRIGGERS
				}
				g.addEdge(r, name, kind)
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
		sort.Strings(g.out[e.GetFrom()])
		sort.Strings(g.in[e.GetTo()])
	}
	return g
}

// topoOrder orders the vertices upstream first; among vertices whose inputs are placed, the
// first by name goes first, so the order is deterministic. It returns a cycle when there is one.
func (g *graph) topoOrder() ([]string, []string) {
	indeg := map[string]int{}
	for name := range g.vertices {
		indeg[name] = 0
	}
	for _, e := range g.edges {
		indeg[e.GetTo()]++
	}
	var ready, order []string
	for name, d := range indeg {
		if d == 0 {
			ready = append(ready, name)
		}
	}
	for len(ready) > 0 {
		sort.Strings(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, m := range g.out[n] {
			indeg[m]--
			if indeg[m] == 0 {
				ready = append(ready, m)
			}
		}
	}
	if len(order) == len(g.vertices) {
		return order, nil
	}
	return nil, g.findCycle(indeg)
}

// findCycle walks from a vertex left with inputs until it comes back to one it has seen.
func (g *graph) findCycle(indeg map[string]int) []string {
	var start string
	for _, name := range sortedNames(indeg) {
		if indeg[name] > 0 {
			start = name
			break
		}
	}
	seen := map[string]int{}
	var path []string
	for n := start; ; {
		if i, ok := seen[n]; ok {
			return append(path[i:], n)
		}
		seen[n] = len(path)
		path = append(path, n)
		next := ""
		for _, m := range g.out[n] {
			if indeg[m] > 0 {
				next = m
				break
			}
		}
		if next == "" {
			return path
		}
		n = next
	}
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
		if keep[e.GetFrom()] && keep[e.GetTo()] {
			sub.addEdge(e.GetFrom(), e.GetTo(), e.GetKind())
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
	return fmt.Sprintf("the data flow has a cycle: %s", strings.Join(cycle, " -> "))
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
