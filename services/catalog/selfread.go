package catalog

import "github.com/sluicehq/sluice/services/catalog/datafile"

// readsOwnTarget reports whether r is the target of the pipe's materialized node: a view that
// joins its own destination (the populate spec's case 2, for example to look up earlier rows).
// Data does not flow around that loop — the view's inserts into its target do not fire it
// again — so the read is left out of the graph instead of being refused as a cycle; the
// MATERIALIZES edge already orders the pipe with its target.
func readsOwnTarget(pd *pipeDef, r string) bool {
	if pd.pipeType() != datafile.NodeMaterialized {
		return false
	}
	for _, n := range pd.nodes {
		if n.node.Type == datafile.NodeMaterialized && n.node.Datasource == r {
			return true
		}
	}
	return false
}
