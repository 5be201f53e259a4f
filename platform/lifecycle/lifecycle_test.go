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
	}
	for _, tc := range cases {
		_, err := New(tc.table, tc.targets, quiet)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}
