#!/usr/bin/env bash
# bench/sqlite-writer-ab.sh: two builds of chest/examples/sqlite_instructions.rs, alternately:
# each writes ROWS records (3 per request) into a new SQLite file in batches of BATCH; prints the
# median process CPU per row and rows/s of each, and per pair B ÷ A (CPU, then wall time).
# Give the same binary twice for an A/A pair.
#
#   cargo build --release -p chest --features sqlite --example sqlite_instructions  # per commit
#   bench/sqlite-writer-ab.sh OLD_BINARY NEW_BINARY
#
# Knobs (env): ROWS (600000), BATCH (5000), ROUNDS (6).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
rows=${ROWS:-600000} batch=${BATCH:-5000} rounds=${ROUNDS:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  for side in A B; do
    bin=$1
    [ "$side" = A ] || bin=$2
    rm -rf "$work/db" && mkdir "$work/db"
    /usr/bin/time -f "$side %U %S %e" "$bin" "$work/db" "$rows" "$batch" 2>>"$work/times"
  done
done
python3 - "$work/times" "$rows" <<'PY'
import statistics as st, sys
runs = {'A': [], 'B': []}
for line in open(sys.argv[1]):
    side, user, system, wall = line.split()
    runs[side].append((float(user) + float(system), float(wall)))
rows = int(sys.argv[2])
for side, r in runs.items():
    print(f"{side}: CPU {st.median(c for c, _ in r) / rows * 1e6:.3f} µs/row, "
          f"{rows / st.median(w for _, w in r):.0f} rows/s")
for i, what in ((0, 'cpu'), (1, 'wall')):
    pairs = [b[i] / a[i] for a, b in zip(runs['A'], runs['B'])]
    print(f"{what}_b_over_a=median {st.median(pairs):.3f} (min {min(pairs):.3f}, max {max(pairs):.3f})")
PY
