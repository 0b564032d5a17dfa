#!/usr/bin/env bash
# bench/ab.sh: bench/overhead.sh's ratio for two `chest` binaries, alternately, in one run.
#
#   bench/ab.sh BINARY_A BINARY_B [extra `chest demo` args]
#
# Runs ROUNDS (default 3) rounds; each round measures A then B the way bench/overhead.sh does
# (PAIRS alternating /bare and /api-endpoint pairs on a fresh database), and prints both
# overhead ratios. Last lines: the median ratio of each binary and B's median ÷ A's. Give the
# same binary twice for an A/A pair (the noise). Knobs as bench/lib.sh (PAIRS defaults to 8 here);
# DB=URL gives the demo another chest (default a fresh SQLite file), e.g. DB='memory://?keep=0'.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BINARY_A BINARY_B [demo args]" >&2; exit 2; }
a=$1 b=$2
shift 2
PAIRS=${PAIRS:-8}
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
ratios_a=() ratios_b=()
one() {
  rm -f "$bench_work"/bench.db* "$bench_work"/chest-demo.spool*
  # In the scratch folder, where a demo writing to a non-file chest keeps its spool.
  bench_start "chest demo ($1)" env -C "$bench_work" "$(realpath "$1")" demo --addr 127.0.0.1:0 \
    --db "${DB:-$bench_work/bench.db}" "${@:2}" >&2
  bench_pairs "$url/bare" "$url/api-endpoint" >&2
  bench_stop
  awk -v c="$(median "${layered[@]}")" -v b="$(median "${bare[@]}")" 'BEGIN {printf "%.3f", c / b}'
}
for round in $(seq "$ROUNDS"); do
  ra=$(one "$a" "$@") rb=$(one "$b" "$@")
  ratios_a+=("$ra") ratios_b+=("$rb")
  echo "round $round: A $ra  B $rb"
done
ma=$(median "${ratios_a[@]}") mb=$(median "${ratios_b[@]}")
echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS pairs a run, $ROUNDS rounds, demo args: ${*:-(default)}"
echo "A: $a  ratios ${ratios_a[*]}  median $ma"
echo "B: $b  ratios ${ratios_b[*]}  median $mb"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "b_over_a=%.3f\n", b / a}'
