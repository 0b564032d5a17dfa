#!/usr/bin/env bash
# bench/durability.sh: what each durability level costs, side by side in one run.
#
# Builds the release `chest` binary and starts three `chest demo` servers on free loopback ports,
# each with a fresh SQLite database: `--durability memory`, `process` and `disk`. Warms them up,
# then runs wrk alternately on /bare (no layer, on the memory server) and GET /api-endpoint of
# each server, PAIRS times. Prints each round, then per level: the median req/s, the median and
# spread of the per-round ratio to bare, the server's CPU per request, and the records/s it put
# into SQLite while loaded (rows ÷ seconds of load). Last lines: ratio_<level>=<median ratio>.
#
#   bench/durability.sh [extra `chest demo` args, e.g. --no-prometheus]
#
# Knobs (env): PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s); see
# bench/lib.sh. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release -q -p chest-cli
chest="${CARGO_TARGET_DIR:-target}/release/chest"
levels=(memory process disk)
declare -A urls pids
stop_all() {
  for level in "${!pids[@]}"; do
    kill -TERM "${pids[$level]}" 2>/dev/null || true
    wait "${pids[$level]}" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_all; rm -rf "$bench_work"' EXIT
for level in "${levels[@]}"; do
  bench_start "chest demo --durability $level" "$chest" demo --addr 127.0.0.1:0 \
    --db "$bench_work/$level.db" --durability "$level" "$@"
  urls[$level]=$url pids[$level]=$bench_server
  mv "$bench_work/server.out" "$bench_work/$level.out"
  # This script stops its servers itself (stop_all): each starts as bench_start's first.
  bench_servers=()
done
bench_server=""

bare_url="${urls[memory]}/bare"
rps "$WARMUP" "$bare_url" >/dev/null
for level in "${levels[@]}"; do rps "$WARMUP" "${urls[$level]}/api-endpoint" >/dev/null; done
# Rows already written by the warm-up, so that the load's records/s counts only the rounds.
rows() { "$chest" stats --db "$bench_work/$1.db" --json --name transaction | sed -n 's/.*"count":\([0-9]*\).*/\1/p'; }
declare -A before
sleep 2
for level in "${levels[@]}"; do before[$level]=$(rows "$level"); done

bare=() bare_cpu=()
declare -A rates ratios cpus
for i in $(seq "$PAIRS"); do
  bench_server=${pids[memory]}
  read -r b bc < <(measure "$DURATION" "$bare_url")
  bare+=("$b") bare_cpu+=("$bc")
  line=$(printf 'round %2d: bare %8.0f' "$i" "$b")
  for level in "${levels[@]}"; do
    bench_server=${pids[$level]}
    read -r c cc < <(measure "$DURATION" "${urls[$level]}/api-endpoint")
    r=$(awk -v c="$c" -v b="$b" 'BEGIN {printf "%.3f", c / b}')
    rates[$level]+="$c " ratios[$level]+="$r " cpus[$level]+="$cc "
    line+=$(printf '   %s %8.0f (%s)' "$level" "$c" "$r")
  done
  echo "$line"
done
bench_server=""
sleep 3 # the last records' linger
seconds=$(awk -v p="$PAIRS" -v d="${DURATION%s}" 'BEGIN {print p * d}')
echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS rounds (bare, memory, process, disk), demo args: ${*:-(default)}"
echo "median bare req/s: $(median "${bare[@]}"), server CPU $(median "${bare_cpu[@]}") µs/request"
for level in "${levels[@]}"; do
  read -ra rs <<<"${ratios[$level]}"
  read -ra cs <<<"${cpus[$level]}"
  read -ra ns <<<"${rates[$level]}"
  written=$(( $(rows "$level") - ${before[$level]} ))
  echo "$level: median $(median "${ns[@]}") req/s, ratio median $(median "${rs[@]}") (min $(printf '%s\n' "${rs[@]}" | sort -g | head -n1), max $(printf '%s\n' "${rs[@]}" | sort -g | tail -n1)), CPU $(median "${cs[@]}") µs/request, into SQLite $(awk -v w="$written" -v s="$seconds" 'BEGIN {printf "%.0f", w / s}') records/s under load"
done
for level in "${levels[@]}"; do
  read -ra rs <<<"${ratios[$level]}"
  echo "ratio_$level=$(median "${rs[@]}")"
done
