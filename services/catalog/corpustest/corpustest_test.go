package corpustest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyMatchesUpstream compares the repository's copy of the corpus with the product's
// reference corpus, when a checkout has it beside the repository (../shared/corpus/tinybird):
// a file added, changed or removed there must be brought into testdata/ too.
func TestCopyMatchesUpstream(t *testing.T) {
	upstream := filepath.Join(RepoRoot(t), "..", "shared", "corpus", "tinybird")
	if _, err := os.Stat(upstream); err != nil {
		t.Skipf("no reference corpus beside the repository (%s): nothing to compare", upstream)
	}
	read := func(root string) map[string][]byte {
		out := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			out[rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ours, theirs := read(filepath.Join(RepoRoot(t), "testdata", "corpus", "tinybird")), read(upstream)
	for name, b := range theirs {
		if mine, ok := ours[name]; !ok {
			t.Errorf("%s is in the reference corpus but not in testdata/corpus/tinybird", name)
		} else if !bytes.Equal(mine, b) {
			t.Errorf("%s differs from the reference corpus", name)
		}
	}
	for name := range ours {
		if _, ok := theirs[name]; !ok {
			t.Errorf("%s is in testdata/corpus/tinybird but not in the reference corpus", name)
		}
	}
	if len(ours) < 60 {
		t.Errorf("only %d corpus files", len(ours))
	}
}
