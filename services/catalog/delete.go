package catalog

import (
	"context"
	"fmt"
	"sort"
	"strings"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/auth"
)

// remove deletes resources through the same plan-and-apply path as a push: views first, then
// tables. A Data Source that pipes read or write is refused unless force, which removes those
// pipes too.
func (s *Service) remove(ctx context.Context, workspace string, kind resourceKind, name string, force bool) ([]string, error) {
	ctx, ws, unlock, err := s.lockWorkspace(ctx, workspace)
	if err != nil {
		return nil, err
	}
	defer unlock()
	deployed, err := s.store.resources(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	if _, ok := deployed[kind][name]; !ok {
		what := "Data Source"
		if kind == kindPipe {
			what = "pipe"
		}
		return nil, notFound("%s %q does not exist in workspace %s", what, name, ws.Name)
	}
	old, _ := s.buildProject(ws, deployed, nil, nil, false)
	old.analyze()
	g := old.buildGraph()
	removed := []string{name}
	if kind == kindDataSource {
		var users []string
		for user := range g.reach(name, g.in) {
			if _, isPipe := old.pipes[user]; isPipe && g.hasEdge(user, name) {
				users = append(users, user)
			}
		}
		for _, user := range g.out[name] {
			if _, isPipe := old.pipes[user]; isPipe {
				users = append(users, user)
			}
		}
		users = dedupeSorted(users)
		if len(users) > 0 && !force {
			return nil, &preconditionError{fmt.Sprintf("Data Source %s is used by pipes %s: remove them first, or delete with --force to remove them too", name, strings.Join(users, ", "))}
		}
		var drops []auth.Scope
		for _, u := range users {
			drops = append(drops, auth.Scope{Type: auth.PipesDrop, Resource: u})
		}
		if err := auth.Require(ctx, ws.Name, drops...); err != nil {
			return nil, err
		}
		removed = append(users, name)
	}
	trimmed := map[resourceKind]map[string]resourceRecord{kindDataSource: {}, kindPipe: {}}
	for k, recs := range deployed {
		for n, r := range recs {
			trimmed[k][n] = r
		}
	}
	for _, r := range removed {
		delete(trimmed[kindPipe], r)
		delete(trimmed[kindDataSource], r)
	}
	next, _ := s.buildProject(ws, trimmed, nil, nil, false)
	diags := next.analyze()
	if errs := errorsOf(diags); len(errs) > 0 {
		return nil, &preconditionError{"removing " + name + " would leave: " + errs.Error()}
	}
	order, _ := next.buildGraph().topoOrder()
	pl, _ := makePlan(next, old, order, false, func(*pipeDef) (string, error) { return "", nil })
	start := s.deps.Now()
	rowsBefore := s.rowsBefore(ctx, ws, pl)
	writes, err := s.records(ctx, ws, next, old, nil, pl)
	if err != nil {
		return nil, err
	}
	if err := s.deploy(ctx, ws.Name, pl, writes); err != nil {
		return nil, err
	}
	s.publish(ctx, pushEvents(ws, next, old, pl, start, s.deps.Now().Sub(start), "", nil, rowsBefore))
	s.announce(ws.Name)
	// Grants of TOKEN lines of what was removed go with it.
	changes, err := s.planTokens(ctx, ws.Name, next)
	if err == nil {
		var removals []tokenChange
		for _, c := range changes {
			if len(c.added) == 0 {
				removals = append(removals, c)
			}
		}
		_, _, err = s.applyTokens(ctx, removals)
	}
	if err != nil {
		return removed, fmt.Errorf("removed %s, but not the grants of its TOKEN lines (push again to finish): %w", strings.Join(removed, ", "), err)
	}
	return removed, nil
}

func (g *graph) hasEdge(from, to string) bool {
	for _, m := range g.out[from] {
		if m == to {
			return true
		}
	}
	return false
}

func dedupeSorted(in []string) []string {
	sort.Strings(in)
	var out []string
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// DeleteDataSource drops a Data Source.
func (s *Service) DeleteDataSource(ctx context.Context, req *catalogv1.DeleteDataSourceRequest) (*catalogv1.DeleteDataSourceResponse, error) {
	removed, err := s.remove(ctx, req.GetWorkspace(), kindDataSource, req.GetName(), req.GetForce())
	if err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.DeleteDataSourceResponse{Removed: removed}, nil
}

// DeletePipe removes a pipe and its view.
func (s *Service) DeletePipe(ctx context.Context, req *catalogv1.DeletePipeRequest) (*catalogv1.DeletePipeResponse, error) {
	if _, err := s.remove(ctx, req.GetWorkspace(), kindPipe, req.GetName(), false); err != nil {
		return nil, grpcError(err)
	}
	return &catalogv1.DeletePipeResponse{}, nil
}
