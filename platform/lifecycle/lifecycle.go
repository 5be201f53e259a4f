// Package lifecycle runs a process's modules in dependency order.
//
// A module is one part of a process (the NATS connection, the ClickHouse connection, the gRPC
// server, a service). Each module names what it needs (Deps) and what it must start after and
// stop before when the process runs it too (After). Every module is initialised, then started,
// in an order where those come first; stop runs in the reverse order, so a module never
// outlives something it uses. A cycle is refused when the manager is built, naming its
// modules. The table of modules, with their dependencies, is the one place that says how a
// process is put together (see cmd/sluiced/app/modules.go).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"
)

// Module is one part of a process.
type Module struct {
	// Name is unique in the table; it appears in every error about the module.
	Name string
	// Deps are the modules this one needs: they run whenever this one runs, start before it
	// and stop after it.
	Deps []string
	// After are modules that, when the process runs them too, start before this one and stop
	// after it; unlike Deps, they are not run for this module's sake. (The gRPC server stops
	// before the ClickHouse engine in a process that has one; a scheduler-only process has
	// none.)
	After []string
	// Init builds the module (may be nil). It runs for every module before any Start, in
	// dependency order, so that a module can register with another (a gRPC service with the
	// gRPC server) before that one starts serving.
	Init func(ctx context.Context) error
	// Start begins the module's work (may be nil). It returns once the module is ready; long
	// work runs in goroutines the module owns and ends in Stop.
	Start func(ctx context.Context) error
	// Stop ends the module's work and releases its resources (may be nil). It runs for every
	// module whose Init succeeded, also when its Start did not run, and must return by the
	// context's deadline.
	Stop func(ctx context.Context) error
}

// Manager starts and stops a set of modules.
type Manager struct {
	modules map[string]Module
	order   []string
	started []string
	log     *slog.Logger
}

// New resolves the dependencies of the modules named by targets (and their dependencies,
// transitively) and returns a manager for them. Unknown modules and cycles (through Deps and
// After alike) are errors that name the modules.
func New(table []Module, targets []string, log *slog.Logger) (*Manager, error) {
	byName := make(map[string]Module, len(table))
	for _, m := range table {
		if _, dup := byName[m.Name]; dup {
			return nil, fmt.Errorf("module %q is defined twice", m.Name)
		}
		byName[m.Name] = m
	}
	for _, m := range table {
		for _, a := range m.After {
			if _, ok := byName[a]; !ok {
				return nil, fmt.Errorf("module %q is ordered after unknown module %q", m.Name, a)
			}
		}
	}
	need := map[string]bool{}
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		if slices.Contains(path, name) {
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(path, name), " -> "))
		}
		m, ok := byName[name]
		if !ok {
			if len(path) == 0 {
				return fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(names(table), ", "))
			}
			return fmt.Errorf("module %q depends on unknown module %q", path[len(path)-1], name)
		}
		if need[name] {
			return nil
		}
		for _, d := range m.Deps {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		need[name] = true
		return nil
	}
	for _, t := range targets {
		if err := visit(t, nil); err != nil {
			return nil, err
		}
	}
	order, err := topoOrder(before(byName, need))
	if err != nil {
		return nil, err
	}
	return &Manager{modules: byName, order: order, log: log}, nil
}

// Order is the start order; stop runs it backwards.
func (m *Manager) Order() []string { return slices.Clone(m.order) }

// Start initialises every module, then starts them in order. If a module fails, the modules
// already started are stopped (in reverse order) and the error names the failing module.
func (m *Manager) Start(ctx context.Context) error {
	for _, name := range m.order {
		mod := m.modules[name]
		if mod.Init != nil {
			if err := mod.Init(ctx); err != nil {
				_ = m.stopStarted(context.Background(), 10*time.Second)
				return fmt.Errorf("module %s: init: %w", name, err)
			}
		}
		// From here on the module is live: Stop runs for it even if a later Init or Start fails.
		m.started = append(m.started, name)
	}
	for _, name := range m.order {
		mod := m.modules[name]
		if mod.Start == nil {
			continue
		}
		t0 := time.Now()
		if err := mod.Start(ctx); err != nil {
			_ = m.stopStarted(context.Background(), 10*time.Second)
			return fmt.Errorf("module %s: start: %w", name, err)
		}
		m.log.Debug("module started", "module", name, "elapsed", time.Since(t0))
	}
	return nil
}

// Stop stops the started modules in reverse order, each within timeout. It returns every
// error, joined; a module that fails to stop does not keep the others running.
func (m *Manager) Stop(timeout time.Duration) error {
	return m.stopStarted(context.Background(), timeout)
}

func (m *Manager) stopStarted(ctx context.Context, timeout time.Duration) error {
	var errs []error
	for i := len(m.started) - 1; i >= 0; i-- {
		name := m.started[i]
		mod := m.modules[name]
		if mod.Stop == nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		if err := mod.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("module %s: stop: %w", name, err))
		}
		cancel()
		m.log.Debug("module stopped", "module", name, "elapsed", time.Since(t0))
	}
	m.started = nil
	return errors.Join(errs...)
}

// before lists, for every module the process runs, the modules that must start before it: its
// Deps, and those of its After that run too.
func before(byName map[string]Module, need map[string]bool) map[string][]string {
	edges := make(map[string][]string, len(need))
	for name := range need {
		m := byName[name]
		edges[name] = slices.Clone(m.Deps)
		for _, a := range m.After {
			if need[a] {
				edges[name] = append(edges[name], a)
			}
		}
	}
	return edges
}

// topoOrder orders the modules so that those each must start after come first; among modules
// that are free to go, the first by name goes first, so the order never depends on map
// iteration. Correctness never rests on that tie-break: every order that matters is an edge.
func topoOrder(edges map[string][]string) ([]string, error) {
	indeg := map[string]int{}
	users := map[string][]string{}
	for name, deps := range edges {
		for _, d := range deps {
			indeg[name]++
			users[d] = append(users[d], name)
		}
	}
	var ready []string
	for name := range edges {
		if indeg[name] == 0 {
			ready = append(ready, name)
		}
	}
	var order []string
	for len(ready) > 0 {
		sort.Strings(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, u := range users[n] {
			indeg[u]--
			if indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) != len(edges) {
		return nil, fmt.Errorf("module order cycle: %s", strings.Join(findCycle(edges), " -> "))
	}
	return order, nil
}

// findCycle returns one cycle of edges, its first module repeated at the end (a -> b -> a:
// a starts after b, which starts after a).
func findCycle(edges map[string][]string) []string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path, cycle []string
	var walk func(n string) bool
	walk = func(n string) bool {
		state[n] = onPath
		path = append(path, n)
		for _, d := range edges[n] {
			switch state[d] {
			case onPath:
				i := slices.Index(path, d)
				cycle = append(slices.Clone(path[i:]), d)
				return true
			case unseen:
				if walk(d) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return false
	}
	starts := make([]string, 0, len(edges))
	for n := range edges {
		starts = append(starts, n)
	}
	sort.Strings(starts)
	for _, n := range starts {
		if state[n] == unseen && walk(n) {
			return cycle
		}
	}
	return nil
}

func names(table []Module) []string {
	out := make([]string, 0, len(table))
	for _, m := range table {
		out = append(out, m.Name)
	}
	return out
}
