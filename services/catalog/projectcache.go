package catalog

import "sync"

// projectCache holds the last parsed project of each workspace with the revision of the
// workspace's records it was read at (store.resourcesRevision): a call that reads a deployed
// workspace (render a node, plan a populate, a cut-over, a graph) costs one revision read,
// and a workspace is parsed and analysed once per change rather than on every call. A project
// is never changed once built, so callers share it. The revision is read before the records:
// a change landing in between caches newer records under an older revision, which the next
// call's revision replaces.
type projectCache struct {
	mu sync.Mutex
	m  map[string]cachedProject
}

type cachedProject struct {
	ws  workspaceRecord
	rev uint64
	p   *project
}

// maxCachedProjects bounds the cache (past it, one workspace's project makes room).
const maxCachedProjects = 256

func (c *projectCache) get(ws workspaceRecord, rev uint64) *project {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[ws.Name]
	if !ok || e.rev != rev || e.ws.Database != ws.Database || !e.ws.CreateTime.Equal(ws.CreateTime) {
		return nil
	}
	return e.p
}

func (c *projectCache) put(ws workspaceRecord, rev uint64, p *project) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedProject{}
	}
	if _, ok := c.m[ws.Name]; !ok && len(c.m) >= maxCachedProjects {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[ws.Name] = cachedProject{ws: ws, rev: rev, p: p}
}
