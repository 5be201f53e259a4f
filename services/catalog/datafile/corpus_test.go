package datafile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/catalog/corpustest"
)

type corpusFile struct {
	path string
	src  []byte
}

func loadCorpus(t testing.TB) []corpusFile {
	t.Helper()
	var out []corpusFile
	err := filepath.WalkDir(corpustest.Dir(t), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || KindOf(p) == KindUnknown {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, corpusFile{path: p, src: src})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseCorpus(t *testing.T) {
	files := loadCorpus(t)
	if len(files) < 68 {
		t.Fatalf("corpus has %d datafiles, want at least 68", len(files))
	}
	var ds, pipes int
	for _, f := range files {
		got, err := Parse(f.path, f.src, Options{ReadFile: os.ReadFile})
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		switch got.Kind {
		case KindDataSource:
			ds++
			if len(got.DataSource.Columns) == 0 {
				t.Errorf("%s: no columns", f.path)
			}
			ddl := got.DataSource.DDL("`ws`.`" + got.DataSource.Name + "`")
			if !strings.Contains(ddl, "ENGINE = ") {
				t.Errorf("%s: DDL without engine:\n%s", f.path, ddl)
			}
		case KindPipe:
			pipes++
			for _, n := range got.Pipe.Nodes {
				if strings.TrimSpace(n.SQL) == "" {
					t.Errorf("%s: node %s has empty SQL", f.path, n.Name)
				}
			}
		}
	}
	t.Logf("parsed %d datasources and %d pipes", ds, pipes)
}
