# shellcheck shell=bash
# bench/lib.sh: the measuring half of the overhead scripts (sourced by bench/overhead*.sh, not run).
#
# A script starts its server with bench_start, measures with bench_pairs, and ends with
# bench_report, whose last line is overhead_ratio=<median layered req/s ÷ median bare req/s>.
# It also reports the server's CPU time per request on each route (from /proc, all threads),
# which the machine's other tenants move much less than req/s.
#
# Knobs (env): PAIRS (default 16), DURATION (2s), THREADS (2), CONNECTIONS (32), WARMUP (3s).
# The machine is shared and noisy: many short alternating pairs give steadier medians than a few
# long ones (bare against bare already spreads ±5% per pair here).
PAIRS=${PAIRS:-16} DURATION=${DURATION:-2s} THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-32} WARMUP=${WARMUP:-3s}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi

# A scratch directory for the servers' files and output, removed on exit.
bench_work=$(mktemp -d)
bench_server="" bench_servers=()
trap 'bench_stop; rm -rf "$bench_work"' EXIT

# bench_start NAME COMMAND...: starts a server under test in the background (stdout in
# $bench_work/server.out, stderr in $bench_work/server.log; a second server's in server-2.*),
# sets `bench_server` to its pid and `url` from the first `listening on http://ADDR` it prints.
# NAME names it in the error when it does not start.
bench_start() {
  local name=$1 out="$bench_work/server" n=$((${#bench_servers[@]} + 1))
  shift
  [ "$n" -eq 1 ] || out="$out-$n"
  "$@" >"$out.out" 2>"$out.log" &
  bench_server=$!
  bench_servers+=("$bench_server")
  for _ in $(seq 100); do grep -q 'listening on' "$out.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$out.out" | head -n1)
  [ -n "$url" ] || { echo "$name did not start:" >&2; cat "$out.log" >&2; exit 1; }
}

# bench_stop: stops every server started (SIGTERM) and waits for them to exit. Safe to call twice.
bench_stop() {
  local pid
  for pid in "${bench_servers[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bench_server="" bench_servers=()
}

# rps DURATION URL: wrk's requests per second.
rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" "$2" | awk '/Requests\/sec/ {print $2}'; }

# server_ticks: the CPU time (user + system clock ticks) the server `bench_server` has used so
# far, all threads.
server_ticks() { awk '{print $14 + $15}' "/proc/$bench_server/stat"; }

# measure DURATION URL: one wrk run; prints "req/s µs" where µs is the server's CPU time per
# request. Other tenants of a shared machine move req/s a lot and CPU per request much less.
measure() {
  local before after
  before=$(server_ticks)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" "$2" >"$bench_work/wrk.out"
  after=$(server_ticks)
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
    END {printf "%s %.3f\n", rps, ticks * 1e6 / hz / n}' "$bench_work/wrk.out"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# bench_pairs BARE_URL LAYERED_URL: warms both up, then runs wrk alternately on them PAIRS times,
# printing each pair; fills the arrays `bare`, `layered` and `ratios` (layered ÷ bare), and
# `bare_cpu`, `layered_cpu` (the server's µs of CPU per request).
bench_pairs() {
  rps "$WARMUP" "$1" >/dev/null
  rps "$WARMUP" "$2" >/dev/null
  bare=() layered=() ratios=() bare_cpu=() layered_cpu=()
  local i b c r bc cc
  for i in $(seq "$PAIRS"); do
    read -r b bc < <(measure "$DURATION" "$1")
    read -r c cc < <(measure "$DURATION" "$2")
    r=$(awk -v c="$c" -v b="$b" 'BEGIN {printf "%.3f", c / b}')
    bare+=("$b") layered+=("$c") ratios+=("$r") bare_cpu+=("$bc") layered_cpu+=("$cc")
    printf 'pair %2d: bare %10.0f req/s %6.2f µs CPU   chest %10.0f req/s %6.2f µs CPU   ratio %s\n' \
      "$i" "$b" "$bc" "$c" "$cc" "$r"
  done
}

# bench_report SETTINGS [LINE...]: the settings (SETTINGS completes that line), the medians and
# the spread of the per-pair ratios, the extra LINEs, and last overhead_ratio=….
bench_report() {
  local mb mc
  mb=$(median "${bare[@]}") mc=$(median "${layered[@]}")
  echo "settings: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $PAIRS alternating pairs, $1"
  shift
  echo "median bare req/s:  $mb"
  echo "median chest req/s: $mc"
  echo "per-pair ratio: median $(median "${ratios[@]}"), min $(printf '%s\n' "${ratios[@]}" | sort -g | head -n1), max $(printf '%s\n' "${ratios[@]}" | sort -g | tail -n1)"
  local cb cc
  cb=$(median "${bare_cpu[@]}") cc=$(median "${layered_cpu[@]}")
  echo "server CPU per request, median: bare $cb µs, chest $cc µs (cpu_ratio=$(awk -v c="$cc" -v b="$cb" 'BEGIN {printf "%.3f", b / c}'): the req/s ratio if CPU were all that bounds it)"
  [ $# -eq 0 ] || printf '%s\n' "$@"
  awk -v c="$mc" -v b="$mb" 'BEGIN {printf "overhead_ratio=%.3f\n", c / b}'
}
