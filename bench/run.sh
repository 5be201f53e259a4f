#!/usr/bin/env bash
# Runs Sluice's benchmarks and prints the scoreboard: every speed target (bench/README.md)
# with its measured value, its target and met/missed, computed by bench/scoreboard from the
# benchmarks' metrics. Written to bench/results/: latest.txt (the raw `go test -bench`
# output), latest.json (the scoreboard and every benchmark's metrics), data/ (the raw data the
# benchmarks write for the plots) and the plots (*.svg). Speed is reported as ratios against a
# baseline measured in the same run; nothing here asserts a timing.
#
# BENCH=<extended regexp> runs only the sets of bench/packages.d whose line matches it, e.g.
# BENCH=Populate; the other figures are then "not measured".
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
raw="$out/latest.txt"
data="$out/data"
mkdir -p "$out"
rm -rf "$data" "$out"/*.svg "$out/latest.json"
mkdir -p "$data"
export SLUICE_BENCH_DATA="$PWD/$data"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
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
done < <(cat bench/packages.d/*.list | grep -v '^[[:space:]]*#' | grep -E -- "${BENCH:-.}" || true)
echo
go run ./bench/scoreboard -raw "$raw" -data "$data" -out "$out" -started "$started" -load-start "$load" || status=1
exit $status
