package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func recorder(events *[]string, failStart string) func(name string, deps ...string) Module {
	return func(name string, deps ...string) Module {
		return Module{
			Name: name, Deps: deps,
			Init: func(context.Context) error { *events = append(*events, "init "+name); return nil },
			Start: func(context.Context) error {
				if name == failStart {
					return errors.New("boom")
				}
				*events = append(*events, "start "+name)
				return nil
			},
			Stop: func(context.Context) error { *events = append(*events, "stop "+name); return nil },
		}
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestOrderStartStop(t *testing.T) {
	var ev []string
	m := recorder(&ev, "")
	table := []Module{m("svc", "server", "nats"), m("nats"), m("server"), m("other", "svc"), m("unused")}
	mgr, err := New(table, []string{"other"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mgr.Order(), []string{"nats", "server", "svc", "other"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Stop(0); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"init nats", "init server", "init svc", "init other",
		"start nats", "start server", "start svc", "start other",
		"stop other", "stop svc", "stop server", "stop nats",
	}
	if !slices.Equal(ev, want) {
		t.Fatalf("events\n%v\nwant\n%v", ev, want)
	}
}

// After orders modules that both run, against the name order, and runs nothing by itself.
func TestAfterOrdersOnlyModulesThatRun(t *testing.T) {
	var ev []string
	m := recorder(&ev, "")
	withAfter := func(mod Module, after ...string) Module { mod.After = after; return mod }
	table := []Module{
		m("a-engine"),
		withAfter(m("b-bus"), "a-engine"),
		withAfter(m("c-server", "b-bus"), "a-engine"),
		withAfter(m("d-svc", "c-server"), "z-peer"),
		m("z-peer"),
	}
	mgr, err := New(table, []string{"d-svc", "a-engine"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mgr.Order(), []string{"a-engine", "b-bus", "c-server", "d-svc"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v (z-peer is only an After: it must not run)", got, want)
	}
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Stop(0); err != nil {
		t.Fatal(err)
	}
	want := []string{"stop d-svc", "stop c-server", "stop b-bus", "stop a-engine"}
	if got := ev[len(ev)-4:]; !slices.Equal(got, want) {
		t.Fatalf("stop events %v, want %v", got, want)
	}

	// The same edges named the other way round: the name order would start y-engine last,
	// the After puts it first.
	ev = nil
	mgr, err = New([]Module{m("y-engine"), withAfter(m("b-server"), "y-engine")}, []string{"b-server", "y-engine"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mgr.Order(), []string{"y-engine", "b-server"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	mgr, err = New([]Module{m("y-engine"), withAfter(m("b-server"), "y-engine")}, []string{"b-server"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mgr.Order(), []string{"b-server"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestStartFailureStopsWhatIsLiveAndNamesModule(t *testing.T) {
	var ev []string
	m := recorder(&ev, "svc")
	mgr, err := New([]Module{m("nats"), m("svc", "nats"), m("late", "svc")}, []string{"late"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	err = mgr.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "module svc: start: boom") {
		t.Fatalf("err = %v", err)
	}
	if !slices.Contains(ev, "stop nats") || !slices.Contains(ev, "stop late") {
		t.Fatalf("live modules not stopped: %v", ev)
	}
}

func TestResolutionErrors(t *testing.T) {
	cases := []struct {
		table   []Module
		targets []string
		want    string
	}{
		{[]Module{{Name: "a"}}, []string{"b"}, `unknown target "b" (known: a)`},
		{[]Module{{Name: "a", Deps: []string{"x"}}}, []string{"a"}, `module "a" depends on unknown module "x"`},
		{[]Module{{Name: "a", Deps: []string{"b"}}, {Name: "b", Deps: []string{"a"}}}, []string{"a"}, "cycle: a -> b -> a"},
		{[]Module{{Name: "a"}, {Name: "a"}}, []string{"a"}, `module "a" is defined twice`},
		{[]Module{{Name: "a", After: []string{"x"}}}, []string{"a"}, `module "a" is ordered after unknown module "x"`},
		// A cycle through After edges is refused only when both modules run, and named.
		{[]Module{{Name: "a", After: []string{"b"}}, {Name: "b", Deps: []string{"c"}}, {Name: "c", After: []string{"a"}}}, []string{"a", "b"}, "module order cycle: a -> b -> c -> a"},
		{[]Module{{Name: "server", Deps: []string{"nats"}}, {Name: "nats", After: []string{"server"}}}, []string{"server"}, "module order cycle: nats -> server -> nats"},
	}
	for _, tc := range cases {
		_, err := New(tc.table, tc.targets, quiet)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
	// The same After cycle with one side not run is no cycle.
	if _, err := New([]Module{{Name: "a", After: []string{"b"}}, {Name: "b", After: []string{"a"}}}, []string{"a"}, quiet); err != nil {
		t.Errorf("After of a module that does not run: %v", err)
	}
}
