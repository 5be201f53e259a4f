package datafile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/catalog/corpustest"
)

// FuzzParseDatafile checks that parsing never panics and that every error is
// a *Error with a line and column.
func FuzzParseDatafile(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "errors", "*"))
	for _, s := range seeds {
		if src, err := os.ReadFile(s); err == nil {
			f.Add(filepath.Ext(s) == ".pipe", src)
		}
	}
	_ = filepath.WalkDir(corpustest.Dir(f), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && KindOf(p) != KindUnknown {
			if src, err := os.ReadFile(p); err == nil {
				f.Add(KindOf(p) == KindPipe, src)
			}
		}
		return nil
	})
	f.Add(true, []byte("NODE n\nSQL >\n    %\n    SELECT {{ x }}\nTYPE copy\nCOPY_SCHEDULE */5 1-2 * JAN *\n"))
	f.Add(false, []byte("SCHEMA >\n    `a` Nullable(String) `json:$.a` DEFAULT 'x' CODEC(ZSTD(1)),\nENGINE_SORTING_KEY a\n"))
	for _, h := range hostileDataSources {
		f.Add(false, []byte(strings.Replace(h.src, "«", "", 1)))
	}
	f.Add(false, []byte("SCHEMA >\n    `a\\` String ALIAS file('x') --` String,\n    `t` DateTime TTL t\nINDEXES >\n    `i` a TYPE set(1)\nENGINE SummingMergeTree\nENGINE_COLUMNS (a)\nENGINE_TTL t + INTERVAL 1 DAY GROUP BY a SET b = max(b)\nENGINE_SETTINGS x = 'y'\n"))
	f.Fuzz(func(t *testing.T, pipe bool, src []byte) {
		path := "f/x.datasource"
		if pipe {
			path = "f/x.pipe"
		}
		read := func(string) ([]byte, error) { return []byte("NODE inc\nSQL >\n    SELECT 1\n"), nil }
		res, err := Parse(path, src, Options{ReadFile: read, Env: map[string]string{"A": "b"}})
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not *datafile.Error: %v", err, err)
			}
			if de.Line < 1 || de.Column < 1 {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		if ds := res.DataSource; ds != nil {
			// What the parser accepts, the final check of the statement accepts: both read the
			// same parts, one from the datafile, one from the DDL built from it.
			ddl := ds.DDL("`db`.`t`")
			if err := CheckStatement(ddl, "`db`.`t`"); err != nil {
				t.Fatalf("the DDL of an accepted datafile fails the final check: %v\n%s", err, ddl)
			}
			if err := ds.CheckColumns(); err != nil {
				var de *Error
				if !errors.As(err, &de) || de.Line < 1 || de.Column < 1 {
					t.Fatalf("column check error without position: %v", err)
				}
			}
		}
	})
}

// BenchmarkParseCorpus parses every corpus datafile per iteration and reports
// datafiles/s.
func BenchmarkParseCorpus(b *testing.B) {
	files := loadCorpus(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, f := range files {
			if _, err := Parse(f.path, f.src, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(files))/b.Elapsed().Seconds(), "datafiles/s")
}
