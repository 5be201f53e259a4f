#!/usr/bin/env bash
# Runs every fuzz target of the repository for the given time each (default 2m).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-2m}
for m in platform services/catalog; do
  for pkg in $(cd "$m" && go list ./...); do
    dir=$(cd "$m" && go list -f '{{.Dir}}' "$pkg")
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
      echo "==> $pkg $f ($budget)"
      (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$budget" .)
    done
  done
done
