#!/usr/bin/env bash
# bench/overhead.sh: what chest's layer costs next to bare axum, measured side by side in one run.
#
# Builds the release `chest` binary, starts `chest demo` on a free loopback port with a fresh
# database, warms up, then runs wrk alternately on /bare (same handler, no layer) and
# GET /api-endpoint (layer + SQLite chest). Prints each run's req/s, the per-pair ratios, and as
# its last line: overhead_ratio=<median chest req/s ÷ median bare req/s>.
#
#   bench/overhead.sh [extra `chest demo` args, e.g. --inline]
#
# Knobs (env): PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s).
# The machine is shared and noisy: many short alternating pairs give steadier medians than a few
# long ones (bare against bare already spreads ±5% per pair here).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-16} DURATION=${DURATION:-2s} THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-32} WARMUP=${WARMUP:-3s}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --release -q -p chest-cli
work=$(mktemp -d)
demo_log="$work/demo.log"
./target/release/chest demo --addr 127.0.0.1:0 --db "$work/bench.db" "$@" >"$work/demo.out" 2>"$demo_log" &
demo=$!
trap 'kill -TERM $demo 2>/dev/null; wait $demo 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$work/demo.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/demo.out" | head -n1)
[ -n "$url" ] || { echo "chest demo did not start:" >&2; cat "$demo_log" >&2; exit 1; }

rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" "$2" | awk '/Requests\/sec/ {print $2}'; }
rps "$WARMUP" "$url/bare" >/dev/null
rps "$WARMUP" "$url/api-endpoint" >/dev/null

bare=() layered=() ratios=()
for i in $(seq "$PAIRS"); do
  b=$(rps "$DURATION" "$url/bare")
  c=$(rps "$DURATION" "$url/api-endpoint")
  r=$(awk -v c="$c" -v b="$b" 'BEGIN {printf "%.3f", c / b}')
  bare+=("$b") layered+=("$c") ratios+=("$r")
  printf 'pair %2d: bare %10.0f req/s   chest %10.0f req/s   ratio %s\n' "$i" "$b" "$c" "$r"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bare[@]}") mc=$(median "${layered[@]}")
rows=$(./target/release/chest stats --db "$work/bench.db" --json --name transaction | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS alternating pairs, demo args: ${*:-(default)}"
echo "median bare req/s:  $mb"
echo "median chest req/s: $mc"
echo "per-pair ratio: median $(median "${ratios[@]}"), min $(printf '%s\n' "${ratios[@]}" | sort -g | head -n1), max $(printf '%s\n' "${ratios[@]}" | sort -g | tail -n1)"
echo "rows written (transaction): ${rows:-0}"
awk -v c="$mc" -v b="$mb" 'BEGIN {printf "overhead_ratio=%.3f\n", c / b}'
