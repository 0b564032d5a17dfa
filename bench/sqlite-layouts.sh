#!/usr/bin/env bash
# bench/sqlite-layouts.sh: what SQLite itself charges per row for chest's row, under chest's table
# (L0, the same statements as the SQLite chest's writer) and leaner layouts (integer times and
# type codes, no AUTOINCREMENT, fewer indexes, a requests table beside a values table behind a
# view, texts bound without SQLite's copy, bigger pages), and the floor with no index at all.
# Its own crate (bench/sqlite-layouts, outside the workspace); every run checks the row count.
#
#   bench/sqlite-layouts.sh instr [N] [LAYOUT...]          # callgrind, writer thread: (2N - N) / N
#   bench/sqlite-layouts.sh time [ROWS] [RUNS] [LAYOUT...] # ROWS (1,200,000) into a fresh file,
#                                                          # RUNS (5) alternated passes, each run
#                                                          # under flock /tmp/bench.lock: the
#                                                          # writer thread's CPU and rows/s
#   bench/sqlite-layouts.sh list                           # the layouts
#
# Honours CARGO_TARGET_DIR (else bench/sqlite-layouts/target).
set -euo pipefail
cd "$(dirname "$0")/sqlite-layouts"
(cargo build --release -q --locked)
bin="${CARGO_TARGET_DIR:-target}/release/sqlite-layouts"
[ "${bin:0:1}" = / ] || bin="$PWD/$bin"
mode=${1:-instr}
shift || true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
all_layouts() { "$bin" list | awk '{print $1}'; }
case "$mode" in
list) "$bin" list ;;
instr)
  n=${1:-15000}
  shift || true
  layouts=("$@")
  [ ${#layouts[@]} -gt 0 ] || mapfile -t layouts < <(all_layouts)
  # writer LAYOUT ROWS: the writer thread's instruction count (callgrind's second thread).
  writer() {
    rm -f "$work"/threads* "$work"/db*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/threads" \
      "$bin" "$1" "$2" "$work/db" >"$work/stdout" 2>"$work/log" ||
      { cat "$work/log" "$work/stdout" >&2; exit 1; }
    grep -q 'count=ok' "$work/stdout" || { cat "$work/stdout" >&2; exit 1; }
    sed -n 's/^summary: //p' "$work/threads-02"
  }
  for layout in "${layouts[@]}"; do
    once=$(writer "$layout" "$n")
    twice=$(writer "$layout" $((2 * n)))
    printf '%-11s instructions_per_row=%d\n' "$layout" $(((twice - once) / n))
  done ;;
time)
  rows=${1:-1200000} runs=${2:-5}
  shift 2 || true
  layouts=("$@")
  [ ${#layouts[@]} -gt 0 ] || mapfile -t layouts < <(all_layouts)
  for run in $(seq "$runs"); do
    for layout in "${layouts[@]}"; do
      flock /tmp/bench.lock "$bin" "$layout" "$rows" "$work/db" | sed "s/^/run=$run /"
      rm -f "$work"/db*
    done
  done | tee "$work/runs"
  python3 - "$work/runs" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    runs.setdefault(f["layout"], []).append(f)
print(f"{'layout':11} {'cpu_us_per_row median (min-max)':34} {'rows_per_s median':>18}")
for name, rs in runs.items():
    cpu = sorted(float(r["cpu_us_per_row"]) for r in rs)
    rate = statistics.median(float(r["rows_per_s"]) for r in rs)
    print(f"{name:11} {statistics.median(cpu):.2f} ({cpu[0]:.2f}-{cpu[-1]:.2f}){'':20} {rate:>12,.0f}")
PY
  ;;
*) echo "usage: bench/sqlite-layouts.sh instr|time|list ..." >&2; exit 2 ;;
esac
