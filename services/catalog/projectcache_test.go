package catalog

import (
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// TestProjectParsedOncePerRevision: reading a deployed workspace twice parses it once (the
// same project); a push and a delete each make the next read parse it again, and what it
// reads is the change.
func TestProjectParsedOncePerRevision(t *testing.T) {
	s, _ := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files("events.datasource", eventsDS)}); err != nil {
		t.Fatal(err)
	}
	load := func() *project {
		t.Helper()
		p, err := s.projectOf(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := load()
	if again := load(); again != first {
		t.Error("an unchanged workspace was parsed again")
	}
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files(
		"events.datasource", eventsDS, "daily.datasource", dailyDS, "daily_mv.pipe", dailyMV)}); err != nil {
		t.Fatal(err)
	}
	pushed := load()
	if pushed == first || pushed.pipes["daily_mv"] == nil || pushed.datasources["daily"] == nil {
		t.Fatalf("after a push: the cached project (%v) or one without the pushed pipe", pushed == first)
	}
	if load() != pushed {
		t.Error("the pushed workspace was parsed again without a change")
	}
	if _, err := s.DeletePipe(ctx, &catalogv1.DeletePipeRequest{Workspace: "w", Name: "daily_mv"}); err != nil {
		t.Fatal(err)
	}
	if after := load(); after == pushed || after.pipes["daily_mv"] != nil {
		t.Error("after a delete: the pipe is still in the project read")
	}
	// Another workspace is its own entry.
	if _, err := s.CreateWorkspace(operatorCtx(t, s), &catalogv1.CreateWorkspaceRequest{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.projectOf(ctx, "v"); err != nil || len(p.pipes)+len(p.datasources) != 0 {
		t.Errorf("an empty workspace: %v, %v", p, err)
	}
}
