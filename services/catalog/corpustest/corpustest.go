// Package corpustest locates the corpus of real datafiles the tests run against: the
// repository's sibling folder shared/corpus/tinybird, or $SLUICE_CORPUS.
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
		dir = filepath.Join(repoRoot(t), "..", "shared", "corpus", "tinybird")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("corpus not found at %s (set SLUICE_CORPUS): %v", dir, err)
	}
	return dir
}

// repoRoot is the nearest folder above the working directory that holds go.work.
func repoRoot(t testing.TB) string {
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
