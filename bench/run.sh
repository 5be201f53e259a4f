#!/usr/bin/env bash
# Runs Sluice's benchmarks and writes their figures to bench/results/latest.json (and the raw
# `go test -bench` output beside it). Speed is reported as ratios against a baseline measured in
# the same run (see ../shared/docs/TARGETS.md); nothing here asserts a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
raw="$out/latest.txt"
: > "$raw"
# Each entry: module-relative package pattern and the benchmarks to run there.
benches=(
  "./platform/lifecycle/..."
)
for extra in bench/packages.d/*.list; do
  [ -f "$extra" ] && mapfile -t -O "${#benches[@]}" benches < <(grep -v '^#' "$extra")
done
for p in "${benches[@]}"; do
  [ -n "$p" ] || continue
  echo "==> go test -bench $p" | tee -a "$raw"
  go test -run '^$' -bench . -benchtime "${BENCHTIME:-1x}" -count=1 -timeout 60m $p 2>&1 | tee -a "$raw"
done
# Every "Benchmark... N x ns/op a unit b unit" line becomes one JSON object with its metrics.
awk '
  BEGIN { print "["; first = 1 }
  /^Benchmark/ {
    if (!first) print ","; first = 0
    printf "  {\"name\": \"%s\", \"iterations\": %s", $1, $2
    for (i = 3; i < NF; i += 2) printf ", \"%s\": %s", $(i+1), $i
    printf "}"
  }
  END { print "\n]" }
' "$raw" > "$out/latest.json"
echo
echo "figures: $out/latest.json"
grep '^Benchmark' "$raw" | column -t || true
