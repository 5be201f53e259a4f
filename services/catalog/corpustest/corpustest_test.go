package corpustest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
		mine, ok := ours[name]
		switch {
		case !ok:
			t.Errorf("%s is in the reference corpus but not in testdata/corpus/tinybird", name)
		case name == "MANIFEST.tsv":
			// The repository's manifest extends the reference one: its lines come first.
			if !bytes.HasPrefix(mine, b) {
				t.Errorf("MANIFEST.tsv does not start with the reference corpus's manifest")
			}
		case !bytes.Equal(mine, b):
			t.Errorf("%s differs from the reference corpus", name)
		}
	}
	// Files the repository adds to the reference corpus must say where they come from.
	manifest, err := os.ReadFile(filepath.Join(RepoRoot(t), "testdata", "corpus", "tinybird", "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range ours {
		if _, ok := theirs[name]; ok || name == "MANIFEST.tsv" {
			continue
		}
		owner, rest, _ := strings.Cut(filepath.ToSlash(name), "__")
		repo, path, _ := strings.Cut(rest, "/")
		if !bytes.Contains(manifest, []byte(owner+"/"+repo+"\t"+path+"\t")) {
			t.Errorf("%s is in testdata/corpus/tinybird but neither in the reference corpus nor in MANIFEST.tsv", name)
		}
	}
	if len(ours) < 60 {
		t.Errorf("only %d corpus files", len(ours))
	}
}
