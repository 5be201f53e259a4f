package main_test

import (
	"context"
	"strings"
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// TestPushRefusesAScheduleThatNeverRuns: a copy pipe scheduled on 30 February is refused at
// push with the file, line and column of its COPY_SCHEDULE and the fields that never meet, and
// nothing is deployed; the same pipe on the 29th deploys.
func TestPushRefusesAScheduleThatNeverRuns(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWorkspace("feb")
	if _, err := sys.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatal(err)
	}
	files := func(day string) []*catalogv1.Datafile {
		return []*catalogv1.Datafile{
			{Path: "datasources/t.datasource", Content: "SCHEMA >\n    `x` UInt64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"x\"\n"},
			{Path: "pipes/feb.pipe", Content: "NODE n\nSQL >\n    SELECT 1 AS x\n\nTYPE COPY\nTARGET_DATASOURCE t\nCOPY_SCHEDULE 0 0 " + day + " 2 *\n"},
		}
	}
	_, err := sys.Catalog.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("30")})
	if err == nil || !strings.Contains(err.Error(), "pipes/feb.pipe:7:15") || !strings.Contains(err.Error(), `day of month field "30" and month field "2" never meet`) {
		t.Fatalf("push of COPY_SCHEDULE 0 0 30 2 *: %v", err)
	}
	if resp, err := sys.Catalog.ListPipes(ctx, &catalogv1.ListPipesRequest{Workspace: ws}); err != nil || len(resp.GetPipes()) != 0 {
		t.Fatalf("after the refused push: pipes %v, %v", resp.GetPipes(), err)
	}
	if _, err := sys.Catalog.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("29")}); err != nil {
		t.Fatalf("push of COPY_SCHEDULE 0 0 29 2 *: %v", err)
	}
}
