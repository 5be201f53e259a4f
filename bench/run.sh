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
# bench/packages.d/*.list: one benchmark set per line, "<package> [<bench regexp> [<benchtime>]]"
# (regexp default ".", benchtime default $BENCHTIME or 1x); lines starting with # are comments.
status=0
while read -r pkg re bt; do
  [ -n "$pkg" ] || continue
  re=${re:-.}
  bt=${bt:-${BENCHTIME:-1x}}
  echo "==> go test -bench '$re' -benchtime $bt $pkg" | tee -a "$raw"
  go test -run '^$' -bench "$re" -benchtime "$bt" -count=1 -timeout 60m "$pkg" 2>&1 | tee -a "$raw" || status=1
done < <(cat bench/packages.d/*.list | grep -v '^[[:space:]]*#')
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
exit $status
