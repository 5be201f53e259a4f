package catalog

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestPushGolden pushes each folder under testdata/push into a fresh workspace (dry run) and
// compares the plan, or the refusal, with want.golden.
func TestPushGolden(t *testing.T) {
	s, _ := newTestService(t)
	dirs, err := filepath.Glob("testdata/push/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var fs []*catalogv1.Datafile
			err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err != nil || e.IsDir() || e.Name() == "want.golden" {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				fs = append(fs, &catalogv1.Datafile{Path: filepath.ToSlash(rel), Content: string(b)})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := s.Push(operatorCtx(t, s, "g_"+filepath.Base(dir)), &catalogv1.PushRequest{Workspace: "g_" + filepath.Base(dir), Files: fs, DryRun: true})
			got := renderOutcome(resp, err)
			golden := filepath.Join(dir, "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("outcome differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func renderOutcome(resp *catalogv1.PushResponse, err error) string {
	var b strings.Builder
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(&b, "refused: %s\n%s\n", st.Code(), st.Message())
		return b.String()
	}
	b.WriteString("plan:\n")
	for _, a := range resp.GetActions() {
		fmt.Fprintf(&b, "- %s %s %s: %s\n", a.GetKind(), a.GetResourceType(), a.GetName(), a.GetReason())
		for _, s := range a.GetStatements() {
			// Workspace databases differ per run; the statements are compared without them.
			fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(dbPattern(s), "\n", "\n    "))
		}
	}
	var ws []string
	for _, w := range resp.GetWarnings() {
		ws = append(ws, fmt.Sprintf("warning: %s:%d:%d: %s", w.GetPosition().GetFile(), w.GetPosition().GetLine(), w.GetPosition().GetColumn(), w.GetMessage()))
	}
	sort.Strings(ws)
	for _, w := range ws {
		b.WriteString(w + "\n")
	}
	return b.String()
}

var testDB = regexp.MustCompile("`t[0-9]+_[0-9]+_g_[a-z_]+`")

// dbPattern replaces the test's workspace database names with <db>.
func dbPattern(s string) string { return testDB.ReplaceAllString(s, "<db>") }
