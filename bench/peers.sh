#!/usr/bin/env bash
# bench/peers.sh: chest's recorded route against the peers a user would pick instead, in one run.
#
# Starts `chest demo` (its defaults: batched SQLite + the Prometheus chest) and the peers binary
# (bench/peers: axum-prometheus's layer, tower-http's TraceLayer writing one JSON line per
# request, and a route layer that does nothing), then, PAIRS times, runs wrk on each route right
# after its own binary's /bare:
#   chest /bare, chest /api-endpoint, peers /bare, peers /axum-prometheus, peers /trace-json,
#   peers /identity (axum's price for any route layer: the floor of every layered route here)
# (alternating the order of the two binaries from pair to pair). Each route's ratio is its req/s
# over its own binary's /bare in the same pair; `bare_vs_bare` (peers' /bare over chest's) is the
# A/A pair: two bare axum servers. Last line: chest_vs_axum_prometheus=<chest ratio ÷
# axum-prometheus ratio> (medians of the per-pair ratios).
#
#   bench/peers.sh [extra `chest demo` args, e.g. --no-prometheus]
#
# Knobs (env): CHEST (a `chest` binary to measure instead of building this tree's, e.g. an
# older commit's), PAIRS (default 12), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s);
# see bench/lib.sh. Honours CARGO_TARGET_DIR (the peers crate is built outside the workspace, into the
# same target dir when it is set).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-12}
. bench/lib.sh

[ -n "${CHEST:-}" ] || cargo build --release -q -p chest-cli
(cd bench/peers && cargo build --release -q --locked)
chest=${CHEST:-${CARGO_TARGET_DIR:-target}/release/chest}
peers="${CARGO_TARGET_DIR:-bench/peers/target}/release/chest-peers"
bench_start "chest demo" "$chest" demo --addr 127.0.0.1:0 --db "$bench_work/bench.db" "$@"
chest_pid=$bench_server chest_url=$url
bench_start "chest-peers" "$peers" --addr 127.0.0.1:0 --log-dir "$bench_work"
peers_pid=$bench_server peers_url=$url

routes=(chest_bare chest peers_bare axum_prometheus trace_json identity)
declare -A target=(
  [chest_bare]="$chest_pid $chest_url/bare" [chest]="$chest_pid $chest_url/api-endpoint"
  [peers_bare]="$peers_pid $peers_url/bare" [axum_prometheus]="$peers_pid $peers_url/axum-prometheus"
  [trace_json]="$peers_pid $peers_url/trace-json" [identity]="$peers_pid $peers_url/identity"
)
for r in "${routes[@]}"; do
  read -r bench_server u <<<"${target[$r]}"
  rps "$WARMUP" "$u" >/dev/null
done

declare -A rates=() cpus=()
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
chest_r=() prom_r=() trace_r=() identity_r=() aa_r=()
for i in $(seq "$PAIRS"); do
  order=("${routes[@]}")
  # Every other pair, the peers binary goes first.
  [ $((i % 2)) -eq 0 ] || order=(peers_bare axum_prometheus trace_json identity chest_bare chest)
  for r in "${order[@]}"; do
    read -r bench_server u <<<"${target[$r]}"
    read -r rate cpu < <(measure "$DURATION" "$u")
    rates[$r]=$rate cpus[$r]="${cpus[$r]:-} $cpu"
  done
  c=$(ratio "${rates[chest]}" "${rates[chest_bare]}")
  p=$(ratio "${rates[axum_prometheus]}" "${rates[peers_bare]}")
  t=$(ratio "${rates[trace_json]}" "${rates[peers_bare]}")
  n=$(ratio "${rates[identity]}" "${rates[peers_bare]}")
  a=$(ratio "${rates[peers_bare]}" "${rates[chest_bare]}")
  chest_r+=("$c") prom_r+=("$p") trace_r+=("$t") identity_r+=("$n") aa_r+=("$a")
  printf 'pair %2d: bare %7.0f / %7.0f req/s   chest %s   axum-prometheus %s   trace-json %s   identity %s   bare_vs_bare %s\n' \
    "$i" "${rates[chest_bare]}" "${rates[peers_bare]}" "$c" "$p" "$t" "$n" "$a"
done

spread() { printf 'median %s (min %s, max %s)' "$(median "$@")" \
  "$(printf '%s\n' "$@" | sort -g | head -n1)" "$(printf '%s\n' "$@" | sort -g | tail -n1)"; }
# shellcheck disable=SC2086
cpu_line() { printf '%s %s µs' "$1" "$(median ${cpus[$1]})"; }
rows=$("$chest" stats --db "$bench_work/bench.db" --json --name transaction | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
lines=$(wc -l <"$bench_work/requests.log" 2>/dev/null || echo 0)
echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS pairs, demo args: ${*:-(default)}"
echo "chest (recorded route):  $(spread "${chest_r[@]}")"
echo "axum-prometheus:         $(spread "${prom_r[@]}")"
echo "TraceLayer + JSON lines: $(spread "${trace_r[@]}")"
echo "identity route layer:    $(spread "${identity_r[@]}")"
echo "bare_vs_bare (A/A):      $(spread "${aa_r[@]}")"
echo "server CPU per request, median: $(cpu_line chest_bare), $(cpu_line chest), $(cpu_line peers_bare), $(cpu_line axum_prometheus), $(cpu_line trace_json), $(cpu_line identity)"
echo "chest rows written (transaction): ${rows:-0}; JSON lines written: $lines"
awk -v c="$(median "${chest_r[@]}")" -v p="$(median "${prom_r[@]}")" 'BEGIN {printf "chest_vs_axum_prometheus=%.3f\n", c / p}'
