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

// FuzzDataSourceFields fuzzes each field of a .datasource that reaches DDL on its own line of
// an otherwise valid file — a column's type, default expression and codec, an index, the
// engine, its keys, TTL, settings and arguments — so that the fuzzer spends its time inside
// them. Whatever the parser accepts must give DDL that passes the final check (which reads it
// back from its own tokens and analyses every part again), and every refusal must name a
// line of the file and a column.
func FuzzDataSourceFields(f *testing.F) {
	f.Add("String", "DEFAULT", "upper(s)", "ZSTD(1)", "s TYPE bloom_filter(0.01) GRANULARITY 1", "ReplacingMergeTree", "toYYYYMM(d)", "s, d", "d + INTERVAL 1 DAY", "index_granularity = 8192", "v")
	f.Add("Enum8('a' = 1)", "ALIAS", "s IN ('x')", "Delta(4), LZ4", "i s TYPE set(10)", "SummingMergeTree", "", "tuple()", "d + INTERVAL 1 DAY DELETE WHERE s = 'x'", "a = 'b', c = -1.5", "(v)")
	f.Add("Nullable(String)", "MATERIALIZED", "(SELECT 1)", "ZSTD(file('x'))", "i file('x') TYPE minmax", "Join", "a IN t", "(SELECT 1)", "d TO DISK 'x'", "x = 1 AS SELECT 1", "file('x')")
	f.Add("String", "DEFAULT", "`file`/**/('x')", "NONE", "i s TYPE set((SELECT 1))", "File(x)", "$$x$$", "s /* /* */ , (SELECT 1) -- */", "d + (SELECT 1)", "x = y", "v, v")
	f.Fuzz(func(t *testing.T, typ, kind, expr, codec, index, engine, partition, sorting, ttl, settings, ver string) {
		line := func(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }
		src := "SCHEMA >\n" +
			"    `s` String,\n" +
			"    `d` DateTime,\n" +
			"    `v` UInt64,\n" +
			"    `c` " + line(typ) + " " + line(kind) + " " + line(expr) + " CODEC(" + line(codec) + ")\n" +
			"INDEXES >\n" +
			"    " + line(index) + "\n" +
			"ENGINE " + line(engine) + "\n" +
			"ENGINE_PARTITION_KEY " + line(partition) + "\n" +
			"ENGINE_SORTING_KEY " + line(sorting) + "\n" +
			"ENGINE_TTL " + line(ttl) + "\n" +
			"ENGINE_SETTINGS " + line(settings) + "\n" +
			"ENGINE_VER " + line(ver) + "\n" +
			"ENGINE_COLUMNS " + line(ver) + "\n"
		lines := strings.Count(src, "\n")
		ds, err := ParseDataSource("f/x.datasource", []byte(src), Options{})
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Line < 1 || de.Line > lines || de.Column < 1 {
				t.Fatalf("error without a place in the file: %v", err)
			}
			return
		}
		ddl := ds.DDL("`db`.`t`")
		if err := CheckStatement(ddl, "`db`.`t`"); err != nil {
			t.Fatalf("the DDL of an accepted datafile fails the final check: %v\n%s", err, ddl)
		}
		if err := ds.CheckColumns(); err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Line < 1 || de.Line > lines || de.Column < 1 {
				t.Fatalf("column check error without a place in the file: %v", err)
			}
		}
	})
}
