package catalog

import (
	"context"
	"github.com/sluicehq/sluice/platform/opsevents"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// recorder keeps published events (the JetStream publisher and the ops-log table are tested
// in platform/opsevents and services/opslog; here only which events a push emits).
type recorder struct {
	mu  sync.Mutex
	evs []*opslogv1.OpsEvent
}

func (r *recorder) Publish(_ context.Context, ev *opslogv1.OpsEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		s := opsevents.EventTypeName(e.GetEventType()) + " " + e.GetDatasourceName() + " " + opsevents.ResultName(e.GetResult())
		if e.GetRows() > 0 {
			s += " rows=" + strconv.FormatUint(e.GetRows(), 10)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	r.evs = nil
	return out
}

func TestPushEmitsOpsEvents(t *testing.T) {
	s, wh := newTestService(t)
	rec := &recorder{}
	s.deps.Events = rec
	ctx := operatorCtx(t, s, "w")
	push := func(force bool, kv ...string) {
		t.Helper()
		if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files(kv...), Force: force}); err != nil {
			t.Fatal(err)
		}
	}
	push(false, "events.datasource", eventsDS, "daily.datasource", dailyDS, "daily_mv.pipe", dailyMV)
	if got := strings.Join(rec.take(), "; "); got != "create daily ok; create events ok" {
		t.Fatalf("events of the first push: %s", got)
	}
	push(false, "events.datasource", eventsDS, "daily.datasource", dailyDS, "daily_mv.pipe", dailyMV)
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("a no-op push emitted %v", got)
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QuoteIdent(s.cfg.DatabasePrefix+"w")+".events VALUES ('2024-01-01 00:00:00','a','buy',1), ('2024-01-01 00:00:00','b','buy',2)"); err != nil {
		t.Fatal(err)
	}
	push(false, "events.datasource", strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    x UInt8", 1), "daily.datasource", dailyDS, "daily_mv.pipe", dailyMV)
	if got := strings.Join(rec.take(), "; "); got != "alter events ok" {
		t.Fatalf("events of an alter: %s", got)
	}
	if _, err := s.DeletePipe(ctx, &catalogv1.DeletePipeRequest{Workspace: "w", Name: "daily_mv"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteDataSource(ctx, &catalogv1.DeleteDataSourceRequest{Workspace: "w", Name: "events"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.take(), "; "); got != "delete events ok rows=2" {
		t.Fatalf("events of deletes: %s", got)
	}
}
