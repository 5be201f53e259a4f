// Package corpustest locates the corpus of real datafiles the tests run against: the copy kept
// in the repository (testdata/corpus/tinybird, with MANIFEST.tsv naming each file's origin), or
// $SLUICE_CORPUS. The copy is in the repository so that a fresh clone tests the same files
// wherever it is checked out.
package corpustest

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the corpus folder, failing the test (never skipping it) when it is missing.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SLUICE_CORPUS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "testdata", "corpus", "tinybird")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("corpus not found at %s (set SLUICE_CORPUS): %v", dir, err)
	}
	return dir
}

// RepoRoot is the nearest folder above the working directory that holds go.work.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.work) not found above the test's directory")
		}
		dir = parent
	}
}
