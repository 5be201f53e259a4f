package catalog

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog/corpustest"
)

// corpusProjects are the folders of the corpus that hold datasources/, pipes/, ... folders.
func corpusProjects(t testing.TB) []string {
	root := corpustest.Dir(t)
	set := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			switch d.Name() {
			case "datasources", "pipes", "materializations", "copies", "endpoints":
				set[filepath.Dir(p)] = true
			}
		}
		return nil
	})
	var out []string
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func readProject(t testing.TB, dir string) []*catalogv1.Datafile {
	var fs []*catalogv1.Datafile
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(p) {
		case ".datasource", ".pipe", ".incl":
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, p)
			fs = append(fs, &catalogv1.Datafile{Path: filepath.ToSlash(rel), Content: string(b)})
		}
		return nil
	})
	return fs
}

// TestCorpusDataSourcesDeploy creates every corpus Data Source (each project's .datasource
// files on their own) and checks the tables ClickHouse holds afterwards. Whole projects are
// pushed through the CLI in cmd/sluiced.
func TestCorpusDataSourcesDeploy(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s)
	total := 0
	for i, dir := range corpusProjects(t) {
		var ds []*catalogv1.Datafile
		for _, f := range readProject(t, dir) {
			if strings.HasSuffix(f.GetPath(), ".datasource") {
				ds = append(ds, f)
			}
		}
		if len(ds) == 0 {
			continue
		}
		ws := fmt.Sprintf("corpus%d", i)
		operatorCtx(t, s, ws)
		_, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: ds})
		if err != nil {
			t.Errorf("%s: %s", dir, status.Convert(err).Message())
			continue
		}
		db := warehouse.QuoteString(s.cfg.DatabasePrefix + ws)
		got := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+db+" AND NOT endsWith(name, '_quarantine')")
		quarantines := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+db+" AND endsWith(name, '_quarantine')")
		if got != int64(len(ds)) || quarantines != int64(len(ds)) {
			t.Errorf("%s: %d tables and %d quarantine tables in ClickHouse, want %d of each", dir, got, quarantines, len(ds))
		}
		total += len(ds)
	}
	if total < 17 {
		t.Fatalf("only %d corpus Data Sources deployed", total)
	}
}
