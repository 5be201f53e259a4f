package lifecycle

import (
	"context"
	"testing"
)

// BenchmarkStartStop measures the manager's own cost for a table the size of sluiced's.
func BenchmarkStartStop(b *testing.B) {
	table := []Module{{Name: "nats"}, {Name: "server"}, {Name: "peers", Deps: []string{"server"}},
		{Name: "catalog", Deps: []string{"server", "nats"}}, {Name: "scheduler", Deps: []string{"server", "nats", "peers"}},
		{Name: "executor", Deps: []string{"server", "nats", "peers"}}, {Name: "opslog", Deps: []string{"server", "nats"}},
		{Name: "all", Deps: []string{"catalog", "scheduler", "executor", "opslog"}}}
	for b.Loop() {
		m, err := New(table, []string{"all"}, quiet)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		_ = m.Stop(0)
	}
}
