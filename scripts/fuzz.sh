#!/usr/bin/env bash
# Runs every fuzz target of the repository for the given time each (default 2m).
#
# A duration -fuzztime can end in a bare "context deadline exceeded" that is
# not a finding: a race in Go's fuzz coordinator at the deadline (go.dev/issue/75804,
# fixed in Go 1.27; this repository builds with 1.26). Such a run fails here only
# when it wrote a reproducer or when replaying the target's corpus fails; any
# other failure fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-2m}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
count() { { ls "$1" 2>/dev/null || true; } | wc -l; }
for m in platform services/catalog; do
  for pkg in $(cd "$m" && go list ./...); do
    dir=$(cd "$m" && go list -f '{{.Dir}}' "$pkg")
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
      echo "==> $pkg $f ($budget)"
      corpus="$dir/testdata/fuzz/$f"
      before=$(count "$corpus")
      if (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$budget" .) 2>&1 | tee "$out"; then
        continue
      fi
      after=$(count "$corpus")
      if [ "$after" = "$before" ] && grep -q '^    context deadline exceeded$' "$out" \
        && ! grep -q -e '^panic:' -e 'Failing input written' "$out"; then
        echo "==> $f: the run ended in the fuzz coordinator's deadline race (go.dev/issue/75804), no input was written; replaying the corpus"
        (cd "$dir" && go test -count=1 -run "^$f\$" .)
        continue
      fi
      exit 1
    done
  done
done
