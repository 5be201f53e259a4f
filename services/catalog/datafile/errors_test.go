package datafile

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestErrorGolden parses every file under testdata/errors and compares the
// file:line:col error with testdata/errors/<file>.golden.
func TestErrorGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "errors", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".golden") {
			cases = append(cases, p)
		}
	}
	sort.Strings(cases)
	if len(cases) < 25 {
		t.Fatalf("only %d error cases", len(cases))
	}
	for _, p := range cases {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel := filepath.ToSlash(p)
			_, perr := Parse(rel, src, Options{ReadFile: os.ReadFile, Env: map[string]string{"TABLE": "events"}})
			if perr == nil {
				t.Fatalf("%s: expected an error", p)
			}
			var de *Error
			if !errors.As(perr, &de) {
				t.Fatalf("error is %T, want *datafile.Error: %v", perr, perr)
			}
			if de.Line < 1 || de.Column < 1 || de.File == "" {
				t.Fatalf("error without position: %#v", de)
			}
			got := perr.Error() + "\n"
			golden := p + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("missing golden file (run with -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, want)
			}
		})
	}
}
